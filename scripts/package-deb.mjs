#!/usr/bin/env node
// `npm run package`: the Debian package, dist/pkg/cert-retriever_<version>_<arch>.deb (dpkg-deb),
// for this machine's architecture (it carries the native addons built by npm ci here). Run after
// `npm run build`. What goes where is in docs/packaging.md ("The Debian package"); the maintainer
// scripts are in scripts/deb/. Then `lintian` checks it (scripts/deb/lintian-overrides says why
// each tag it still reports is right for this package).
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const at = (...p) => join(ROOT, ...p);
const pkg = JSON.parse(readFileSync(at("package.json"), "utf8"));
const ARCH = execFileSync("dpkg", ["--print-architecture"], { encoding: "utf8" }).trim();
const NODE_ARCH = { amd64: "x64", arm64: "arm64" }[ARCH];
// Usage: node scripts/package-deb.mjs [--out DIR] (default dist/pkg).
const OUT = process.argv[2] === "--out" && process.argv[3] ? process.argv[3] : at("dist", "pkg");
const STAGE = mkdtempSync(join(tmpdir(), "cert-retriever-deb-"));
const LIB = "usr/lib/cert-retriever";
const DOC = "usr/share/doc/cert-retriever";
// Reproducible: every file's time is the package version's commit time, or this fixed one.
const EPOCH = Number(process.env.SOURCE_DATE_EPOCH ?? 1_767_225_600);

/** Writes `text` (or bytes) at `path` under the stage with `mode`, making its directories (0755). */
function put(path, content, mode = 0o644) {
  const file = join(STAGE, path);
  mkdirSync(dirname(file), { recursive: true, mode: 0o755 });
  writeFileSync(file, content);
  chmodSync(file, mode);
}
const gz = (text) => gzipSync(Buffer.from(text), { level: 9 });
const cli = (...args) =>
  execFileSync(process.execPath, [at("dist", "cert-retriever.mjs"), ...args], { encoding: "utf8" });

/** The program: the single file, its launcher, and the native addons it loads from a node_modules beside it. */
function program() {
  put(`${LIB}/cert-retriever.mjs`, readFileSync(at("dist", "cert-retriever.mjs")), 0o755);
  put("usr/bin/cert-retriever", readFileSync(at("scripts", "deb", "launcher.sh")), 0o755);
  // Token keys (pkcs11js, Node-API: any Node >= 20) and --store keychain (@napi-rs/keyring, prebuilt).
  const addons = {
    // (their licences are in the package's copyright file)
    pkcs11js: ["package.json", "index.js", "build/Release/pkcs11.node"],
    "@napi-rs/keyring": ["package.json", "index.js"],
    [`@napi-rs/keyring-linux-${NODE_ARCH}-gnu`]: ["package.json", `keyring.linux-${NODE_ARCH}-gnu.node`],
  };
  for (const [name, files] of Object.entries(addons))
    for (const f of files) put(`${LIB}/node_modules/${name}/${f}`, readFileSync(at("node_modules", name, f)));
  for (const addon of [
    "pkcs11js/build/Release/pkcs11.node",
    `@napi-rs/keyring-linux-${NODE_ARCH}-gnu/keyring.linux-${NODE_ARCH}-gnu.node`,
  ])
    execFileSync("strip", ["--strip-unneeded", "--remove-section=.comment", join(STAGE, LIB, "node_modules", addon)]);
}

