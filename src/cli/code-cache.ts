/**
 * The single-file build's start: the CLI's code, bundled as CommonJS, sits in a comment at the end
 * of the file (V8 skips a comment far faster than it scans a string literal of 1.3 MB: 20 ms less
 * on each start here); this reads it back and compiles it with node:vm, with V8's code
 * cache when the user or the unit chose a cache directory (CERT_RETRIEVER_CACHE_DIR). A run that
 * finds no usable cache compiles as usual and, at exit, leaves the code it compiled for the next run
 * of the same command; a run that finds one skips parsing and compiling (see the README's
 * performance section for what that saves). Works the same on Node 20 and 24: node:vm's cachedData
 * is in both, and V8 refuses data from another V8, other flags or other source, which then is
 * compiled as if there were no cache and replaced.
 *
 * The cache is code that will run: it is read only from a directory no other user can write, and
 * nothing is written outside that directory. Nothing here ever fails a run.
 */
import { writableByOthers } from "../file-trust.js";

// Built-ins without an import statement or import.meta: the start is both a valid ES module (as
// dist/cert-retriever.mjs) and a valid CommonJS script (installed without the extension, as
// /usr/bin/cert-retriever), so Node parses it once either way instead of trying CommonJS first.
const requireBuiltin = (id: string): unknown => process.getBuiltinModule(id);

/** The parameters the bundled CommonJS code expects, in order. */
export const PARAMETERS = ["exports", "require", "module", "__filename", "__dirname", "__crImportMetaUrl"];

/** Where the CLI's code starts: the last line of the file that is exactly this. */
export const PAYLOAD_MARK = "/*<cert-retriever: the CLI, bundled>";
/** The comment may not hold its own end: `*` + `/` is written as this, and read back. */
export const COMMENT_END_STANDIN = "*<cert-retriever: slash>";

/** Cache files are named `cert-retriever-<build>-<node version>-<arch>-<command>.v8cache`. */
const PREFIX = "cert-retriever-";
const SUFFIX = ".v8cache";

export interface SingleFile {
  /** A hash of the CLI's code, made at build time: a cache belongs to one build. */
  build: string;
  /** The single file's path (Node's main script), which may be a link to it. */
  path: string;
  argv: string[];
}

/** Compiles and runs the bundled CLI, through the code cache when one is chosen and trusted. */
export function runSingleFile({ build, path: main, argv }: SingleFile): void {
  const vm = requireBuiltin("node:vm") as typeof import("node:vm");
  const fs = requireBuiltin("node:fs") as typeof import("node:fs");
  const path = requireBuiltin("node:path") as typeof import("node:path");
  const { createRequire } = requireBuiltin("node:module") as typeof import("node:module");
  const { pathToFileURL } = requireBuiltin("node:url") as typeof import("node:url");
  // Where the file really is: the keychain addon is looked for in a node_modules beside it.
  const filename = fs.realpathSync(main);
  const url = pathToFileURL(filename).href;
  // The build writes ASCII only (esbuild escapes the rest), so latin1 reads it exactly, and fastest.
  const text = fs.readFileSync(filename, "latin1");
  const start = text.lastIndexOf(`\n${PAYLOAD_MARK}\n`);
  const end = text.lastIndexOf("*/");
  if (start < 0 || end < start) throw new Error(`${filename} is not a complete cert-retriever build: its code is missing or cut short`);
  const wrapped = text.slice(start + PAYLOAD_MARK.length + 2, end).replaceAll(COMMENT_END_STANDIN, "*/");
  const cache = openCache(build, argv);
  const script = new vm.Script(wrapped, { filename, cachedData: cache?.data });
  if (cache && (cache.data === undefined || script.cachedDataRejected)) {
    // At exit the functions this run compiled are compiled; the next run of this command skips them too.
    process.once("exit", () => cache.save(() => script.createCachedData()));
  }
  const module = { exports: {} };
  const run = script.runInThisContext() as (...args: unknown[]) => void;
  run.call(module.exports, module.exports, createRequire(url), module, filename, path.dirname(filename), url);
}

interface Cache {
  data: Buffer | undefined;
  save(data: () => Buffer): void;
}

/** The cache for this build, Node and command, or undefined if no directory is chosen or it cannot be trusted. */
function openCache(build: string, argv: string[]): Cache | undefined {
  const dir = process.env.CERT_RETRIEVER_CACHE_DIR;
  if (!dir) return undefined;
  const fs = requireBuiltin("node:fs") as typeof import("node:fs");
  const path = requireBuiltin("node:path") as typeof import("node:path");
  try {
    if (!path.isAbsolute(dir)) return undefined;
    // The chosen directory itself may be made (private); never its parents.
    if (!fs.existsSync(dir)) fs.mkdirSync(dir, { mode: 0o700 });
    const st = fs.statSync(dir);
    if (!st.isDirectory() || writableByOthers(st)) return undefined;
  } catch {
    return undefined;
  }
  const command = /^[a-z]{1,20}$/.exec(argv.find((a) => !a.startsWith("-")) ?? "")?.[0] ?? "none";
  const stem = `${PREFIX}${build}-${process.version}-${process.arch}`;
  const file = path.join(dir, `${stem}-${command}${SUFFIX}`);
  let data: Buffer | undefined;
  try {
    const st = fs.lstatSync(file);
    // A file another user could have written is not run; it is replaced below.
    if (st.isFile() && !writableByOthers(st)) data = fs.readFileSync(file);
  } catch {
    // no cache yet
  }
  return {
    data,
    save(make) {
      const staged = path.join(dir, `.${PREFIX}${process.pid}${SUFFIX}`);
      try {
        fs.rmSync(staged, { force: true });
        fs.writeFileSync(staged, make(), { mode: 0o600, flag: "wx" });
        fs.renameSync(staged, file);
        // Caches of other builds or other Nodes are of no more use.
        for (const name of fs.readdirSync(dir)) {
          if (name.startsWith(PREFIX) && name.endsWith(SUFFIX) && !name.startsWith(`${stem}-`)) fs.rmSync(path.join(dir, name), { force: true });
        }
      } catch {
        try {
          fs.rmSync(staged, { force: true });
        } catch {
          // the next run tries again
        }
      }
    },
  };
}
