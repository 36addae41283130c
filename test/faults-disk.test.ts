import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { cp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN } from "./helpers/cli.js";
import { enrollCli, listFiles, snapshot } from "./helpers/enroll.js";
import { makeFixture, type Fixture } from "./helpers/fault-matrix.js";
import { startTestLab, tempDir, type TestLab } from "./helpers/lab.js";
import { openssl } from "./helpers/tools.js";
import { softwareCrypto } from "../src/crypto/provider.js";
import { setDevice, startLab } from "../src/lab/server.js";

/** Mounting needs root; CI runs as root. */
function canMount(): boolean {
  const root = process.getuid?.() === 0;
  if (!root) {
    if (process.env.CI === "true") throw new Error("the disk-fault tests need root to mount a tmpfs, and CI runs as root");
    console.warn("\n!!! SKIPPING disk-fault tests: they need root to mount a tmpfs. CI runs them. !!!\n");
  }
  return root;
}
const mountable = canMount();

let fx: Fixture;
beforeAll(async () => {
  fx = await makeFixture();
});
afterAll(async () => fx.lab.stop());

/** A tmpfs of `size` at a new directory, holding a copy of the victim's credentials in certs/. */
async function tmpfsWithCredentials(size: string): Promise<{ mnt: string; out: string; unmount(): void }> {
  const mnt = await tempDir("cr-mnt-");
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size},mode=0700`, "tmpfs", mnt]);
  const out = join(mnt, "certs");
  await cp(fx.base, out, { recursive: true });
  return { mnt, out, unmount: () => execFileSync("umount", ["-l", mnt]) };
}

describe.skipIf(!mountable)("disk faults: the previous credentials survive", () => {
  it("a read-only directory: exit 15 naming the cause, nothing changed", async () => {
    const disk = await tmpfsWithCredentials("1m");
    try {
      const before = await snapshot(disk.out);
      execFileSync("mount", ["-o", "remount,ro", disk.mnt]);
      await expectForcedRunFails(disk.out, 15, /read-only file system \(EROFS\)/);
      expect(await snapshot(disk.out)).toEqual(before);
    } finally {
      disk.unmount();
    }
  });

  it("a full disk: exit 15 naming ENOSPC, nothing changed, nothing left behind", async () => {
    const disk = await tmpfsWithCredentials("64k");
    try {
      // Fill every page, then free exactly one: the lock fits, the staged files do not.
      const fillers: string[] = [];
      for (let i = 0; ; i++) {
        const f = join(disk.mnt, `fill-${i}`);
        try {
          await writeFile(f, Buffer.alloc(4096));
          fillers.push(f);
        } catch {
          await rm(f, { force: true });
          break;
        }
      }
      await rm(fillers.pop()!);
      const before = await snapshot(disk.out);
      await expectForcedRunFails(disk.out, 15, /store failed: .*no space left on device.*the previous files are unchanged/i);
      expect(await snapshot(disk.out)).toEqual(before);
    } finally {
      disk.unmount();
    }
  });
});

/** Re-enrolls the victim over `out` with --force and expects the run to fail with `code` and `message`. */
async function expectForcedRunFails(out: string, code: number, message: RegExp): Promise<void> {
  await setDevice(fx.lab.dir, "victim", "reset");
  const lab = await serveFixture();
  try {
    const run = await enrollCli(lab.url, fx.lab, "victim", out, ["--force"]);
    expect(run.stderr).toMatch(message);
    expect(run.code).toBe(code);
  } finally {
    await lab.close();
  }
}

/** Serves the fixture's lab directory without faults. */
function serveFixture() {
  return startLab({ dir: fx.lab.dir, host: "127.0.0.1", port: 0, crypto: softwareCrypto(), certProfile: "cfree", autoRegister: false, adminPassword: fx.lab.password, tokenLifetime: 420 });
}

describe("kill -9 at every step boundary: the next run finds whole credentials, old or new", () => {
  const beforeCommit = ["after-authenticate", "after-fetch-ca", "after-generate-key", "after-build-csr", "after-submit-csr", "after-validate", "store:staged"];
  const afterCommit = ["store:committed", "store:renamed-1", "store:renamed-2", "store:renamed-3", "after-store"];
  for (const point of [...beforeCommit, ...afterCommit]) {
    it(`killed at ${point}: ${beforeCommit.includes(point) ? "the old credentials, untouched" : "the new credentials, completed"}`, async () => {
      await setDevice(fx.lab.dir, "victim", "reset");
      const out = join(await tempDir(), "certs");
      await cp(fx.base, out, { recursive: true });
      const before = await snapshot(out);
      const lab = await serveFixture();
      try {
        const killed = await enrollCli(lab.url, fx.lab, "victim", out, ["--force"], { CERT_RETRIEVER_TEST_FAULT: `kill:${point}` });
        expect(killed.code).toBeNull(); // died by the signal
        const next = await enrollCli(lab.url, fx.lab, "victim", out);
        expect(next.code, next.stderr).toBe(0);
        expect(next.stderr).toMatch(/already has valid credentials/);
      } finally {
        await lab.close();
      }
      expect(await listFiles(out)).toEqual(["IOTmidCA.crt", "victim.crt", "victim.key"]);
      expect(openssl("verify", "-CAfile", join(out, "IOTmidCA.crt"), join(out, "victim.crt"))).toMatch(/: OK/);
      expect(openssl("pkey", "-in", join(out, "victim.key"), "-pubout")).toBe(openssl("x509", "-in", join(out, "victim.crt"), "-noout", "-pubkey"));
      if (beforeCommit.includes(point)) expect(await snapshot(out)).toEqual(before);
      else expect(await snapshot(out)).not.toEqual(before);
    });
  }
});

describe("signals and argv", () => {
  let lab: TestLab;
  beforeAll(async () => {
    lab = await startTestLab();
  });
  afterAll(async () => lab.stop());

  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    it(`${sig} while the platform is slow: exit ${sig === "SIGTERM" ? 143 : 130}, previous credentials intact, lock released`, async () => {
      await setDevice(fx.lab.dir, "victim", "reset");
      const out = join(await tempDir(), "certs");
      await cp(fx.base, out, { recursive: true });
      const before = await snapshot(out);
      const slow = await startLab({ dir: fx.lab.dir, host: "127.0.0.1", port: 0, crypto: softwareCrypto(), certProfile: "cfree", autoRegister: false, adminPassword: fx.lab.password, tokenLifetime: 420, faults: [{ route: "sign", kind: "hang" }] });
      try {
        const child = spawn(process.execPath, [BIN, "enroll", "--platform", slow.url, "--device-id", "victim", "--username", "admin", "--password-stdin", "--out", out, "--force"], { stdio: ["pipe", "pipe", "pipe"] });
        child.stdin.end(fx.lab.password);
        let stderr = "";
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        await waitFor(() => stderr.includes("[4/8] build-csr"), 20_000);
        // While it runs: the password is nowhere in its argv or environment.
        const cmdline = readFileSync(`/proc/${child.pid}/cmdline`, "utf8");
        const environ = readFileSync(`/proc/${child.pid}/environ`, "utf8");
        expect(cmdline).not.toContain(fx.lab.password);
        expect(environ).not.toContain(fx.lab.password);
        child.kill(sig);
        const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
        expect(stderr).toMatch(new RegExp(`interrupted by ${sig}; nothing was written and the previous credentials are unchanged`));
        expect(code).toBe(sig === "SIGTERM" ? 143 : 130);
      } finally {
        await slow.close();
      }
      expect(await snapshot(out)).toEqual(before);
      expect(existsSync(join(out, ".cert-retriever.lock"))).toBe(false);
    });
  }
});

async function waitFor(condition: () => boolean, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > until) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 50));
  }
}


