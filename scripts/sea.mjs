#!/usr/bin/env node
// `npm run sea`: the self-contained executables, dist/cert-retriever-linux-x64 and
// dist/cert-retriever-linux-arm64: Node 26 single executable applications (node --build-sea) that
// need nothing on the device but glibc. Each holds the single file's CLI (its sections as assets)
// and a start-up snapshot of it, made by the target's own Node (arm64's under qemu-aarch64 on an
// x64 machine). Run after `npm run build`. The Node binaries are downloaded once from npm
// (node-linux-<arch>) into node_modules/.cache/. docs/packaging.md, "The self-contained executable", says what it can and cannot do.
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const NODE_VERSION = "26.12.1";
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const at = (...p) => join(ROOT, ...p);
// Usage: node scripts/sea.mjs [--fetch] [--out DIR] [--no-snapshot] [x64] [arm64] (default: dist, a snapshot, both).
const args = process.argv.slice(2);
// --no-snapshot: quicker to build (a snapshot of arm64 made under qemu takes minutes); the test's way.
const SNAPSHOT = !args.includes("--no-snapshot");
if (!SNAPSHOT) args.splice(args.indexOf("--no-snapshot"), 1);
const OUT = args[0] === "--out" && args[1] ? args.splice(0, 2)[1] : at("dist");
const WORK = join(OUT, "sea");
const HOST = process.arch;
/** How to run a program of `arch` here: natively, or under qemu user mode with the cross glibc. */
const runner = (arch) =>
  arch === HOST
    ? { argv: [], env: {} }
    : {
        argv: [`qemu-${arch === "arm64" ? "aarch64" : "x86_64"}`],
        env: { QEMU_LD_PREFIX: `/usr/${arch === "arm64" ? "aarch64" : "x86_64"}-linux-gnu` },
      };

/**
 * The Node binary of `arch`, stripped of its symbols: downloaded from npm (node-linux-<arch>) and
 * stripped once, then kept in node_modules/.cache/ across builds (npm run build does not remove it).
 */
function nodeBinary(arch) {
  const prefix = at("node_modules", ".cache", `node-${NODE_VERSION}`, arch);
  const stripped = join(prefix, "node");
  if (existsSync(stripped)) return stripped;
  // Made aside and renamed into place: two builds at once (CI's two Node lines) never see half a file.
  const aside = `${prefix}.${process.pid}`;
  execFileSync(
    "npm",
    [
      "install",
      "--prefix",
      aside,
      "--no-save",
      "--no-audit",
      "--no-fund",
      "--force",
      `node-linux-${arch}@${NODE_VERSION}`,
    ],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  const node = join(aside, "node_modules", `node-linux-${arch}`, "bin", "node");
  const strip = arch === HOST ? "strip" : `${arch === "arm64" ? "aarch64" : "x86_64"}-linux-gnu-strip`;
  if (spawnSync(strip, [node]).status !== 0)
    console.error(`sea: ${strip} is missing; the ${arch} executable keeps Node's symbols`);
  mkdirSync(prefix, { recursive: true });
  renameSync(node, stripped);
  rmSync(aside, { recursive: true, force: true });
  return stripped;
}

/** The single file's sections, as code (the comments taken off), each written to dist/sea/<name>.js. */
function sections() {
  const file = readFileSync(at("dist", "cert-retriever.mjs"), "latin1");
  const out = {};
  for (const m of file.matchAll(
    /^\/\/<cert-retriever: section (\w+)>\n([\s\S]*?)(?=\n\/\/<cert-retriever: section |\n$)/gm,
  )) {
    out[m[1]] = join(WORK, `${m[1]}.js`);
    writeFileSync(out[m[1]], m[2].slice(2).replaceAll("\n//", "\n"), "latin1");
  }
  if (!out.cli) throw new Error("dist/cert-retriever.mjs has no cli section: run npm run build first");
  return { assets: out, hash: createHash("sha256").update(file).digest("hex").slice(0, 16) };
}

/**
 * The executable for `arch`: its Node, the start, the sections; with a start-up snapshot made by
 * that Node (under qemu for another architecture), or else with none. A blob without a snapshot or
 * code cache is the same for every architecture: this machine's Node 26 makes it.
 */
function executable(arch, start, assets) {
  const node = nodeBinary(arch);
  const output = join(OUT, `cert-retriever-linux-${arch}`);
  for (const useSnapshot of SNAPSHOT ? [true, false] : [false]) {
    const config = join(WORK, `sea-${arch}.json`);
    const useCodeCache = !useSnapshot && arch === HOST;
    const settings = {
      main: start,
      executable: node,
      output,
      disableExperimentalSEAWarning: true,
      useSnapshot,
      useCodeCache,
      assets,
    };
    writeFileSync(config, JSON.stringify(settings));
    const run = useSnapshot || useCodeCache ? runner(arch) : runner(HOST);
    const builder = useSnapshot || useCodeCache ? node : nodeBinary(HOST);
    const made = spawnSync(
      run.argv[0] ?? builder,
      [...run.argv.slice(1), ...(run.argv.length ? [builder] : []), "--build-sea", config],
      {
        env: { ...process.env, ...run.env, CERT_RETRIEVER_SEA_SECTIONS: WORK },
        encoding: "utf8",
      },
    );
    if (made.status === 0) return { arch, output, snapshot: useSnapshot };
    const why = made.stderr.trim().split("\n").slice(-3).join(" / ");
    console.error(`sea: ${arch}${useSnapshot ? " with a snapshot" : ""} failed: ${why}`);
  }
  throw new Error(`sea: no ${arch} executable`);
}

// --fetch: only download (and strip) the Node binaries (to build later without the network).
const FETCH = args.includes("--fetch");
if (FETCH) args.splice(args.indexOf("--fetch"), 1);
const archs = args.length ? args : ["x64", "arm64"];
if (FETCH) {
  for (const arch of archs) nodeBinary(arch);
  process.exit(0);
}
rmSync(WORK, { recursive: true, force: true });
mkdirSync(WORK, { recursive: true });
const { assets, hash } = sections();
const start = join(WORK, "start.cjs");
await build({
  entryPoints: [at("src", "cli", "sea-start.ts")],
  outfile: start,
  bundle: true,
  platform: "node",
  format: "cjs",
  target: `node${NODE_VERSION.split(".")[0]}`,
  minify: true,
  define: { __CERT_RETRIEVER_BUILD__: JSON.stringify(hash) },
  logLevel: "warning",
});
for (const arch of archs) {
  const made = executable(arch, start, assets);
  console.error(
    `built ${relative(process.cwd(), made.output)} (${(statSync(made.output).size / 1e6).toFixed(1)} MB${made.snapshot ? ", start-up snapshot" : ", code cache, no snapshot"})`,
  );
}
