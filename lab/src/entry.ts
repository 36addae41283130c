/**
 * The lab's single file (`dist/cert-retriever-lab.mjs`): the library (`import { startLab } from
 * "cert-retriever-lab"`), and the command line when node runs the file itself (`node
 * dist/cert-retriever-lab.mjs serve ...`); `bin/cert-retriever-lab.mjs` calls {@link run}.
 */
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { run } from "./cli/main.js";

export * from "./index.js";
export { run };

/** Whether node was started on this very file (through a link, too), not on a program that imports it. */
function startedOnThisFile(): boolean {
  try {
    return (
      process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))
    );
  } catch {
    return false;
  }
}

if (startedOnThisFile()) process.exitCode = await run(process.argv.slice(2));
