/**
 * The start of the self-contained executable (a Node single executable application, built by
 * scripts/sea.mjs): the single file's CLI, its sections assets of the executable (node:sea). Where
 * the Node supports it, the executable holds a start-up snapshot: this start then runs once, at
 * build time, and each run starts from the loaded CLI. Neither an import statement nor
 * import.meta here or in what it imports (see code-cache.ts).
 */
import { commandOf, runSingleFile } from "./code-cache.js";

/** Set by scripts/sea.mjs: a hash of the bundled CLI. */
declare const __CERT_RETRIEVER_BUILD__: string;

const sea = process.getBuiltinModule("node:sea") as typeof import("node:sea");
const v8 = process.getBuiltinModule("node:v8") as typeof import("node:v8");
const argv = process.argv.slice(2);
const building = v8.startupSnapshot.isBuildingSnapshot();
// While Node makes the snapshot the assets are not there yet: scripts/sea.mjs names the directory of
// the sections' files (the CLI's is read now; the others, read when first used, are assets by then).
const fromBuild = process.env.CERT_RETRIEVER_SEA_SECTIONS;
const read = (name: string): string =>
  building && fromBuild
    ? (process.getBuiltinModule("node:fs") as typeof import("node:fs")).readFileSync(
        `${fromBuild}/${name}.js`,
        "latin1",
      )
    : sea.getAsset(name, "utf8");
try {
  runSingleFile({
    build: __CERT_RETRIEVER_BUILD__,
    sections: {},
    path: process.execPath,
    argv,
    snapshot: building,
    sea: { read },
  });
} catch (err) {
  process.stderr.write(
    `cert-retriever: ${err instanceof Error ? err.message : String(err)}; copy the executable again\n`,
  );
  process.exitCode = commandOf(argv) === "check" ? 255 : 1;
}
