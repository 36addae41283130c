import { spawn } from "node:child_process";
import { chmod, copyFile, mkdir, readdir, readFile, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli, SECRETS } from "../helpers/cli.js";
import { listFiles } from "../helpers/enroll.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { openssl } from "../helpers/tools.js";

const BUNDLE = fileURLToPath(new URL("../../dist/cert-retriever.mjs", import.meta.url));
const LAB_BUNDLE = fileURLToPath(new URL("../../lab/dist/cert-retriever-lab.mjs", import.meta.url));

/** Runs the single file copied alone into an empty directory: no node_modules anywhere above it. */
async function runAlone(
  file: string,
  args: string[],
  input = "",
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [file, ...args], {
    cwd: join(file, ".."),
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  child.stdin.end(input);
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  for (const secret of SECRETS) expect(`${stdout}${stderr}`).not.toContain(secret);
  return { code, stdout, stderr };
}

describe("the single-file build", () => {
  let lab: TestLab;
  beforeAll(async () => {
    lab = await startTestLab({ certProfile: "open", autoRegister: true });
  });
  afterAll(async () => lab.stop());

  it("runs without node_modules: --version, and a whole enrollment whose files openssl verifies", async () => {
    const dir = await tempDir("cr-solo-");
    const file = join(dir, "cert-retriever.mjs");
    await copyFile(BUNDLE, file);
    const version = await runAlone(file, ["--version"]);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    const out = join(dir, "certs");
    const run = await runAlone(
      file,
      [
        "enroll",
        "--platform",
        lab.url,
        "--device-id",
        "solo",
        "--username",
        "admin",
        "--password-stdin",
        "--key-type",
        "ec-p256",
        "--out",
        out,
      ],
      lab.password,
    );
    expect(run.code, run.stderr).toBe(0);
    expect(await listFiles(out)).toEqual(["IOTmidCA.crt", "solo.crt", "solo.key", "solo.settings.json"]);
    expect(openssl("verify", "-CAfile", join(out, "IOTmidCA.crt"), join(out, "solo.crt"))).toMatch(/: OK/);
  });

  it("alone, without the PKCS#11 packages: --key pkcs11: stops with exit 30 and one sentence, before any request (with them in a node_modules above it, as in this repository, the PKCS#11 tests run it)", async () => {
    const dir = await tempDir("cr-solo-p11-");
    const file = join(dir, "cert-retriever.mjs");
    await copyFile(BUNDLE, file);
    const key = "pkcs11:token=device?module-path=/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so";
    const run = await runAlone(
      file,
      [
        "enroll",
        "--platform",
        lab.url,
        "--device-id",
        "solop11",
        "--username",
        "admin",
        "--password-stdin",
        "--out",
        join(dir, "certs"),
        "--key",
        key,
      ],
      lab.password,
    );
    expect(run.stderr).toMatch(
      /^cert-retriever: token failed: this installation has no PKCS#11 support \(node-webcrypto-p11 and pkcs11js\): Cannot find module 'pkcs11js'/m,
    );
    expect(run.stderr).toMatch(/hint: .*npm install pkcs11js/);
    expect(run.stderr).not.toMatch(/authenticate/);
    expect(run.code).toBe(30);
    expect(await listFiles(dir)).toEqual(["cert-retriever.mjs"]);
  });

  it("installed as README says, without its extension and through a link (/usr/bin/cert-retriever): the same file works", async () => {
    const root = await tempDir("cr-installed-");
    await mkdir(join(root, "lib"));
    await mkdir(join(root, "bin"));
    await copyFile(BUNDLE, join(root, "lib", "cert-retriever"));
    await symlink(join(root, "lib", "cert-retriever"), join(root, "bin", "cert-retriever"));
    const linked = join(root, "bin", "cert-retriever");
    const [help, reference] = await Promise.all([
      runAlone(linked, ["enroll", "--help"]),
      runAlone(BUNDLE, ["enroll", "--help"]),
    ]);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toBe(reference.stdout);
    const out = join(root, "certs");
    const run = await runAlone(
      linked,
      [
        "enroll",
        "--platform",
        lab.url,
        "--device-id",
        "installed",
        "--username",
        "admin",
        "--password-stdin",
        "--key-type",
        "ec-p256",
        "--out",
        out,
      ],
      lab.password,
    );
    expect(run.code, run.stderr).toBe(0);
    expect(openssl("verify", "-CAfile", join(out, "IOTmidCA.crt"), join(out, "installed.crt"))).toMatch(/: OK/);
  });

  it("a copy cut short or altered says so in one sentence (exit 1; 255 for check, which must not skip the unit)", async () => {
    const whole = await readFile(BUNDLE);
    const dir = await tempDir();
    const cut = join(dir, "cut.mjs");
    await writeFile(cut, whole.subarray(0, whole.length - 1000));
    const altered = join(dir, "altered.mjs");
    await writeFile(altered, Buffer.from(whole.toString("latin1").replace(/\n/g, "\r\n"), "latin1"));
    for (const file of [cut, altered]) {
      const help = await runAlone(file, ["--help"]);
      expect(help.code).toBe(1);
      expect(help.stderr).toMatch(
        /^cert-retriever: .* is not a complete cert-retriever build: its cli code is missing or damaged; copy the file again\n$/,
      );
      expect((await runAlone(file, ["check", "--device-id", "d1"])).code).toBe(255);
    }
  });

  it("answers like the source build (same help, same usage errors)", async () => {
    const [fromBundle, fromSource] = await Promise.all([
      runAlone(BUNDLE, ["enroll", "--help"]),
      runCli(["enroll", "--help"]),
    ]);
    expect(fromBundle.stdout).toBe(fromSource.stdout);
    const bad = await runAlone(BUNDLE, ["enroll", "--device-id", "../x", "--platform", lab.url]);
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringMatching(/is not usable/)]);
  });
});

