// The command as a process: the contract a script, a unit file and a terminal rely on (exit codes,
// what goes to stdout and to stderr, signals, two processes at once). One test per command and
// per promise; what the commands decide is proven in-process, in test/unit.
import { spawn } from "node:child_process";
import { copyFile, readFile, stat } from "node:fs/promises";
import { type AddressInfo, createServer, type Socket } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ExitCode } from "../../src/cli/exit-codes.js";
import { BIN, runCli } from "../helpers/cli.js";
import { enrollCli, listFiles } from "../helpers/enroll.js";
import { closedPort, startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { openssl } from "../helpers/tools.js";

let lab: TestLab;
beforeAll(async () => {
  lab = await startTestLab();
});
afterAll(async () => lab.stop());

describe("the command a script runs", () => {
  it("--version and --help exit 0 on stdout; no command, or an unknown one, is a usage error (exit 2) on stderr", async () => {
    const pkg = JSON.parse(await readFile(join(import.meta.dirname, "..", "..", "package.json"), "utf8")) as {
      version: string;
    };
    const version = await runCli(["--version"]);
    expect([version.code, version.stdout.trim(), version.stderr]).toEqual([0, pkg.version, ""]);
    const help = await runCli(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: cert-retriever/m);
    for (const args of [[], ["frobnicate"]]) {
      const run = await runCli(args);
      expect(run.code, args.join(" ")).toBe(ExitCode.USAGE);
      expect(run.stdout).toBe("");
      expect(run.stderr).toMatch(/cert-retriever/);
    }
  });

  it("enroll: exit 0, the result as JSON on stdout and the progress on stderr; again: exit 0 and nothing asked of the platform", async () => {
    await lab.addDevice("ct-1");
    const out = join(await tempDir(), "certs");
    const run = await enrollCli(lab.url, lab, "ct-1", out, ["--json"]);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ deviceId: "ct-1" });
    expect(run.stderr).toMatch(/\[1\/\d\] authenticate/);
    expect(await listFiles(out)).toEqual(["IOTmidCA.crt", "ct-1.crt", "ct-1.key", "ct-1.settings.json"]);
    expect((await stat(join(out, "ct-1.key"))).mode & 0o777).toBe(0o600);
    expect(openssl("verify", "-CAfile", join(out, "IOTmidCA.crt"), join(out, "ct-1.crt")).trim()).toMatch(/: OK$/);
    const again = await enrollCli(lab.url, lab, "ct-1", out);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).not.toMatch(/\[1\/\d\] authenticate/);
  });

  it("check: exit 0 when enrollment is needed, 1 when not, 255 on a usage error (ExecCondition='s contract)", async () => {
    await lab.addDevice("ct-2");
    const out = join(await tempDir(), "certs");
    expect((await runCli(["check", "--device-id", "ct-2", "--out", out])).code).toBe(0);
    expect((await enrollCli(lab.url, lab, "ct-2", out)).code).toBe(0);
    expect((await runCli(["check", "--device-id", "ct-2", "--out", out])).code).toBe(1);
    const bad = await runCli(["check", "--device-id", "ct-2", "--out", out, "--renew-before", "soon"]);
    expect([bad.code, bad.stdout]).toEqual([255, ""]);
  });

  it("status: the description on stdout and nothing on stderr, exit 0; no credentials: exit 16, stdout empty", async () => {
    await lab.addDevice("ct-5");
    const out = join(await tempDir(), "certs");
    const none = await runCli(["status", "--device-id", "ct-5", "--out", out]);
    expect([none.code, none.stdout]).toEqual([ExitCode.NOT_ENROLLED, ""]);
    expect((await enrollCli(lab.url, lab, "ct-5", out)).code).toBe(0);
    const run = await runCli(["status", "--device-id", "ct-5", "--out", out]);
    expect([run.code, run.stderr]).toEqual([0, ""]);
    expect(run.stdout).toMatch(/^Device: +ct-5$/m);
    expect(run.stdout).toMatch(/^Key: +file .*ct-5\.key \(mode 0600\)$/m);
  });

  it("login: a 0600 token file and exit 0; a wrong password is exit 10 with nothing written", async () => {
    const dir = await tempDir();
    const token = join(dir, "token");
    const args = ["login", "--platform", lab.url, "--username", "admin", "--password-stdin", "--token-file", token];
    const ok = await runCli(args, { input: `${lab.password}\n` });
    expect(ok.code, ok.stderr).toBe(0);
    expect((await stat(token)).mode & 0o777).toBe(0o600);
    const wrong = await runCli([...args.slice(0, -1), join(dir, "other")], { input: "not-the-password\n" });
    expect(wrong.code).toBe(ExitCode.AUTH);
    expect(await listFiles(dir)).toEqual(["token"]);
  });

  it("verify: a broker that is not there is exit 20, and stdout stays empty without --json", async () => {
    await lab.addDevice("ct-4");
    const out = join(await tempDir(), "certs");
    expect((await enrollCli(lab.url, lab, "ct-4", out)).code).toBe(0);
    const broker = `mqtts://127.0.0.1:${await closedPort()}`;
    const run = await runCli(["verify", "--broker", broker, "--device-id", "ct-4", "--out", out]);
    expect([run.code, run.stdout]).toEqual([ExitCode.BROKER_UNREACHABLE, ""]);
    expect(run.stderr).toMatch(/^cert-retriever: verify failed: /m);
  });

  it("register: a certificate chain that is not there is exit 3 (configuration) before any request", async () => {
    const dir = await tempDir();
    const args = ["register", "--platform", lab.url, "--device-id", "c7c7c5", "--cert-chain", join(dir, "missing.pem")];
    const run = await runCli([...args, "--username", "admin", "--password-stdin"], { input: `${lab.password}\n` });
    expect(run.code, run.stderr).toBe(ExitCode.CONFIG);
  });

  it("completion bash: a script on stdout, exit 0", async () => {
    const run = await runCli(["completion", "bash"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/complete .*cert-retriever/);
  });

  it("SIGTERM while a request is under way: exit 143, nothing written", async () => {
    // A platform that takes the connection and never answers: its connection is the event to signal on.
    const held: Socket[] = [];
    const silent = createServer((socket) => held.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const connected = new Promise<void>((resolve) => silent.once("connection", () => resolve()));
    const out = join(await tempDir(), "certs");
    const platform = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const child = spawn(
      process.execPath,
      [
        BIN,
        "enroll",
        "--platform",
        platform,
        "--device-id",
        "ct-3",
        "--username",
        "admin",
        "--password-stdin",
        "--out",
        out,
      ],
      {
        stdio: ["pipe", "ignore", "pipe"],
        env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", NO_COLOR: "1" },
      },
    );
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.stdin.end(`${lab.password}\n`);
    const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
    try {
      await connected;
      child.kill("SIGTERM");
      expect(await closed, stderr).toBe(ExitCode.TERMINATED);
      expect(stderr).toMatch(/nothing was written/);
      expect(await listFiles(out)).toEqual([]);
    } finally {
      for (const socket of held) socket.destroy();
      silent.close();
    }
  });

  it("two processes at once for one device: one enrolls, the other stops at the lock (exit 75) or finds the credentials (exit 0)", async () => {
    await lab.addDevice("race");
    const out = join(await tempDir(), "certs");
    const runs = await Promise.all([enrollCli(lab.url, lab, "race", out), enrollCli(lab.url, lab, "race", out)]);
    const codes = runs.map((r) => r.code).sort();
    expect(codes[0]).toBe(0);
    expect([0, 75]).toContain(codes[1]);
    expect(await listFiles(out)).toEqual(["IOTmidCA.crt", "race.crt", "race.key", "race.settings.json"]);
    expect(openssl("verify", "-CAfile", join(out, "IOTmidCA.crt"), join(out, "race.crt"))).toMatch(/: OK/);
  });

  it("the single file without the keychain addon: says how to add it (exit 15), and names no Secret Service", async () => {
    const dir = await tempDir();
    // Alone in a directory, as a user who copied only the single file: no node_modules to find the addon in.
    await copyFile(
      join(import.meta.dirname, "..", "..", "dist", "cert-retriever.mjs"),
      join(dir, "cert-retriever.mjs"),
    );
    const run = await runCli(["check", "--device-id", "k1", "--store", "keychain", "--out", join(dir, "o")], {
      bin: join(dir, "cert-retriever.mjs"),
    });
    expect(run.code, run.stderr).toBe(255);
    expect(run.stderr).toMatch(/this installation has no keychain addon \(@napi-rs\/keyring\)/);
    expect(run.stderr).toMatch(/^ {2}hint: .*npm install @napi-rs\/keyring/m);
    expect(run.stderr).not.toMatch(/Secret Service|Cannot find package/);
  });
});
