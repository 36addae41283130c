/** Kept only for the lab command, which leaves the agent (issue 25): the module moved to transport/loopback.ts. Remove with it. */
export * from "./transport/loopback.js";
