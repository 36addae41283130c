/** Kept only for src/lab, which leaves the agent (issue 25): the module moved to keys/x509.ts. Remove with src/lab. */
export * from "../keys/x509.js";
