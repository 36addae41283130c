import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assertNoSecrets } from "../helpers/cli.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { runProgram } from "../helpers/program.js";
import { makeSoftToken, type TestToken } from "../helpers/softhsm.js";
import { haveRoot, haveTool } from "../helpers/tools.js";

/**
 * The Debian package as a device gets it: built by `npm run package`'s script, checked by lintian,
 * installed with dpkg -i on this machine (root), used as /usr/bin/cert-retriever, then purged.
 * No other test runs a `cert-retriever` from the PATH, so the installed command disturbs none.
 * The man page is left out of this install (--path-exclude): man-db's trigger would rebuild its
 * database, seconds of work on every install and purge; the package's listing shows it is there.
 */
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const LIB = "/usr/lib/cert-retriever";
const UNITS = ["cert-retriever.service", "cert-retriever-renew.service", "cert-retriever-renew.timer"].map(
  (u) => `/usr/lib/systemd/system/${u}`,
);

const ready =
  haveTool("dpkg-deb") &&
  haveTool("lintian") &&
  haveTool("systemd-analyze") &&
  haveTool("softhsm2-util") &&
  haveTool("flock") &&
  haveRoot("installing the Debian package (dpkg -i)");

/** A command's exit code and output (this PATH). */
const run = (argv: string[], opts: { env?: Record<string, string>; input?: string } = {}) =>
  runProgram(argv, { env: { PATH: process.env.PATH ?? "", ...opts.env }, input: opts.input });

/** Holds a machine-wide lock until released: CI's two Node lines may run this file at once, and dpkg takes one install at a time. */
async function machineLock(): Promise<ChildProcess> {
  const holder = spawn("flock", ["/run/lock/cert-retriever-deb-test.lock", "sh", "-c", "echo held; read _"], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: holder.stdout! }).once("line", () => resolve());
    holder.once("close", (code) => reject(new Error(`flock ended (${code})`)));
  });
  return holder;
}

