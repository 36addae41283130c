/** The single-file build's entry: the CLI, run at once. */
import { main } from "./main.js";

process.exitCode = await main(process.argv.slice(2));
