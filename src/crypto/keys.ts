/** Kept only for src/lab, which leaves the agent (issue 25): the module moved to keys/key-types.ts. Remove with src/lab. */
export * from "../keys/key-types.js";
