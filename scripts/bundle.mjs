#!/usr/bin/env node
// The single-file build for devices: dist/cert-retriever.mjs, ESM, everything bundled except
// native addons (@napi-rs/keyring, needed only for --store keychain). Runs without node_modules.
import { build } from "esbuild";
import { chmod, readFile } from "node:fs/promises";

const pkg = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8"));
const out = new URL("../dist/cert-retriever.mjs", import.meta.url).pathname;
await build({
  entryPoints: [new URL("../src/cli/bundle-entry.ts", import.meta.url).pathname],
  outfile: out,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20.19",
  external: ["@napi-rs/keyring", "@napi-rs/keyring-*"],
  define: { __CERT_RETRIEVER_VERSION__: JSON.stringify(pkg.version) },
  // CommonJS dependencies call require() for Node's built-ins.
  banner: { js: `#!/usr/bin/env node\nimport { createRequire as __crCreateRequire } from "node:module";\nconst require = __crCreateRequire(import.meta.url);` },
  legalComments: "external",
  minify: true,
  metafile: true,
  logLevel: "warning",
});
await chmod(out, 0o755);
console.error(`built ${out}`);
