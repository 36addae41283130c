/** The single-file build's CLI: bundled as CommonJS and run by single-file.ts (no top-level await there). */
import { main } from "./main.js";

void main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
