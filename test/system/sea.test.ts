import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assertNoSecrets } from "../helpers/cli.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { runProgram } from "../helpers/program.js";
import { haveTool } from "../helpers/tools.js";

/**
 * The self-contained executables as `npm run sea` makes them (scripts/sea.mjs): x64 with its
 * start-up snapshot, run here with no Node on the PATH; arm64 started under qemu-aarch64 (built
 * without the snapshot, which qemu takes minutes to make; `npm run sea` makes it with one).
 */
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const ARM64_LIBS = "/usr/aarch64-linux-gnu";

/** arm64's glibc, libstdc++ and libatomic for qemu (the *-arm64-cross packages): loud locally, a failure under CI=true. */
function haveArm64Libs(): boolean {
  const found =
    existsSync(join(ARM64_LIBS, "lib", "libatomic.so.1")) && existsSync(join(ARM64_LIBS, "lib", "libstdc++.so.6"));
  if (!found) {
    if (process.env.CI === "true") throw new Error(`${ARM64_LIBS} lacks arm64's libraries (.ci/run installs them)`);
    console.warn(`\n!!! SKIPPING the arm64 executable: ${ARM64_LIBS} lacks arm64's libraries. CI installs them. !!!\n`);
  }
  return found;
}

const ready = haveTool("qemu-aarch64") && haveArm64Libs();

/** A program's exit code and output, in an environment without Node on the PATH. */
const run = (argv: string[], opts: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {}) =>
  runProgram(argv, { env: { PATH: "/usr/bin:/bin", ...opts.env }, input: opts.input, timeoutMs: opts.timeoutMs });

describe.skipIf(!ready)("the self-contained executables (Node 26 single executable applications)", () => {
  let lab: TestLab;
  let work: string;
  let version: string;
  const x64 = () => join(work, "cert-retriever-linux-x64");
  beforeAll(async () => {
    [lab, work] = await Promise.all([
      startTestLab({ api: "x509", autoRegister: true, certProfile: "open" }),
      // .ci/run builds them once before the tests, as `npm run sea` does (x64 with its snapshot,
      // arm64 without): here they are taken as built. Without it, this file builds them.
      process.env.CERT_RETRIEVER_TEST_SEA_DIR || tempDir("cr-sea-"),
    ]);
    version = (JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
    if (process.env.CERT_RETRIEVER_TEST_SEA_DIR) return;
    const sea = join(ROOT, "scripts", "sea.mjs");
    // Each build may first fetch its Node from npm; on a loaded machine that and the snapshot take minutes.
    const build = { env: { PATH: process.env.PATH ?? "" }, timeoutMs: 180_000 };
    const withSnapshot = await run([process.execPath, sea, "--out", work, "x64"], build);
    expect(withSnapshot.code, withSnapshot.stderr).toBe(0);
    expect(withSnapshot.stderr).toMatch(/cert-retriever-linux-x64 \(\d+\.\d MB, start-up snapshot\)/);
    const arm64 = await run([process.execPath, sea, "--out", join(work, "arm64"), "--no-snapshot", "arm64"], build);
    expect(arm64.code, arm64.stderr).toBe(0);
  }, 400_000);
  afterAll(async () => lab?.stop());

  it("x64: --version and --help from the snapshot, and an enrollment, with no Node on the PATH", async () => {
    const [v, help] = await Promise.all([run([x64(), "--version"]), run([x64(), "enroll", "--help"])]);
    expect([v.code, v.stdout]).toEqual([0, `${version}\n`]);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^Usage: cert-retriever enroll \[options\]/);
    const out = join(work, "certs");
    const enroll = await run(
      [x64(), "enroll", "--platform", lab.url, "--device-id", "5ea001", "--username", "admin", "--password-stdin"],
      { env: { CERT_RETRIEVER_OUT: out }, input: `${lab.password}\n` },
    );
    assertNoSecrets(`${enroll.stdout}${enroll.stderr}`, ["enroll"]);
    expect(enroll.code, enroll.stderr).toBe(0);
    expect((await readdir(out)).sort()).toEqual(expect.arrayContaining(["5ea001.crt", "5ea001.key"]));
  });

  it("x64: a key in a token says plainly that the executable cannot carry pkcs11js, and names the Debian package (exit 30, before the platform is asked)", async () => {
    const enroll = await run(
      [x64(), "enroll", "--platform", "http://127.0.0.1:9", "--device-id", "5ea002", "--username", "admin"],
      {
        env: {
          CERT_RETRIEVER_OUT: join(work, "token-certs"),
          CERT_RETRIEVER_KEY:
            "pkcs11:token=device?module-path=/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so&pin-source=file:/dev/null",
          CERT_RETRIEVER_PASSWORD: "unused",
        },
      },
    );
    expect(enroll.code, enroll.stderr).toBe(30);
    expect(enroll.stderr).toMatch(/self-contained executable cannot carry pkcs11js.*Debian package/);
  });

  it("arm64: starts under qemu-aarch64 (--version, --help)", async () => {
    const arm64 = join(work, "arm64", "cert-retriever-linux-arm64");
    const env = { QEMU_LD_PREFIX: ARM64_LIBS };
    const [v, help] = await Promise.all([
      run(["qemu-aarch64", arm64, "--version"], { env }),
      run(["qemu-aarch64", arm64, "--help"], { env }),
    ]);
    expect([v.code, v.stdout, v.stderr]).toEqual([0, `${version}\n`, ""]);
    expect(help.stdout).toMatch(/^Usage: cert-retriever \[options\] \[command\]/);
  }, 30_000);
});
