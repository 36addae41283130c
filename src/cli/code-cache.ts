/**
 * The single-file build's start. The CLI's code, bundled as CommonJS, sits in line comments at the
 * end of the file (so a copy cut short is still a script that can say so), in sections: `cli`, run at once, and the parts few runs need (`undici` for a proxy,
 * `prompts` for a technician, `mqtt` for `verify`), each compiled only when the CLI first asks for
 * it. A comment costs V8 next to nothing to skip (a 1.3 MB string literal cost 20 ms a start here),
 * and the start reads back only the sections it runs, where the build says they are.
 *
 * Each section is compiled with node:vm, through V8's code cache when the user or the unit chose a
 * cache directory (CERT_RETRIEVER_CACHE_DIR). A run that finds no usable cache compiles as usual
 * and, at exit, leaves the code it compiled for the next run of the same command; a run that finds
 * one skips parsing and compiling (see docs/performance.md for what that saves).
 * Works the same on Node 20 and 24: node:vm's cachedData is in both, and V8 refuses data from
 * another V8, other flags or other source, which then is compiled as if there were no cache and
 * replaced.
 *
 * The cache is code that will run: it is read only from a directory no other user can write, and
 * nothing is written outside that directory. Nothing about the cache ever fails a run.
 */
import { writableByOthers } from "../fs/file-trust.js";

// Built-ins without an import statement or import.meta: the start is both a valid ES module (as
// dist/cert-retriever.mjs) and a valid CommonJS script (installed without the extension, as
// /usr/bin/cert-retriever), so Node parses it once either way instead of trying CommonJS first.
const requireBuiltin = (id: string): unknown => process.getBuiltinModule(id);

/** The parameters the bundled CommonJS code expects, in order. @public scripts/bundle.mjs imports it from dist/ (where knip does not look). */
export const PARAMETERS = ["exports", "require", "module", "__filename", "__dirname", "__crImportMetaUrl"];

/** The line before a section's code. @public scripts/bundle.mjs imports it from dist/ (where knip does not look). */
export const sectionMark = (name: string): string => `//<cert-retriever: section ${name}>\n`;

/** Code as line comments (it holds no carriage return: the build checks), and back. @public scripts/bundle.mjs imports it from dist/ (where knip does not look). */
export const toComment = (code: string): string => `//${code.replaceAll("\n", "\n//")}`;
const fromComment = (text: string): string => text.slice(2).replaceAll("\n//", "\n");
/** What the bundled code requires to get a module of a section: `cert-retriever-section:mqtt#mqtt`. @public scripts/bundle.mjs imports it from dist/ (where knip does not look). */
export const SECTION_PREFIX = "cert-retriever-section:";

/** Where each section is: bytes from the end of the file to its mark, and its length with the mark. */
export type SectionTable = Record<string, [fromEnd: number, length: number]>;

/** Cache files are named `cert-retriever-<build>-<node version>-<arch>-<command>-<section>.v8cache`. */
const PREFIX = "cert-retriever-";
const SUFFIX = ".v8cache";

export interface SingleFile {
  /** A hash of the CLI's code, made at build time: a cache belongs to one build. */
  build: string;
  sections: SectionTable;
  /** The single file's path (Node's main script), which may be a link to it; in an executable, the executable's. */
  path: string;
  argv: string[];
  /** Whether Node is making a start-up snapshot of this run: the CLI is loaded now and runs when the snapshot starts. */
  snapshot: boolean;
  /** In a single executable application (node:sea), where each section is an asset of the executable. */
  sea?: { read(name: string): string };
}

