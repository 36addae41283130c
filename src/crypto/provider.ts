/** Kept only for src/lab, which leaves the agent (issue 25): the module moved to keys/provider.ts. Remove with src/lab. */
export * from "../keys/provider.js";
