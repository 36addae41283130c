import { execFileSync } from "node:child_process";
import { cp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { setDevice } from "../../lab/src/server.js";
import { enrollCli, listFiles, snapshot } from "../helpers/enroll.js";
import { type Fixture, makeFixture, serveFixture } from "../helpers/fault-matrix.js";
import { tempDir } from "../helpers/lab.js";
import { haveRoot, openssl } from "../helpers/tools.js";

/** Mounting a tmpfs needs root; CI runs as root. */
const mountable = haveRoot("the disk-fault tests (they mount a tmpfs)");

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

  it("a full disk: refused before any key is made or CSR sent (exit 15, the free space measured), nothing changed; with space freed, the next run enrolls", async () => {
    const disk = await tmpfsWithCredentials("512k");
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
      await expectForcedRunFails(
        disk.out,
        15,
        /store failed: pre-flight: the file system of .* has \d+ KiB free, and storing the credentials needs at least 256 KiB; no key was made and no certificate requested\n {2}hint: free some space/,
      );
      expect(await snapshot(disk.out)).toEqual(before);
      // Nothing was asked of the platform: the end entity is still NEW, and with room again the run enrolls.
      for (const f of fillers) await rm(f);
      const lab = await serveFixture(fx);
      try {
        const rerun = await enrollCli(lab.url, fx.lab, "victim", disk.out, ["--force"]);
        expect(rerun.code, rerun.stderr).toBe(0);
      } finally {
        await lab.close();
      }
    } finally {
      disk.unmount();
    }
  });
});

/** Re-enrolls the victim over `out` with --force and expects the run to fail with `code` and `message`. */
async function expectForcedRunFails(out: string, code: number, message: RegExp): Promise<void> {
  await setDevice(fx.lab.dir, "victim", "reset");
  const lab = await serveFixture(fx);
  try {
    const run = await enrollCli(lab.url, fx.lab, "victim", out, ["--force"]);
    expect(run.stderr).toMatch(message);
    expect(run.code).toBe(code);
  } finally {
    await lab.close();
  }
}

describe("kill -9 at every step boundary: the next run finds whole credentials, old or new", () => {
  const beforeCommit = [
    "after-authenticate",
    "after-fetch-ca",
    "after-generate-key",
    "after-build-csr",
    "after-submit-csr",
    "after-validate",
    "store:staged",
  ];
  const afterCommit = ["store:committed", "store:renamed-1", "store:renamed-2", "store:renamed-3", "after-store"];
  for (const point of [...beforeCommit, ...afterCommit]) {
    it(`killed at ${point}: ${beforeCommit.includes(point) ? "the old credentials, untouched" : "the new credentials, completed"}`, async () => {
      await setDevice(fx.lab.dir, "victim", "reset");
      const out = join(await tempDir(), "certs");
      await cp(fx.base, out, { recursive: true });
      const before = await snapshot(out);
      const lab = await serveFixture(fx);
      try {
        const killed = await enrollCli(lab.url, fx.lab, "victim", out, ["--force"], {}, `kill:${point}`);
        expect(killed.code).toBeNull(); // died by the signal
        const next = await enrollCli(lab.url, fx.lab, "victim", out);
        expect(next.code, next.stderr).toBe(0);
        expect(next.stderr).toMatch(/already has valid credentials/);
      } finally {
        await lab.close();
      }
      expect(await listFiles(out)).toEqual(["IOTmidCA.crt", "victim.crt", "victim.key", "victim.settings.json"]);
      expect(openssl("verify", "-CAfile", join(out, "IOTmidCA.crt"), join(out, "victim.crt"))).toMatch(/: OK/);
      expect(openssl("pkey", "-in", join(out, "victim.key"), "-pubout")).toBe(
        openssl("x509", "-in", join(out, "victim.crt"), "-noout", "-pubkey"),
      );
      if (beforeCommit.includes(point)) expect(await snapshot(out)).toEqual(before);
      else expect(await snapshot(out)).not.toEqual(before);
    });
  }
});
