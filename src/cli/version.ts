import { readFileSync } from "node:fs";

/** Set by the single-file build, which has no package.json beside it. */
declare const __CERT_RETRIEVER_VERSION__: string | undefined;

/** The version from package.json (or the one the single-file build was made with). */
export function version(): string {
  if (typeof __CERT_RETRIEVER_VERSION__ === "string") return __CERT_RETRIEVER_VERSION__;
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}
