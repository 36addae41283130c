#!/usr/bin/env node
// The single-file builds, everything bundled except native addons (@napi-rs/keyring, needed only
// for --store keychain); they run without node_modules:
// - dist/cert-retriever.mjs, for devices: the CLI without the lab platform and with the test fault
//   hooks compiled out. It is a small ESM start (src/cli/single-file.ts) followed by the CLI,
//   bundled as CommonJS, in a comment; the start reads it back and node:vm compiles it through
//   V8's code cache (src/cli/code-cache.ts).
// - dist/cert-retriever-lab.mjs: the lab platform's own entry (`cert-retriever-lab serve ...`).
import { createHash } from "node:crypto";
import { builtinModules } from "node:module";
import { build } from "esbuild";
import { chmod, readFile, writeFile } from "node:fs/promises";

const pkg = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8"));
const path = (p) => new URL(`../${p}`, import.meta.url).pathname;
const common = {
  bundle: true,
  platform: "node",
  target: "node20.19",
  external: ["@napi-rs/keyring", "@napi-rs/keyring-*"],
  legalComments: "external",
  minify: true,
  logLevel: "warning",
};

// vm.Script runs CommonJS: a dynamic import() of a built-in or of the keychain addon becomes a
// require() (node:vm's import() callback does not survive V8's code cache on Node 20).
const requireExternals = {
  name: "require-externals",
  setup(b) {
    const external = (p) => p.startsWith("node:") || builtinModules.includes(p) || p.startsWith("@napi-rs/keyring");
    b.onResolve({ filter: /.*/ }, (a) => (a.kind === "dynamic-import" && external(a.path) ? { path: a.path, namespace: "require-external" } : undefined));
    b.onLoad({ filter: /.*/, namespace: "require-external" }, (a) => ({ contents: `module.exports = require(${JSON.stringify(a.path)});`, loader: "js" }));
  },
};

const cli = await build({
  ...common,
  entryPoints: [path("src/cli/bundle-entry.ts")],
  write: false,
  outfile: path("dist/cert-retriever.mjs"),
  format: "cjs",
  define: {
    __CERT_RETRIEVER_VERSION__: JSON.stringify(pkg.version),
    __CERT_RETRIEVER_DEVICE_BUILD__: "true",
    "import.meta.url": "__crImportMetaUrl",
    // src/fault.ts: no fault can be injected into a device.
    "process.env.CERT_RETRIEVER_TEST_FAULT": "undefined",
  },
  plugins: [requireExternals],
  metafile: true,
});
const source = cli.outputFiles.find((f) => f.path.endsWith(".mjs")).text;
const legal = cli.outputFiles.find((f) => f.path.endsWith(".LEGAL.txt"))?.text;
const { PARAMETERS, PAYLOAD_MARK, COMMENT_END_STANDIN } = await import("../dist/cli/code-cache.js");
if (/[^\x09\x0a\x0d\x20-\x7e]/.test(source)) throw new Error("the bundled CLI is not printable ASCII");
if (source.includes(COMMENT_END_STANDIN)) throw new Error("the bundled CLI holds the comment's stand-in");
const payload = `(function (${PARAMETERS.join(", ")}) {${source}\n})`;

const device = path("dist/cert-retriever.mjs");
const start = await build({
  ...common,
  entryPoints: [path("src/cli/single-file.ts")],
  write: false,
  outfile: device,
  format: "esm",
  define: {
    __CERT_RETRIEVER_BUILD__: JSON.stringify(createHash("sha256").update(payload).digest("hex").slice(0, 16)),
    __CERT_RETRIEVER_VERSION__: JSON.stringify(pkg.version),
  },
  banner: { js: "#!/usr/bin/env node" },
  legalComments: "none",
});
if (/^\s*import\b|import\.meta|^\s*export\b/m.test(start.outputFiles[0].text)) throw new Error("the single file's start must parse as CommonJS too");
await writeFile(device, `${start.outputFiles[0].text}\n${PAYLOAD_MARK}\n${payload.replaceAll("*/", COMMENT_END_STANDIN)}*/\n`);
if (legal) await writeFile(`${device}.LEGAL.txt`, legal);

const lab = path("dist/cert-retriever-lab.mjs");
await build({
  ...common,
  entryPoints: [path("src/cli/lab-entry.ts")],
  outfile: lab,
  format: "esm",
  define: { __CERT_RETRIEVER_VERSION__: JSON.stringify(pkg.version) },
  // CommonJS dependencies call require() for Node's built-ins.
  banner: { js: `#!/usr/bin/env node\nimport { createRequire as __crCreateRequire } from "node:module";\nconst require = __crCreateRequire(import.meta.url);` },
});
for (const out of [device, lab]) {
  await chmod(out, 0o755);
  console.error(`built ${out}`);
}
const carried = Object.values(cli.metafile.outputs).flatMap((o) => Object.entries(o.inputs).filter(([, i]) => i.bytesInOutput > 0).map(([f]) => f));
const labInDevice = carried.filter((f) => f.startsWith("src/lab/"));
if (labInDevice.length > 0) throw new Error(`the device build carries the lab: ${labInDevice.join(", ")}`);
