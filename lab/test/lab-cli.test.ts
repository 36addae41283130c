import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { describe, expect, it } from "vitest";
import { commandLine, runCli, SECRETS } from "../../test/helpers/cli.js";
import { tempDir } from "../../test/helpers/lab.js";

/** `cert-retriever-lab serve ARGS` as a process in `cwd`: its URL once it listens, what it said on stderr, and a stop. */
async function serve(cwd: string, args: string[] = [], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, commandLine(["lab", "serve", "--listen", "127.0.0.1:0", ...args]), {
    cwd,
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`lab did not start: ${stderr}`)), 20_000);
    createInterface({ input: child.stdout }).once("line", (line) => {
      clearTimeout(timer);
      resolve(line);
    });
    child.once("close", () => reject(new Error(`lab ended before it listened: ${stderr}`)));
  });
  return {
    url,
    stderr: () => stderr,
    stop: async () => {
      child.kill("SIGTERM");
      return closed;
    },
  };
}

/** Whether the lab at `url` takes `password` for its user admin. */
async function logsIn(url: string, password: string): Promise<boolean> {
  const res = await fetch(`${url}/auth`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: "admin", passwd: password }),
  });
  return res.status === 200;
}

describe("the lab's command line: its directory, its devices, its password", () => {
  it("without --dir the lab lives in ./lab-state, as --help says; device add, reset, list and server-cert find it there", async () => {
    const help = await runCli(["lab", "serve", "--help"]);
    const flat = (text: string) => text.replace(/\s+/g, " ");
    expect(flat(help.stdout)).toContain(
      '--dir <dir> where the lab keeps its CAs and state, made on first start (default: "lab-state")',
    );
    for (const sub of [["device", "add"], ["device", "reset"], ["device", "list"], ["server-cert"]])
      expect(flat((await runCli(["lab", ...sub, "--help"])).stdout), sub.join(" ")).toMatch(
        /--dir <dir> the lab's directory.*\(default: "lab-state"\)/,
      );
    const cwd = await tempDir();
    // Before the lab ever started there: one sentence saying how to start it.
    const early = await runCli(["lab", "device", "add", "f60c28"], { cwd });
    expect(early.code).toBe(2);
    expect(early.stderr).toMatch(/no lab in lab-state: start it once with 'cert-retriever-lab serve --dir lab-state'/);

    SECRETS.add("lab-cli-password-1");
    const lab = await serve(cwd, [], { CERT_RETRIEVER_LAB_PASSWORD: "lab-cli-password-1" });
    try {
      expect(existsSync(join(cwd, "lab-state", "state.json"))).toBe(true);
      expect(lab.stderr()).toMatch(/lab: CA CN=IOTmidCA, O=EJBCA IOT, C=SE in lab-state;/);
      // Several devices at once; the list on stdout, sorted.
      const added = await runCli(["lab", "device", "add", "f60c28", "a1b2c3", "b0b0b0"], { cwd });
      expect(added.code, added.stderr).toBe(0);
      expect(added.stderr.match(/^lab: device '\w+' registered \(NEW\)$/gm)).toHaveLength(3);
      const enrolled = await runCli(
        [
          "enroll",
          "--platform",
          lab.url,
          "--device-id",
          "a1b2c3",
          "--username",
          "admin",
          "--password-stdin",
          "--out",
          join(cwd, "certs"),
        ],
        { input: "lab-cli-password-1\n" },
      );
      expect(enrolled.code, enrolled.stderr).toBe(0);
      const listed = await runCli(["lab", "device", "list"], { cwd });
      expect(listed.code, listed.stderr).toBe(0);
      expect(listed.stdout).toBe(
        [
          "a1b2c3  GENERATED  issued 1  bound 0",
          "b0b0b0  NEW        issued 0  bound 0",
          "f60c28  NEW        issued 0  bound 0",
          "",
        ].join("\n"),
      );
      // A reset naming a device the lab does not know changes nothing, and says which.
      const refused = await runCli(["lab", "device", "reset", "a1b2c3", "ghost1", "ghost2"], { cwd });
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/devices 'ghost1', 'ghost2' are not registered in the lab at lab-state/);
      expect((await runCli(["lab", "device", "list"], { cwd })).stdout).toMatch(/^a1b2c3 +GENERATED/m);
      expect((await runCli(["lab", "device", "reset", "a1b2c3"], { cwd })).code).toBe(0);
      expect((await runCli(["lab", "device", "list"], { cwd })).stdout).toMatch(/^a1b2c3 +NEW +issued 1/m);
      const cert = await runCli(["lab", "server-cert", "--out", "broker", "--dns", "localhost"], { cwd });
      expect(cert.code, cert.stderr).toBe(0);
      expect(existsSync(join(cwd, "broker", "server.crt"))).toBe(true);
    } finally {
      await lab.stop();
    }
  });

  it("an empty lab lists no device and says how to add one", async () => {
    const cwd = await tempDir();
    const lab = await serve(cwd);
    try {
      const password = /password (\S+) \(shown once/.exec(lab.stderr())?.[1];
      SECRETS.add(password!);
      const listed = await runCli(["lab", "device", "list", "--dir", "lab-state"], { cwd });
      expect([listed.code, listed.stdout]).toEqual([0, ""]);
      expect(listed.stderr).toMatch(/lab: no devices in lab-state \(add one with 'cert-retriever-lab device add ID'\)/);
    } finally {
      await lab.stop();
    }
  });

  it("each start says what became of the admin password: made, replaced by CERT_RETRIEVER_LAB_PASSWORD, or kept", async () => {
    const cwd = await tempDir();
    const dir = join(cwd, "here");
    for (const p of ["lab-cli-first-pw", "lab-cli-second-pw"]) SECRETS.add(p);
    const first = await serve(cwd, ["--dir", dir], { CERT_RETRIEVER_LAB_PASSWORD: "lab-cli-first-pw" });
    expect(first.stderr()).toMatch(/^lab: created user 'admin' with the password in CERT_RETRIEVER_LAB_PASSWORD$/m);
    expect(await first.stop()).toBe(0);

    const second = await serve(cwd, ["--dir", dir], { CERT_RETRIEVER_LAB_PASSWORD: "lab-cli-second-pw" });
    expect(second.stderr()).toContain(
      `lab: user 'admin' now has the password in CERT_RETRIEVER_LAB_PASSWORD (the one ${dir} held before is replaced; start without the variable to keep a password)`,
    );
    expect([await logsIn(second.url, "lab-cli-second-pw"), await logsIn(second.url, "lab-cli-first-pw")]).toEqual([
      true,
      false,
    ]);
    await second.stop();

    const third = await serve(cwd, ["--dir", dir]);
    expect(third.stderr()).toContain(
      `lab: user 'admin' keeps the password ${dir} holds (CERT_RETRIEVER_LAB_PASSWORD on a start replaces it)`,
    );
    expect(third.stderr()).not.toMatch(/shown once/);
    expect(await logsIn(third.url, "lab-cli-second-pw")).toBe(true);
    await third.stop();
  });
});
