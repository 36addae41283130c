/**
 * The start of dist/cert-retriever.mjs: the bundled CLI (see bundle-entry.ts), compiled through the
 * code cache. Neither an import statement nor import.meta here or in what it imports (see code-cache.ts).
 */
import { runSingleFile } from "./code-cache.js";

/** Set by scripts/bundle.mjs: a hash of the bundled CLI that follows this code in the file, and the version. */
declare const __CERT_RETRIEVER_BUILD__: string;
declare const __CERT_RETRIEVER_VERSION__: string;

const argv = process.argv.slice(2);
// The version alone needs none of the CLI's code (the CLI answers `-v`, `-V` and `--version` alike).
if (argv.length === 1 && ["-v", "-V", "--version"].includes(argv[0]!)) process.stdout.write(`${__CERT_RETRIEVER_VERSION__}\n`);
else runSingleFile({ build: __CERT_RETRIEVER_BUILD__, path: process.argv[1]!, argv });
