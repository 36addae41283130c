#!/usr/bin/env node
// The lab's single file, dist/cert-retriever-lab.mjs: everything bundled, the agent included (from
// its build, dist/index.js, through the package's public entry), so that it runs without
// node_modules. Native addons the agent loads only for PKCS#11 or the keychain stay outside; the
// lab needs neither.
import { chmod, readFile } from "node:fs/promises";
import { build } from "esbuild";

const path = (p) => new URL(`../${p}`, import.meta.url).pathname;
const pkg = JSON.parse(await readFile(path("package.json"), "utf8"));
const out = path("dist/cert-retriever-lab.mjs");
await build({
  entryPoints: [path("src/entry.ts")],
  outfile: out,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20.19",
  external: ["@napi-rs/keyring", "@napi-rs/keyring-*", "pkcs11js"],
  legalComments: "external",
  minify: true,
  logLevel: "warning",
  define: { __CERT_RETRIEVER_LAB_VERSION__: JSON.stringify(pkg.version) },
  // CommonJS dependencies call require() for Node's built-ins.
  banner: {
    js: `#!/usr/bin/env node\nimport { createRequire as __labCreateRequire } from "node:module";\nconst require = __labCreateRequire(import.meta.url);`,
  },
});
await chmod(out, 0o755);
console.error(`built ${out}`);
