/** Kept only for the lab command (src/cli/commands/lab.ts), which leaves the agent (issue 25): moved to hints.ts. Remove with it. */
export { usage } from "./hints.js";