describe.skipIf(!ready)("the Debian package, installed with dpkg -i and purged", () => {
  let lab: TestLab;
  let token: TestToken;
  let work: string;
  let deb: string;
  let lock: ChildProcess;
  beforeAll(async () => {
    lock = await machineLock();
    // A package left by an earlier run is this test's; one installed some other way is not touched.
    expect(spawnSync("dpkg", ["-s", "cert-retriever"]).status, "cert-retriever is already installed here").not.toBe(0);
    [lab, token, work] = await Promise.all([
      startTestLab({ api: "x509", autoRegister: true, certProfile: "open" }),
      makeSoftToken("device"),
      tempDir("cr-deb-"),
    ]);
    const built = await run([process.execPath, join(ROOT, "scripts", "package-deb.mjs"), "--out", work]);
    expect(built.code, built.stderr).toBe(0);
    deb = join(work, (await readdir(work)).find((f) => f.endsWith(".deb"))!);
  }, 30_000);
  afterAll(async () => {
    spawnSync("dpkg", ["--purge", "cert-retriever"]);
    await Promise.all([lab?.stop(), token?.stop()]);
    lock?.stdin?.end();
  });

  it("is lintian-clean (overrides documented), installs with its snapshot, enrolls, passes systemd-analyze verify, and purges to nothing but the credentials", async () => {
    expect(deb).toMatch(/\/cert-retriever_\d+\.\d+\.\d+_(amd64|arm64)\.deb$/);
    const lintian = run(["lintian", "--pedantic", deb]);
    const listing = (await run(["dpkg-deb", "-c", deb])).stdout;
    for (const path of [
      "./usr/bin/cert-retriever",
      `.${LIB}/cert-retriever.mjs`,
      `.${LIB}/node_modules/pkcs11js/build/Release/pkcs11.node`,
      ...UNITS.map((u) => `.${u}`),
      "./usr/share/man/man1/cert-retriever.1.gz",
      "./usr/share/bash-completion/completions/cert-retriever",
      "./usr/share/zsh/vendor-completions/_cert-retriever",
      "./usr/share/fish/vendor_completions.d/cert-retriever.fish",
      "./usr/share/doc/cert-retriever/examples/cert-retriever.env.example",
      "./usr/share/doc/cert-retriever/copyright",
      "./usr/share/doc/cert-retriever/changelog.gz",
    ])
      expect(listing).toContain(` ${path}\n`);

    const install = await run(["dpkg", "-i", "--path-exclude=/usr/share/man/*", deb]);
    expect(install.code, install.stderr).toBe(0);
    expect(existsSync(`${LIB}/snapshot.blob`)).toBe(true);

    // The launcher starts the snapshot made for this Node; with another Node's, or NODE_OPTIONS, the plain file.
    const traced = (env: Record<string, string> = {}) =>
      run(["sh", "-x", "/usr/bin/cert-retriever", "--version"], { env });
    const version = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")).version as string;
    const fromSnapshot = await traced();
    expect([fromSnapshot.code, fromSnapshot.stdout]).toEqual([0, `${version}\n`]);
    expect(fromSnapshot.stderr).toContain(`exec /usr/bin/node --snapshot-blob ${LIB}/snapshot.blob -- --version`);
    const withOptions = await traced({ NODE_OPTIONS: "--max-old-space-size=64" });
    expect([withOptions.code, withOptions.stdout]).toEqual([0, `${version}\n`]);
    expect(withOptions.stderr).toContain(`exec /usr/bin/node ${LIB}/cert-retriever.mjs --version`);
    const stamp = await readFile(`${LIB}/snapshot.node`, "utf8");
    await writeFile(`${LIB}/snapshot.node`, "another node\n");
    const stale = await traced();
    expect([stale.code, stale.stdout, stale.stderr]).toEqual([
      0,
      `${version}\n`,
      expect.stringContaining("cert-retriever.mjs --version"),
    ]);
    // What the nodejs package's upgrade runs (the trigger on /usr/bin/node): the snapshot is made again.
    const triggered = await run(["/var/lib/dpkg/info/cert-retriever.postinst", "triggered", "/usr/bin/node"]);
    expect(triggered.code, triggered.stderr).toBe(0);
    expect(await readFile(`${LIB}/snapshot.node`, "utf8")).toBe(stamp);

    // An enrollment with the installed command (from its snapshot), its key in a SoftHSM2 token: pkcs11js comes with the package.
    const out = join(work, "certs");
    const enroll = await run(
      [
        "/usr/bin/cert-retriever",
        "enroll",
        ...["--platform", lab.url, "--device-id", "deb001", "--username", "admin", "--password-stdin", "--out", out],
        ...["--key", `pkcs11:token=${token.label}?module-path=${token.module}&pin-source=file:${token.pinFile}`],
      ],
      { env: token.env, input: `${lab.password}\n` },
    );
    assertNoSecrets(`${enroll.stdout}${enroll.stderr}`, ["enroll"]);
    expect(enroll.code, enroll.stderr).toBe(0);
    expect(enroll.stderr).toMatch(/generate-key: ec-p256 key generated in token 'device'/);
    const credentials = (await readdir(out)).sort();
    expect(credentials).toContain("deb001.crt");

    const verify = await run(["systemd-analyze", "verify", "--man=no", ...UNITS]);
    expect(`${verify.stdout}${verify.stderr}`).toBe("");
    expect(verify.code).toBe(0);

    const lint = await lintian;
    expect(lint.stdout, lint.stderr).toBe("");
    expect(lint.code, lint.stderr).toBe(0);

    const purge = await run(["dpkg", "--purge", "cert-retriever"]);
    expect(purge.code, purge.stderr).toBe(0);
    expect(spawnSync("dpkg", ["-L", "cert-retriever"]).status).not.toBe(0);
    for (const gone of [
      LIB,
      "/usr/bin/cert-retriever",
      ...UNITS,
      "/usr/share/bash-completion/completions/cert-retriever",
    ])
      expect(existsSync(gone), gone).toBe(false);
    expect((await readdir(out)).sort()).toEqual(credentials);
  }, 30_000);
});
