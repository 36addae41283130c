/** Kept only for src/lab, which leaves the agent (issue 25): the module moved to keys/pkcs7.ts. Remove with src/lab. */
export * from "../keys/pkcs7.js";