/** Compiles and runs the bundled CLI, through the code cache when one is chosen and trusted. */
export function runSingleFile({ build, sections, path: main, argv, snapshot, sea }: SingleFile): void {
  const vm = requireBuiltin("node:vm") as typeof import("node:vm");
  const fs = requireBuiltin("node:fs") as typeof import("node:fs");
  const path = requireBuiltin("node:path") as typeof import("node:path");
  const { createRequire } = requireBuiltin("node:module") as typeof import("node:module");
  const { pathToFileURL } = requireBuiltin("node:url") as typeof import("node:url");
  // Where the file really is: the native addons are looked for in a node_modules beside it.
  const filename = fs.realpathSync(main);
  const url = pathToFileURL(filename).href;
  let baseRequire = createRequire(url);
  // A start-up snapshot (see docs/packaging.md) has no code cache: it holds the compiled CLI.
  const cache = snapshot ? undefined : openCache(build, argv);
  const loaded = new Map<string, unknown>();

  const fromSection = (id: string): unknown => {
    const [name, module] = id.slice(SECTION_PREFIX.length).split("#", 2) as [string, string];
    return (load(name) as Record<string, unknown>)[module];
  };
  const require = Object.assign(
    (id: string): unknown => (id.startsWith(SECTION_PREFIX) ? fromSection(id) : baseRequire(id)),
    baseRequire,
  );
  function load(name: string): unknown {
    if (loaded.has(name)) return loaded.get(name);
    const code = sea ? sea.read(name) : readSection(fs, filename, sections, name);
    const cached = cache?.section(name);
    const script = new vm.Script(code, { filename: `${filename} (${name})`, cachedData: cached?.data });
    if (cached && (cached.data === undefined || script.cachedDataRejected)) {
      // At exit the functions this run compiled are compiled; the next run of this command skips them
      // too. Only a run that did the command's whole work leaves them: a run that failed or was
      // interrupted early compiled little, and a cache is not written again once V8 accepts it.
      process.once("exit", (code) => {
        if (completed(argv, code)) cached.save(() => script.createCachedData());
      });
    }
    const module = { exports: {} as unknown };
    loaded.set(name, module.exports);
    const run = script.runInThisContext() as (...args: unknown[]) => void;
    run.call(module.exports, module.exports, require, module, filename, path.dirname(filename), url);
    loaded.set(name, module.exports);
    return module.exports;
  }
  // The CLI's entry (bundle-entry.ts) then loads what an enrollment needs and waits to be run.
  if (snapshot) (globalThis as Record<symbol, unknown>)[Symbol.for("cert-retriever.snapshot")] = true;
  const cli = load("cli") as { run(): void };
  if (!snapshot) return;
  (requireBuiltin("node:v8") as typeof import("node:v8")).startupSnapshot.setDeserializeMainFunction(() => {
    // The executable that runs the snapshot may be anywhere: its addons are beside it, not beside the one that made it.
    if (sea) baseRequire = createRequire(pathToFileURL(fs.realpathSync(process.execPath)).href);
    // Started with node --snapshot-blob, process.argv holds no script ([node, ...arguments]): the CLI reads it from 2 on.
    else process.argv.splice(1, 0, filename);
    cli.run();
  });
}

/** Whether a run did its command's whole work: exit 0, or check's 1 ("nothing to do"). */
function completed(argv: string[], code: number): boolean {
  return code === 0 || (code === 1 && commandOf(argv) === "check");
}

/** What a cache is kept for: the command, or `help` for any help (which compiles little of a command). */
export function commandOf(argv: string[]): string {
  if (argv.some((a) => a === "-h" || a === "--help" || a === "help")) return "help";
  return /^[a-z]{1,20}$/.exec(argv.find((a) => !a.startsWith("-")) ?? "")?.[0] ?? "none";
}

/** A section's code, read from where the build put it (ASCII only: esbuild escapes the rest, so latin1 reads it exactly). */
function readSection(fs: typeof import("node:fs"), filename: string, sections: SectionTable, name: string): string {
  const where = sections[name];
  const broken = () =>
    new Error(`${filename} is not a complete cert-retriever build: its ${name} code is missing or damaged`);
  if (!where) throw broken();
  const [fromEnd, length] = where;
  const fd = fs.openSync(filename, "r");
  try {
    const size = fs.fstatSync(fd).size;
    const bytes = Buffer.allocUnsafe(length);
    if (size < fromEnd || fs.readSync(fd, bytes, 0, length, size - fromEnd) !== length) throw broken();
    const text = bytes.toString("latin1");
    const mark = sectionMark(name);
    if (!text.startsWith(mark)) throw broken();
    return fromComment(text.slice(mark.length));
  } finally {
    fs.closeSync(fd);
  }
}

interface Cache {
  section(name: string): { data: Buffer | undefined; save(data: () => Buffer): void };
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
  const command = commandOf(argv);
  const stem = `${PREFIX}${build}-${process.version}-${process.arch}`;
  return {
    section(name) {
      const file = path.join(dir, `${stem}-${command}-${name}${SUFFIX}`);
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
          const staged = path.join(dir, `.${PREFIX}${process.pid}-${name}${SUFFIX}`);
          try {
            fs.rmSync(staged, { force: true });
            fs.writeFileSync(staged, make(), { mode: 0o600, flag: "wx" });
            fs.renameSync(staged, file);
            // Caches of other builds are of no more use (another Node's are kept: a directory may serve two).
            for (const entry of fs.readdirSync(dir)) {
              if (entry.startsWith(PREFIX) && entry.endsWith(SUFFIX) && !entry.startsWith(`${PREFIX}${build}-`))
                fs.rmSync(path.join(dir, entry), { force: true });
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
    },
  };
}
