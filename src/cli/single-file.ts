/** The start of dist/cert-retriever.mjs: the bundled CLI (see bundle-entry.ts), compiled through the code cache. */
import { runSingleFile } from "./code-cache.js";

/** Set by scripts/bundle.mjs: a hash of the bundled CLI that follows this code in the file. */
declare const __CERT_RETRIEVER_BUILD__: string;

runSingleFile({ build: __CERT_RETRIEVER_BUILD__, url: import.meta.url, argv: process.argv.slice(2) });
