/** The single-file build's CLI: bundled as CommonJS and run by single-file.ts (no top-level await there). */
import { main } from "./main.js";

/** Runs the command line. @public a start-up snapshot (code-cache.ts) calls it when the snapshot starts. */
export function run(): void {
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}

// Building a start-up snapshot (code-cache.ts says so; docs/packaging.md): the CLI and the modules an
// enrollment, a check and a status load are loaded now (Node takes the snapshot once they are), and the
// command line runs when the snapshot starts.
if ((globalThis as Record<symbol, unknown>)[Symbol.for("cert-retriever.snapshot")] === true)
  void Promise.all([
    import("../flows/enroll.js"),
    import("../flows/authenticate.js"),
    import("../flows/revocation.js"),
    import("../flows/status.js"),
    import("../keys/open.js"),
    import("../keys/fingerprint.js"),
    import("../store/device-record.js"),
    import("../store/names.js"),
  ]);
else run();
