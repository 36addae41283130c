#!/usr/bin/env node
// The single-file build, everything bundled except native addons (@napi-rs/keyring, needed only
// for --store keychain; pkcs11js, only for --key pkcs11:, whose JavaScript, node-webcrypto-p11 and
// graphene-pk11, is a section of its own); it runs without node_modules:
// - dist/cert-retriever.mjs, for devices: the CLI. It is a small start (src/cli/single-file.ts)
//   followed by the CLI, bundled as CommonJS in sections, as line comments; the start reads back
//   the sections a run needs and node:vm compiles them through V8's code cache (src/cli/code-cache.ts).
// The lab platform is a package of its own (lab/), with its own build; nothing of it comes in here.
import { createHash } from "node:crypto";
import { chmod, readFile, writeFile } from "node:fs/promises";
import { builtinModules } from "node:module";
import { build } from "esbuild";

// Native addons, loaded from a node_modules when a run asks for them.
const NATIVE = ["pkcs11js"];
const pkg = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8"));
const path = (p) => new URL(`../${p}`, import.meta.url).pathname;
const common = {
  bundle: true,
  platform: "node",
  target: "node20.19",
  external: ["@napi-rs/keyring", "@napi-rs/keyring-*", ...NATIVE],
  legalComments: "external",
  minify: true,
  logLevel: "warning",
};

// vm.Script runs CommonJS: a dynamic import() of a built-in or of the keychain addon becomes a
// require() (node:vm's import() callback does not survive V8's code cache on Node 20).
const requireExternals = {
  name: "require-externals",
  setup(b) {
    const external = (p) =>
      p.startsWith("node:") || builtinModules.includes(p) || p.startsWith("@napi-rs/keyring") || NATIVE.includes(p);
    b.onResolve({ filter: /.*/ }, (a) =>
      a.kind === "dynamic-import" && external(a.path) ? { path: a.path, namespace: "require-external" } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: "require-external" }, (a) => ({
      contents: `module.exports = require(${JSON.stringify(a.path)});`,
      loader: "js",
    }));
  },
};

const { PARAMETERS, sectionMark, toComment, SECTION_PREFIX } = await import("../dist/cli/code-cache.js");

// The parts of the CLI few runs need, each a section compiled only when first imported: what the
// CLI imports (dynamically, by these names) -> the module bundled in the section.
const SECTIONS = {
  undici: { undici: "undici" }, // only through HTTP(S)_PROXY (src/transport/proxy.ts imports undici's public entry)
  prompts: { "@inquirer/input": "@inquirer/input", "@inquirer/password": "@inquirer/password" }, // a technician at a terminal
  mqtt: { mqtt: "mqtt" }, // verify
  pkcs11: { "graphene-pk11": "graphene-pk11", "node-webcrypto-p11": "node-webcrypto-p11" }, // --key pkcs11: (pkcs11js, native, stays outside)
};
const sectionOf = (specifier) => Object.keys(SECTIONS).find((name) => specifier in SECTIONS[name]);
const toSections = {
  name: "to-sections",
  setup(b) {
    b.onResolve({ filter: /.*/ }, (a) => {
      if (a.path.startsWith(SECTION_PREFIX)) return { path: a.path, external: true };
      const name = a.kind === "dynamic-import" ? sectionOf(a.path) : undefined;
      return name ? { path: `${SECTION_PREFIX}${name}#${a.path}`, namespace: "to-section" } : undefined;
    });
    b.onLoad({ filter: /.*/, namespace: "to-section" }, (a) => {
      // An ES module that re-exports the section's module: esbuild then reads the section's
      // `__esModule` exports as an import of the bundled module would (a default export stays the default).
      const external = JSON.stringify(a.path);
      return { contents: `export * from ${external};\nexport { default } from ${external};`, loader: "js" };
    });
  },
};
const bundled = (options) =>
  build({
    ...common,
    write: false,
    outfile: path("dist/section.js"),
    format: "cjs",
    define: {
      __CERT_RETRIEVER_VERSION__: JSON.stringify(pkg.version),
      "import.meta.url": "__crImportMetaUrl",
    },
    metafile: true,
    ...options,
  });
const builds = {
  cli: await bundled({ entryPoints: [path("src/cli/bundle-entry.ts")], plugins: [requireExternals, toSections] }),
};
for (const [name, modules] of Object.entries(SECTIONS)) {
  const contents = `module.exports = { ${Object.entries(modules)
    .map(([as, target]) => `${JSON.stringify(as)}: require(${JSON.stringify(target)})`)
    .join(", ")} };`;
  builds[name] = await bundled({
    stdin: { contents, resolveDir: path("."), loader: "js" },
    plugins: [requireExternals],
  });
}

// The file's tail: each section's mark and code in a comment; the table says where each is, from the end.
let tail = "";
const code = {};
for (const [name, result] of Object.entries(builds)) {
  const source = result.outputFiles.find((f) => f.path.endsWith(".js")).text;
  // Line comments end at a carriage return too: none may be in the code (esbuild escapes them in strings).
  // biome-ignore lint/suspicious/noControlCharactersInRegex: a carriage return or other control character is what it refuses
  if (/[^\x09\x0a\x20-\x7e]/.test(source))
    throw new Error(`the ${name} section is not printable ASCII without carriage returns`);
  code[name] = `${sectionMark(name)}${toComment(`(function (${PARAMETERS.join(", ")}) {${source}\n})`)}`;
}
const sections = {};
for (const name of Object.keys(code)) tail += `\n${code[name]}`;
tail += "\n";
for (const name of Object.keys(code)) {
  const at = tail.indexOf(code[name]);
  sections[name] = [tail.length - at, code[name].length];
}

const device = path("dist/cert-retriever.mjs");
const start = await build({
  ...common,
  entryPoints: [path("src/cli/single-file.ts")],
  write: false,
  outfile: device,
  format: "esm",
  define: {
    __CERT_RETRIEVER_BUILD__: JSON.stringify(createHash("sha256").update(tail).digest("hex").slice(0, 16)),
    __CERT_RETRIEVER_SECTIONS__: JSON.stringify(sections),
    __CERT_RETRIEVER_VERSION__: JSON.stringify(pkg.version),
  },
  banner: { js: "#!/usr/bin/env node" },
  legalComments: "none",
});
if (/^\s*import\b|import\.meta|^\s*export\b/m.test(start.outputFiles[0].text))
  throw new Error("the single file's start must parse as CommonJS too");
await writeFile(device, `${start.outputFiles[0].text}${tail}`);
const legal = [
  ...new Set(
    Object.values(builds).flatMap((r) => r.outputFiles.filter((f) => f.path.endsWith(".LEGAL.txt")).map((f) => f.text)),
  ),
];
await writeFile(`${device}.LEGAL.txt`, legal.join("\n"));

await chmod(device, 0o755);
console.error(`built ${device}`);
const carried = Object.values(builds)
  .flatMap((r) => Object.values(r.metafile.outputs))
  .flatMap((o) =>
    Object.entries(o.inputs)
      .filter(([, i]) => i.bytesInOutput > 0)
      .map(([f]) => f),
  );
const labInDevice = carried.filter((f) => f.startsWith("lab/") || f.includes("cert-retriever-lab"));
if (labInDevice.length > 0) throw new Error(`the device build carries the lab: ${labInDevice.join(", ")}`);