describe("the device build carries no lab platform and no test fault hooks", () => {
  it("`lab` says where the lab is (exit 2); a fault hook's variable does nothing; neither is in the file", async () => {
    const lab = await runAlone(BUNDLE, ["lab", "serve", "--dir", await tempDir()]);
    expect(lab.code).toBe(2);
    expect(lab.stderr).toMatch(
      /^cert-retriever: the lab platform is its own package, cert-retriever-lab, .*npx cert-retriever-lab/m,
    );
    const text = await readFile(BUNDLE, "utf8");
    expect(text).not.toContain("CERT_RETRIEVER_TEST_FAULT");
    expect(text).not.toContain("The lab platform speaks");
    // No file of the build holds a fault hook: tests inject faults through what the agent is given.
    const dist = join(BUNDLE, "..");
    const files = (await readdir(dist, { recursive: true })).map(String).filter((f) => /\.(m?js|d\.ts)$/.test(f));
    expect(files.length).toBeGreaterThan(0);
    for (const file of files)
      expect(await readFile(join(dist, file), "utf8"), file).not.toMatch(/CERT_RETRIEVER_TEST_FAULT|faultPoint/);
  });

  it("the lab's own single file, alone in a directory, serves the device's single file, alone in another", async () => {
    const labFile = join(await tempDir("cr-lab-solo-"), "cert-retriever-lab.mjs");
    await copyFile(LAB_BUNDLE, labFile);
    const labDir = join(labFile, "..", "state");
    const child = spawn(
      process.execPath,
      [labFile, "serve", "--dir", labDir, "--listen", "127.0.0.1:0", "--cert-profile", "open", "--auto-register"],
      {
        cwd: join(labFile, ".."),
        env: { PATH: process.env.PATH ?? "", CERT_RETRIEVER_LAB_PASSWORD: "solo-lab-password" },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    try {
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on("data", (d: Buffer) => resolve(d.toString().trim()));
        child.on("close", (code) => reject(new Error(`the lab exited ${code}`)));
      });
      SECRETS.add("solo-lab-password");
      const device = join(await tempDir("cr-dev-solo-"), "cert-retriever.mjs");
      await copyFile(BUNDLE, device);
      const out = join(device, "..", "certs");
      // The fault variable would kill the full CLI after submitting the CSR; the device build has no such hook.
      const run = await runAlone(
        device,
        [
          "enroll",
          "--platform",
          url,
          "--device-id",
          "solo-2",
          "--username",
          "admin",
          "--password-stdin",
          "--key-type",
          "ec-p256",
          "--out",
          out,
        ],
        "solo-lab-password",
        { CERT_RETRIEVER_TEST_FAULT: "kill:after-submit-csr" },
      );
      expect(run.code, run.stderr).toBe(0);
      expect(openssl("verify", "-CAfile", join(out, "IOTmidCA.crt"), join(out, "solo-2.crt"))).toMatch(/: OK/);
    } finally {
      clearTimeout(timer);
      child.kill("SIGTERM");
    }
  });
});