/** The units (Documentation= pointing at what the package installs), man page, completions, docs. */
function around() {
  for (const unit of ["cert-retriever.service", "cert-retriever-renew.service", "cert-retriever-renew.timer"]) {
    const text = readFileSync(at("systemd", unit), "utf8").replace(
      /^Documentation=.*$/m,
      "Documentation=man:cert-retriever(1) file:///usr/share/doc/cert-retriever/README.md.gz",
    );
    put(`usr/lib/systemd/system/${unit}`, text);
  }
  put("usr/share/man/man1/cert-retriever.1.gz", gz(readFileSync(at("dist", "man", "cert-retriever.1"))));
  put("usr/share/bash-completion/completions/cert-retriever", cli("completion", "bash"));
  put("usr/share/zsh/vendor-completions/_cert-retriever", cli("completion", "zsh"));
  put("usr/share/fish/vendor_completions.d/cert-retriever.fish", cli("completion", "fish"));
  put(`${DOC}/examples/cert-retriever.env.example`, readFileSync(at("systemd", "cert-retriever.env.example")));
  put(
    `${DOC}/examples/platform.conf.example`,
    readFileSync(at("systemd", "cert-retriever.service.d", "platform.conf.example")),
  );
  put(`${DOC}/README.md.gz`, gz(readFileSync(at("README.md"))));
  put(`${DOC}/third-party-licenses.txt.gz`, gz(readFileSync(at("dist", "cert-retriever.mjs.LEGAL.txt"))));
  put(`${DOC}/copyright`, readFileSync(at("scripts", "deb", "copyright"), "utf8"));
  const date = new Date(EPOCH * 1000).toUTCString().replace(/GMT$/, "+0000");
  put(
    `${DOC}/changelog.gz`,
    gz(
      `cert-retriever (${pkg.version}) unstable; urgency=medium\n\n  * Release ${pkg.version}: see README.md.gz.\n\n -- cert-retriever maintainers <cert-retriever@users.noreply.github.com>  ${date}\n`,
    ),
  );
  put("usr/share/lintian/overrides/cert-retriever", readFileSync(at("scripts", "deb", "lintian-overrides")));
}

/** DEBIAN/: control, the maintainer scripts, the trigger on Node, md5sums. */
function control() {
  const files = execFileSync("find", [".", "-type", "f", "-not", "-path", "./DEBIAN/*"], {
    cwd: STAGE,
    encoding: "utf8",
  })
    .trim()
    .split("\n")
    .map((f) => f.slice(2))
    .sort();
  const kb = files.reduce((sum, f) => sum + Math.ceil(statSync(join(STAGE, f)).size / 1024), 0);
  put(
    "DEBIAN/control",
    `Package: cert-retriever
Version: ${pkg.version}
Architecture: ${ARCH}
Maintainer: ${process.env.DEB_MAINTAINER ?? "cert-retriever maintainers <cert-retriever@users.noreply.github.com>"}
Installed-Size: ${kb}
Depends: nodejs (>= 20.19), libc6 (>= 2.34), libgcc-s1 (>= 4.2), libstdc++6 (>= 5)
Section: admin
Priority: optional
Description: X.509 identity for an IoT device from a dojot platform
 cert-retriever makes a device's key on the device, asks the platform to sign
 its certificate signing request, validates what comes back and stores the
 key, certificate and CA certificate safely, renewing them before they expire.
 .
 The package brings the command, systemd units for first boot and daily
 renewal (not enabled), the man page and shell completions. Keys in a PKCS#11
 token and the desktop keychain work out of the box.
`,
  );
  for (const script of ["postinst", "prerm", "postrm"])
    put(`DEBIAN/${script}`, readFileSync(at("scripts", "deb", script)), 0o755);
  put("DEBIAN/triggers", "interest-noawait /usr/bin/node\n");
  const sums = execFileSync("md5sum", files, { cwd: STAGE, encoding: "utf8" });
  put("DEBIAN/md5sums", sums);
}

if (!NODE_ARCH) throw new Error(`npm run package: no build for the architecture ${ARCH}`);
mkdirSync(OUT, { recursive: true });
chmodSync(STAGE, 0o755);
program();
around();
control();
execFileSync("find", [STAGE, "-exec", "touch", "--no-dereference", "-d", `@${EPOCH}`, "{}", "+"]);
const deb = join(OUT, `cert-retriever_${pkg.version}_${ARCH}.deb`);
execFileSync("dpkg-deb", ["--root-owner-group", "-Zxz", "--build", STAGE, deb], {
  stdio: ["ignore", "ignore", "inherit"],
});
rmSync(STAGE, { recursive: true, force: true });
console.error(`built ${relative(process.cwd(), deb)} (${(statSync(deb).size / 1e6).toFixed(2)} MB)`);
