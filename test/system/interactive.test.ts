import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, runCli } from "../helpers/cli.js";
import { listFiles } from "../helpers/enroll.js";
import { startHoldingProxy } from "../helpers/hold-proxy.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { makeSoftToken } from "../helpers/softhsm.js";
import { Terminal } from "../helpers/terminal.js";
import { haveTool, openssl } from "../helpers/tools.js";

const hasTmux = haveTool("tmux");

describe.skipIf(!hasTmux)("a technician at a terminal", () => {
  let lab: TestLab;
  beforeAll(async () => {
    lab = await startTestLab({ autoRegister: true });
  });
  afterAll(async () => lab.stop());

  /** A script that runs the CLI in `dir` with a clean environment (plus `env`), then prints its exit code. */
  async function script(dir: string, args: string, env: Record<string, string> = {}): Promise<string> {
    const path = join(dir, "run.sh");
    const more = Object.entries(env)
      .map(([k, v]) => `${k}='${v}' `)
      .join("");
    await writeFile(
      path,
      `cd '${dir}' && env -i PATH='${process.env.PATH}' HOME='${dir}' TERM=xterm-256color ${more}'${process.execPath}' '${BIN}' ${args}; echo "EXIT=$?"; sleep 60\n`,
      { mode: 0o700 },
    );
    return path;
  }

  /** The user's password in a file of `dir`, for a run that prompts for nothing else. */
  async function passwordFile(dir: string): Promise<string> {
    const path = join(dir, "password");
    await writeFile(path, `${lab.password}\n`, { mode: 0o600 });
    return path;
  }

  it("is asked for what is missing, the password masked, sees a tick per step, and gets valid files", async () => {
    const dir = await tempDir();
    const term = new Terminal(await script(dir, "enroll"));
    try {
      await term.waitFor(/Platform URL/);
      term.type(lab.url);
      term.send("Enter");
      await term.waitFor(/Device id/);
      term.type("bench-7");
      term.send("Enter");
      const user = await term.waitFor(/Platform user.*\(admin\)/);
      expect(user).toMatch(/\(admin\)/); // the default is shown
      term.send("Enter");
      await term.waitFor(/Password for admin/);
      term.type(lab.password);
      // The terminal echoes keystrokes as they arrive: wait until every one shows as a mask.
      const typed = await term.waitFor(new RegExp(`Password for admin:? \\*{${lab.password.length}}`));
      expect(typed).not.toContain(lab.password);
      term.send("Enter");
      const done = await term.waitFor(/EXIT=\d+/);
      expect(done).toMatch(/EXIT=0/);
      expect(done).toMatch(/✔ \[1\/8\] authenticate/);
      expect(done).toMatch(/✔ \[8\/8\] store/);
      expect(done).not.toContain(lab.password);
      expect(await listFiles(join(dir, "certs"))).toEqual([
        "IOTmidCA.crt",
        "bench-7.crt",
        "bench-7.key",
        "bench-7.settings.json",
      ]);
      expect(
        openssl("verify", "-CAfile", join(dir, "certs", "IOTmidCA.crt"), join(dir, "certs", "bench-7.crt")),
      ).toMatch(/: OK/);
    } finally {
      term.close();
    }
  });

  it("Ctrl-C at the password prompt stops with exit 130 and leaves nothing behind", async () => {
    const dir = await tempDir();
    const term = new Terminal(await script(dir, `enroll --platform ${lab.url} --device-id ctrl-c --username admin`));
    try {
      await term.waitFor(/Password for admin/);
      term.type("half-typed");
      term.send("C-c");
      const done = await term.waitFor(/EXIT=\d+/);
      expect(done).toMatch(/interrupted at the prompt; nothing was written/);
      expect(done).toMatch(/EXIT=130/);
      expect(existsSync(join(dir, "certs"))).toBe(false);
    } finally {
      term.close();
    }
  });

  it("a mistyped password is asked for again, up to three times, without retyping URL, device id or user", async () => {
    const dir = await tempDir();
    const term = new Terminal(await script(dir, `enroll --platform ${lab.url} --device-id retry-1`));
    try {
      await term.waitFor(/Platform user/);
      term.send("Enter");
      await term.waitFor(/Password for admin/);
      term.type("typo-password");
      term.send("Enter");
      const again = await term.waitFor(/try again \(2 of 3\)[\s\S]*Password for admin/);
      expect(again).toMatch(/the password for user 'admin' was refused/);
      expect(again.match(/Platform URL|Device id/g)).toBeNull();
      term.type(lab.password);
      term.send("Enter");
      const done = await term.waitFor(/EXIT=\d+/);
      expect(done).toMatch(/EXIT=0/);
      expect(done.match(/Platform user/g)).toHaveLength(1);
      expect(await listFiles(join(dir, "certs"))).toEqual([
        "IOTmidCA.crt",
        "retry-1.crt",
        "retry-1.key",
        "retry-1.settings.json",
      ]);
    } finally {
      term.close();
    }
  });

  it("three refused passwords end the run: exit 10, nothing written", async () => {
    const dir = await tempDir();
    const term = new Terminal(await script(dir, `enroll --platform ${lab.url} --device-id retry-3 --username admin`));
    try {
      for (let i = 1; i <= 3; i++) {
        await term.waitFor(
          new RegExp(i === 1 ? "Password for admin" : `try again \\(${i} of 3\\)[\\s\\S]*Password for admin`),
        );
        term.type(`wrong-${i}`);
        term.send("Enter");
      }
      const done = await term.waitFor(/EXIT=\d+/);
      expect(done).toMatch(/EXIT=10/);
      expect(done).not.toMatch(/4 of 3/);
      expect(existsSync(join(dir, "certs"))).toBe(false);
    } finally {
      term.close();
    }
  });

  it("with valid credentials nothing is asked: the user is asked for only when the authenticate step runs", async () => {
    const dir = await tempDir();
    const first = await runCli(
      [
        "enroll",
        "--platform",
        lab.url,
        "--device-id",
        "asked-once",
        "--username",
        "admin",
        "--password-stdin",
        "--out",
        join(dir, "certs"),
      ],
      { input: `${lab.password}\n` },
    );
    expect(first.code, first.stderr).toBe(0);
    const term = new Terminal(await script(dir, `enroll --platform ${lab.url} --device-id asked-once`));
    try {
      const done = await term.waitFor(/EXIT=\d+/);
      expect(done).toMatch(/nothing to do/);
      expect(done).toMatch(/EXIT=0/);
      expect(done).not.toMatch(/Platform user|Password/);
    } finally {
      term.close();
    }
  });

  it("a platform that takes its time: the step says what it waits for and for how long, on one line, gone when it ends", async () => {
    const dir = await tempDir();
    const proxy = await startHoldingProxy(lab.url, (req) => req.method === "POST" && !req.url?.startsWith("/auth"));
    const term = new Terminal(
      await script(
        dir,
        `enroll --platform ${proxy.url} --device-id slow-t --username admin --password-file ${await passwordFile(dir)}`,
      ),
    );
    try {
      await proxy.held;
      const waiting = await term.waitFor(
        /[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] \[5\/8\] submit-csr: waiting for the platform to answer POST \S+ \([1-9]\d* s\)/,
      );
      expect(waiting).toMatch(/✔ \[4\/8\] build-csr/);
      // One line, replaced: the count moves on in place.
      const later = await term.waitFor(/submit-csr: waiting for the platform to answer POST \S+ \(([2-9]|\d\d+) s\)/);
      expect(later.match(/waiting for the platform/g)).toHaveLength(1);
      proxy.release();
      const done = await term.waitFor(/EXIT=\d+/);
      expect(done).toMatch(/EXIT=0/);
      expect(done).toMatch(/✔ \[5\/8\] submit-csr: certificate \S+ issued/);
      expect(done).not.toMatch(/waiting for|[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏]/);
    } finally {
      term.close();
      await proxy.close();
    }
  });

  it("Enter at the URL prompt and a bad device id are explained and asked for again; three bad URLs are exit 2", async () => {
    const dir = await tempDir();
    const term = new Terminal(await script(dir, `enroll --username admin --password-file ${await passwordFile(dir)}`));
    try {
      await term.waitFor(/Platform URL/);
      term.send("Enter");
      await term.waitFor(/the platform URL is required[\s\S]*try again \(2 of 3\)[\s\S]*Platform URL/);
      term.type(lab.url);
      term.send("Enter");
      await term.waitFor(/Device id/);
      term.type("../x");
      term.send("Enter");
      const again = await term.waitFor(/is not usable[\s\S]*try again \(2 of 3\)[\s\S]*Device id/);
      expect(again).not.toMatch(/--device-id/);
      term.type("asked-again");
      term.send("Enter");
      const done = await term.waitFor(/EXIT=\d+/);
      expect(done).toMatch(/EXIT=0/);
      expect(await listFiles(join(dir, "certs"))).toContain("asked-again.crt");
    } finally {
      term.close();
    }
    const dir2 = await tempDir();
    const term2 = new Terminal(await script(dir2, "enroll"));
    try {
      for (let i = 1; i <= 3; i++) {
        await term2.waitFor(i === 1 ? /Platform URL/ : new RegExp(`try again \\(${i} of 3\\)[\\s\\S]*Platform URL`));
        term2.send("Enter");
      }
      const done = await term2.waitFor(/EXIT=\d+/);
      expect(done).toMatch(/cert-retriever: the platform URL is required/);
      expect(done).toMatch(/EXIT=2/);
      expect(done).not.toMatch(/4 of 3|Device id/);
    } finally {
      term2.close();
    }
  });

  it.skipIf(!haveTool("softhsm2-util"))("a PIN the token refuses is asked for again", async () => {
    const token = await makeSoftToken();
    const dir = await tempDir();
    const term = new Terminal(
      await script(
        dir,
        `enroll --platform ${lab.url} --device-id pin-again --username admin --password-file ${await passwordFile(dir)} --key 'pkcs11:token=${token.label}' --pkcs11-module ${token.module}`,
        token.env,
      ),
    );
    try {
      await term.waitFor(/PIN for token 'device'/);
      term.type("000000");
      term.send("Enter");
      const again = await term.waitFor(/try again \(2 of 3\)[\s\S]*PIN for token 'device'/);
      expect(again).toMatch(/token 'device' refused the PIN from the PIN typed: CKR_PIN_INCORRECT/);
      term.type(token.pin);
      term.send("Enter");
      const done = await term.waitFor(/EXIT=\d+/);
      expect(done).toMatch(/EXIT=0/);
      expect(done).not.toContain(token.pin);
    } finally {
      term.close();
      await token.stop();
    }
  });

  it("--non-interactive never prompts, even on a terminal", async () => {
    const dir = await tempDir();
    const term = new Terminal(await script(dir, `enroll --non-interactive --device-id x`));
    try {
      const done = await term.waitFor(/EXIT=\d+/);
      expect(done).toMatch(/the platform URL is required/);
      expect(done).toMatch(/EXIT=2/);
    } finally {
      term.close();
    }
  });
});

describe("without a terminal", () => {
  it("--non-interactive with valid credentials and no --username: nothing to do, exit 0 (no login needed)", async () => {
    const lab = await startTestLab({ autoRegister: true });
    try {
      const out = join(await tempDir(), "certs");
      const first = await runCli(
        [
          "enroll",
          "--platform",
          lab.url,
          "--device-id",
          "no-user",
          "--username",
          "admin",
          "--password-stdin",
          "--out",
          out,
        ],
        { input: `${lab.password}\n` },
      );
      expect(first.code, first.stderr).toBe(0);
      const again = await runCli([
        "enroll",
        "--platform",
        lab.url,
        "--device-id",
        "no-user",
        "--out",
        out,
        "--non-interactive",
      ]);
      expect(again.stderr).toMatch(/nothing to do/);
      expect(again.code, again.stderr).toBe(0);
      const needed = await runCli([
        "enroll",
        "--platform",
        lab.url,
        "--device-id",
        "no-user-2",
        "--out",
        out,
        "--non-interactive",
      ]);
      expect(needed.code).toBe(2);
      expect(needed.stderr).toMatch(/a platform user is required/);
    } finally {
      await lab.stop();
    }
  });
});
