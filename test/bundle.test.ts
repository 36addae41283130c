import { copyFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli, SECRETS } from "./helpers/cli.js";
import { listFiles } from "./helpers/enroll.js";
import { startTestLab, tempDir, type TestLab } from "./helpers/lab.js";
import { openssl } from "./helpers/tools.js";
import { spawn } from "node:child_process";

const BUNDLE = fileURLToPath(new URL("../dist/cert-retriever.mjs", import.meta.url));

/** Runs the single file copied alone into an empty directory: no node_modules anywhere above it. */
async function runAlone(file: string, args: string[], input = ""): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [file, ...args], { cwd: join(file, ".."), env: { PATH: process.env.PATH ?? "" }, stdio: ["pipe", "pipe", "pipe"] });
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
    const run = await runAlone(file, ["enroll", "--platform", lab.url, "--device-id", "solo", "--username", "admin", "--password-stdin", "--key-type", "ec-p256", "--out", out], lab.password);
    expect(run.code, run.stderr).toBe(0);
    expect(await listFiles(out)).toEqual(["IOTmidCA.crt", "solo.crt", "solo.key"]);
    expect(openssl("verify", "-CAfile", join(out, "IOTmidCA.crt"), join(out, "solo.crt"))).toMatch(/: OK/);
  });

  it("answers like the source build (same help, same usage errors)", async () => {
    const [fromBundle, fromSource] = await Promise.all([runAlone(BUNDLE, ["enroll", "--help"]), runCli(["enroll", "--help"])]);
    expect(fromBundle.stdout).toBe(fromSource.stdout);
    const bad = await runAlone(BUNDLE, ["enroll", "--device-id", "../x", "--platform", lab.url]);
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringMatching(/is not usable/)]);
  });
});
