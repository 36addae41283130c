/**
 * The start of dist/cert-retriever.mjs: the bundled CLI (see bundle-entry.ts), compiled through the
 * code cache. Neither an import statement nor import.meta here or in what it imports (see code-cache.ts).
 */
import { commandOf, runSingleFile, type SectionTable } from "./code-cache.js";

/** Set by scripts/bundle.mjs: a hash of the bundled CLI that follows this code in the file, where its sections are, and the version. */
declare const __CERT_RETRIEVER_BUILD__: string;
declare const __CERT_RETRIEVER_SECTIONS__: SectionTable;
declare const __CERT_RETRIEVER_VERSION__: string;

const argv = process.argv.slice(2);
// The version alone needs none of the CLI's code (the CLI answers `-v`, `-V` and `--version` alike).
if (argv.length === 1 && ["-v", "-V", "--version"].includes(argv[0]!))
  process.stdout.write(`${__CERT_RETRIEVER_VERSION__}\n`);
else {
  try {
    runSingleFile({
      build: __CERT_RETRIEVER_BUILD__,
      sections: __CERT_RETRIEVER_SECTIONS__,
      path: process.argv[1]!,
      argv,
      // Making the Debian package's start-up snapshot (node --build-snapshot, see docs/packaging.md).
      snapshot: process.execArgv.includes("--build-snapshot"),
    });
  } catch (err) {
    // A file cut short or altered in transit: one sentence, and never 1-254 for `check` (which would skip the unit).
    process.stderr.write(`cert-retriever: ${err instanceof Error ? err.message : String(err)}; copy the file again\n`);
    process.exitCode = commandOf(argv) === "check" ? 255 : 1;
  }
}
