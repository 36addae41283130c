#!/usr/bin/env node
// Whether the build (dist/, lab/dist/) is up to date with what it is built from: exit 0 if it is,
// 1 if not. `--record`, the build's last step, notes what it was built from. What is compared is
// a SHA-256 of the inputs' contents (kept under node_modules/.cache/), not mtimes: a checkout, a
// touch or a copy cannot make a needed build look done. `npm ci` builds through `postprepare`, and
// the `npm test` that follows reuses that build instead of making it again; after an edit it builds.
// (Not `prepare`: npm lists a `prepare` among the install scripts to approve when the packed
// package is installed from its tarball, although it never runs it there.)
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const at = (p) => join(root, p);

/** What the build reads: the sources, the build scripts, the manifests and the lockfile (the bundles carry the dependencies). */
const INPUTS = [
  "src",
  "lab/src",
  "scripts/bundle.mjs",
  "scripts/man.mjs",
  "lab/scripts/build.mjs",
  "package.json",
  "lab/package.json",
  "npm-shrinkwrap.json",
  "tsconfig.json",
  "tsconfig.build.json",
  "lab/tsconfig.json",
];

/** What the build makes that others run: the library and CLI, the single file, the man page, the lab's single file. */
const OUTPUTS = [
  "dist/index.js",
  "dist/cli/main.js",
  "dist/cert-retriever.mjs",
  "dist/man/cert-retriever.1",
  "lab/dist/cert-retriever-lab.mjs",
];

/** Where the last build's inputs hash is kept; the build removes it first (a build cut short leaves none). */
const STAMP = at("node_modules/.cache/cert-retriever/build-inputs.sha256");

/** Every file under `path` (or `path` itself), relative to the root, sorted. */
function filesOf(path) {
  const full = at(path);
  if (!existsSync(full)) return [];
  if (!statSync(full).isDirectory()) return [path];
  return readdirSync(full, { recursive: true })
    .map((name) => relative(root, join(full, name)))
    .filter((p) => statSync(at(p)).isFile())
    .sort();
}

/** One hash of the inputs' names and contents. */
function inputsHash() {
  const hash = createHash("sha256");
  for (const file of INPUTS.flatMap(filesOf))
    hash
      .update(`${file}\0`)
      .update(readFileSync(at(file)))
      .update("\0");
  return hash.digest("hex");
}

const hash = inputsHash();
if (process.argv.includes("--record")) {
  mkdirSync(dirname(STAMP), { recursive: true });
  writeFileSync(STAMP, hash);
} else if (existsSync(STAMP) && readFileSync(STAMP, "utf8") === hash && OUTPUTS.every((p) => existsSync(at(p)))) {
  console.error("dist/ and lab/dist/ are up to date with their sources: no build");
} else {
  process.exitCode = 1;
}
