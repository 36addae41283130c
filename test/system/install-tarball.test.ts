import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { makeSoftToken, type TestToken } from "../helpers/softhsm.js";
import { haveTool } from "../helpers/tools.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/**
 * npm as a user runs it: this Node first on the PATH, none of the `npm_*` variables of an `npm test`
 * around the suite (they would point npm at this repository), npm's cache where `npm ci` filled it.
 * node-gyp gets this Node's own headers where its installation has them, so that building pkcs11js
 * needs no download (Debian's Node finds /usr/include/node by itself).
 */
function npmEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && (!/^npm_/i.test(k) || /^npm_config_cache$/i.test(k))) env[k] = v;
  env.PATH = `${dirname(process.execPath)}:${process.env.PATH ?? ""}`;
  const prefix = dirname(dirname(process.execPath));
  if (existsSync(join(prefix, "include", "node", "common.gypi"))) env.npm_config_nodedir = prefix;
  return env;
}

/** `npm ARGS` in `cwd`: exit code and output. */
function npm(args: string[], cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn("npm", args, { cwd, env: npmEnv(), stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
}

const ready = haveTool("softhsm2-util") && haveTool("g++") && haveTool("make") && haveTool("python3");

describe.skipIf(!ready)("the packed tarball, installed the documented way into an empty prefix", () => {
  let lab: TestLab;
  let token: TestToken;
  let work: string;
  let tarball: string;
  beforeAll(async () => {
    [lab, token, work] = await Promise.all([
      startTestLab({ api: "x509", autoRegister: true }),
      makeSoftToken("device"),
      tempDir("cr-install-"),
    ]);
    // The tarball of the build `npm ci` made: --ignore-scripts skips `prepack`, which would build
    // dist/ again under the other tests; what is packed is what `npm pack` packs after its build.
    const pack = await npm(["pack", "--ignore-scripts", "--json", "--pack-destination", work], ROOT);
    expect(pack.code, pack.stderr).toBe(0);
    const [packed] = JSON.parse(pack.stdout) as { filename: string; files: { path: string }[] }[];
    // Every dependency pinned by version and integrity: installed as tested, and from npm's cache alone.
    expect(packed!.files.map((f) => f.path)).toContain("npm-shrinkwrap.json");
    tarball = join(work, packed!.filename);
  });
  afterAll(async () => Promise.all([lab?.stop(), token?.stop()]));

  /** `cert-retriever enroll` of the installed command at `prefix`, with a key made in the SoftHSM2 token. */
  const enrollWithToken = async (prefix: string, id: string) =>
    runCli(
      [
        "enroll",
        "--platform",
        lab.url,
        "--device-id",
        id,
        "--username",
        "admin",
        "--password-stdin",
        "--out",
        join(prefix, "certs"),
        "--key",
        `pkcs11:token=${token.label}?module-path=${token.module}&pin-source=file:${token.pinFile}`,
      ],
      { bin: join(prefix, "bin", "cert-retriever"), env: token.env, input: `${lab.password}\n`, timeoutMs: 20_000 },
    );

  it("npm install -g --allow-scripts=pkcs11js: offline, without a warning, pkcs11js built; the installed command enrolls with a key in a SoftHSM2 token, and the old --ignore-scripts install is told at use what to do", async () => {
    const prefix = join(work, "prefix");
    const skipped = join(work, "skipped");
    const install = (at: string, how: string) =>
      npm(["install", "-g", how, "--prefix", at, "--offline", "--no-audit", "--no-fund", tarball], work);
    // The documented command, and the one the README gave before, side by side.
    const [documented, ignored] = await Promise.all([
      install(prefix, "--allow-scripts=pkcs11js"),
      install(skipped, "--ignore-scripts"),
    ]);
    expect(documented.code, documented.stderr).toBe(0);
    // No install script left for the user to approve, and none skipped.
    expect(documented.stderr).not.toMatch(/install-scripts|not yet covered|skipped/i);
    const installed = join(prefix, "lib", "node_modules", "cert-retriever");
    expect(
      existsSync(join(installed, "node_modules", "pkcs11js", "build", "Release", "pkcs11.node")),
      `pkcs11js was not built: ${documented.stderr}`,
    ).toBe(true);
    // The installed package has no test dependency, and no lab.
    expect(existsSync(join(installed, "node_modules", "vitest"))).toBe(false);
    expect(existsSync(join(installed, "node_modules", "cert-retriever-lab"))).toBe(false);

    const run = await enrollWithToken(prefix, "f60c28");
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/generate-key: ec-p256 key generated in token 'device'/);
    expect((await readFile(join(prefix, "certs", "f60c28.key.uri"), "utf8")).trim()).toMatch(
      /^pkcs11:token=device;serial=[0-9a-f]+;object=f60c28;id=(%[0-9a-f]{2}){16};type=private\?module-path=/,
    );
    expect(existsSync(join(prefix, "certs", "f60c28.key"))).toBe(false);

    // --ignore-scripts leaves pkcs11js unbuilt: the token key stops at once, saying why and what to do.
    expect(ignored.code, ignored.stderr).toBe(0);
    const broken = await enrollWithToken(skipped, "f60c29");
    expect(broken.code, broken.stderr).toBe(30);
    expect(broken.stderr).toMatch(
      /^cert-retriever: token failed: this installation has no PKCS#11 support \(node-webcrypto-p11 and pkcs11js\): Cannot find module '\.\/build\/Release\/pkcs11\.node'/m,
    );
    expect(broken.stderr).toMatch(
      /^ {2}hint: pkcs11js is installed but was never built \(npm ran without its install script, e\.g\. with --ignore-scripts\): install the package again with g\+\+, make and python3 present \(sudo npm install -g --allow-scripts=pkcs11js \.\/cert-retriever-<version>\.tgz\)$/m,
    );
    expect(broken.stderr).not.toMatch(/authenticate/); // the token is opened before the platform is asked anything
  });
});