describe("the device build's code cache (CERT_RETRIEVER_CACHE_DIR)", () => {
  let lab: TestLab;
  beforeAll(async () => {
    lab = await startTestLab({ certProfile: "open", autoRegister: true });
  });
  afterAll(async () => lab.stop());
  let n = 0;
  /** An enrollment by `file` (the single file by default) into a new directory, with `env`. */
  const enroll = async (cacheDir: string | undefined, env: Record<string, string> = {}, file = BUNDLE) =>
    runAlone(
      file,
      [
        "enroll",
        "--platform",
        lab.url,
        "--device-id",
        `cache-${n++}`,
        "--username",
        "admin",
        "--password-stdin",
        "--key-type",
        "ec-p256",
        "--out",
        join(await tempDir(), "certs"),
      ],
      lab.password,
      {
        ...(cacheDir === undefined ? {} : { CERT_RETRIEVER_CACHE_DIR: cacheDir }),
        ...env,
      },
    );
  const cacheFiles = async (dir: string) => (await readdir(dir)).filter((f) => f.endsWith(".v8cache"));

  it("a failed run leaves no cache, and help has its own: the first complete enrollment makes enroll's", async () => {
    const dir = await tempDir();
    const refused = await runAlone(
      BUNDLE,
      [
        "enroll",
        "--platform",
        lab.url,
        "--device-id",
        "cache-refused",
        "--username",
        "admin",
        "--password-stdin",
        "--out",
        join(await tempDir(), "certs"),
      ],
      "not-the-password",
      { CERT_RETRIEVER_CACHE_DIR: dir },
    );
    expect(refused.code).toBe(10);
    expect(await cacheFiles(dir)).toEqual([]);
    expect((await runAlone(BUNDLE, ["enroll", "--help"], "", { CERT_RETRIEVER_CACHE_DIR: dir })).code).toBe(0);
    expect(await cacheFiles(dir)).toEqual([expect.stringMatching(/-help-cli\.v8cache$/)]);
    expect((await enroll(dir)).code).toBe(0);
    expect((await cacheFiles(dir)).sort()).toEqual([
      expect.stringMatching(/-enroll-cli\.v8cache$/),
      expect.stringMatching(/-help-cli\.v8cache$/),
    ]);
  });

  it("the first run makes the chosen directory (0700) and leaves a cache (0600); the next run uses it as it is", async () => {
    const dir = join(await tempDir(), "cache");
    const first = await enroll(dir);
    expect(first.code, first.stderr).toBe(0);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    const files = await cacheFiles(dir);
    expect(files).toEqual([
      expect.stringMatching(
        new RegExp(
          `^cert-retriever-[0-9a-f]{16}-${process.version.replace(/\./g, "\\.")}-${process.arch}-enroll-cli\\.v8cache$`,
        ),
      ),
    ]);
    const file = join(dir, files[0]!);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const before = await stat(file);
    const second = await enroll(dir);
    expect(second.code, second.stderr).toBe(0);
    // Accepted by V8, so not written again.
    expect((await stat(file)).mtimeMs).toBe(before.mtimeMs);
    expect(await cacheFiles(dir)).toEqual(files);
  });

  it("a damaged or cut-short cache is compiled around and replaced; other builds' caches are removed, another Node's kept", async () => {
    const dir = await tempDir();
    expect((await enroll(dir)).code).toBe(0);
    const [name] = await cacheFiles(dir);
    const file = join(dir, name!);
    const valid = await readFile(file);
    await writeFile(
      join(dir, `cert-retriever-0000000000000000-${process.version}-${process.arch}-enroll-cli.v8cache`),
      valid,
    );
    const otherNode = name!.replace(process.version, "v99.0.0");
    await writeFile(join(dir, otherNode), valid);
    await writeFile(join(dir, "notes.txt"), "mine");
    for (const damaged of [Buffer.from("not a code cache"), valid.subarray(0, valid.length >> 1)]) {
      await writeFile(file, damaged);
      const run = await enroll(dir);
      expect(run.code, run.stderr).toBe(0);
      expect((await readFile(file)).length).toBeGreaterThan(damaged.length);
    }
    expect((await readdir(dir)).sort()).toEqual([name, otherNode, "notes.txt"].sort());
  });

  it("a directory or a cache file other users can write is never read nor written; a relative path or none at all writes nothing", async () => {
    const open = await tempDir();
    await chmod(open, 0o777);
    expect((await enroll(open)).code).toBe(0);
    expect(await readdir(open)).toEqual([]);

    const dir = await tempDir();
    expect((await enroll(dir)).code).toBe(0);
    const [name] = await cacheFiles(dir);
    const file = join(dir, name!);
    // A valid cache, which V8 would accept (and then leave as it is), but writable by others: not read, so replaced.
    await chmod(file, 0o666);
    const run = await enroll(dir);
    expect(run.code, run.stderr).toBe(0);
    expect((await stat(file)).mode & 0o777).toBe(0o600);

    // Alone in a directory, with a home of its own: after runs with a relative path and with no
    // directory at all, the home and the working directory hold only the copy itself.
    const home = await tempDir();
    const alone = join(home, "cert-retriever.mjs");
    await copyFile(BUNDLE, alone);
    const env = { HOME: home, XDG_CACHE_HOME: join(home, ".cache") };
    expect((await enroll("relative-cache", env, alone)).code).toBe(0);
    expect((await enroll(undefined, env, alone)).code).toBe(0);
    expect(await readdir(home, { recursive: true })).toEqual(["cert-retriever.mjs"]);
  });
});
