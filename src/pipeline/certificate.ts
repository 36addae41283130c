/** Kept only for the lab command, which leaves the agent (issue 25): the module moved to flows/certificate.ts. Remove with it. */
export * from "../flows/certificate.js";
