import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { cp, mkdir, rename, rm } from "node:fs/promises";
import { createServer, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { setDevice } from "../../lab/src/server.js";
import { BIN, runCli } from "../helpers/cli.js";
import { enrollCli, listFiles, snapshot } from "../helpers/enroll.js";
import { type Fixture, makeFixture, serveFixture } from "../helpers/fault-matrix.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { openssl } from "../helpers/tools.js";

let fx: Fixture;
beforeAll(async () => {
  fx = await makeFixture();
});
afterAll(async () => fx.lab.stop());

describe("completing a write that a killed run committed", () => {
  /** The victim's credentials in `<tmp>/<sub>/certs`, and a run killed right after its commit mark. */
  async function killedAfterCommit(
    lab: { url: string },
    sub: string,
  ): Promise<{ parent: string; out: string; before: Record<string, string> }> {
    await setDevice(fx.lab.dir, "victim", "reset");
    const parent = join(await tempDir(), sub);
    const out = join(parent, "certs");
    await cp(fx.base, out, { recursive: true });
    const before = await snapshot(out);
    const killed = await enrollCli(lab.url, fx.lab, "victim", out, ["--force"], {}, "kill:store:committed");
    expect(killed.code).toBeNull();
    return { parent, out, before };
  }

  it("after the directory was moved (mv of its parent): the next run completes it, as the mark names files relative to --out", async () => {
    const lab = await serveFixture(fx);
    try {
      const { parent, before } = await killedAfterCommit(lab, "old-place");
      const moved = join(parent, "..", "new-place");
      await rename(parent, moved);
      const out = join(moved, "certs");
      const next = await enrollCli(lab.url, fx.lab, "victim", out);
      expect(next.stderr).toMatch(/completed a write that an earlier run committed/);
      expect(next.code, next.stderr).toBe(0);
      expect(next.stderr).toMatch(/already has valid credentials/);
      expect(await listFiles(out)).toEqual(["IOTmidCA.crt", "victim.crt", "victim.key", "victim.settings.json"]);
      expect(await snapshot(out)).not.toEqual(before);
      expect(openssl("verify", "-CAfile", join(out, "IOTmidCA.crt"), join(out, "victim.crt"))).toMatch(/: OK/);
    } finally {
      await lab.close();
    }
  });

  it("a file-system error while completing it (the key's name taken by a directory): exit 15, the lock released, the next run completes it", async () => {
    const lab = await serveFixture(fx);
    try {
      const { out } = await killedAfterCommit(lab, "blocked");
      await rm(join(out, "victim.key"));
      await mkdir(join(out, "victim.key", "blocker"), { recursive: true });
      const failed = await enrollCli(lab.url, fx.lab, "victim", out);
      expect(failed.stderr).toMatch(
        /store failed: cannot complete the write an earlier run committed in .*: .*\(EISDIR\)/,
      );
      expect(failed.code).toBe(15);
      expect(failed.stderr).not.toMatch(/unexpected error|this is a bug/);
      expect(existsSync(join(out, ".cert-retriever.lock"))).toBe(false);
      await rm(join(out, "victim.key"), { recursive: true });
      const next = await enrollCli(lab.url, fx.lab, "victim", out);
      expect(next.code, next.stderr).toBe(0);
      expect(next.stderr).toMatch(/completed a write that an earlier run committed/);
      expect(next.stderr).toMatch(/already has valid credentials/);
      expect(await listFiles(out)).toEqual(["IOTmidCA.crt", "victim.crt", "victim.key", "victim.settings.json"]);
      expect(openssl("pkey", "-in", join(out, "victim.key"), "-pubout")).toBe(
        openssl("x509", "-in", join(out, "victim.crt"), "-noout", "-pubkey"),
      );
    } finally {
      await lab.close();
    }
  });
});

describe("signals and argv", () => {
  let lab: TestLab;
  beforeAll(async () => {
    lab = await startTestLab();
  });
  afterAll(async () => lab.stop());

  it("a stdin that stays open with no password: --deadline ends the wait (exit 75), SIGTERM ends it too (143)", async () => {
    const lab = await serveFixture(fx);
    try {
      for (const how of ["deadline", "SIGTERM"] as const) {
        const out = join(await tempDir(), "certs");
        const child = spawn(
          process.execPath,
          [
            BIN,
            "enroll",
            "--platform",
            lab.url,
            "--device-id",
            "victim",
            "--username",
            "admin",
            "--password-stdin",
            "--out",
            out,
            "--force",
            "--deadline",
            how === "deadline" ? "2s" : "60s",
          ],
          { stdio: ["pipe", "pipe", "pipe"] },
        );
        let stderr = "";
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
        const guard = setTimeout(() => child.kill("SIGKILL"), 20_000); // the old code waited here forever
        if (how === "SIGTERM") {
          await waitFor(() => existsSync(join(out, ".cert-retriever.lock")), 20_000); // in the run, at the password
          child.kill("SIGTERM");
        }
        const code = await closed;
        clearTimeout(guard);
        if (how === "deadline") {
          expect(stderr).toMatch(/authenticate failed: the password did not arrive before the deadline/);
          expect(code).toBe(75);
        } else {
          expect(stderr).toMatch(/interrupted by SIGTERM; nothing was written/);
          expect(code).toBe(143);
        }
        expect(existsSync(join(out, ".cert-retriever.lock"))).toBe(false);
      }
    } finally {
      await lab.close();
    }
  });

  it("a FIFO where the certificate should be is refused at once, by check (255) and by enroll (15)", async () => {
    const out = join(await tempDir(), "certs");
    await cp(fx.base, out, { recursive: true });
    await rm(join(out, "victim.crt"));
    execFileSync("mkfifo", [join(out, "victim.crt")]);
    const check = await runCli(["check", "--device-id", "victim", "--out", out], { timeoutMs: 15_000 });
    expect(check.stderr).toMatch(/store failed: .*victim\.crt is not a regular file/);
    expect(check.code).toBe(255);
    const lab = await serveFixture(fx);
    try {
      const run = await enrollCli(lab.url, fx.lab, "victim", out);
      expect(run.stderr).toMatch(/victim\.crt is not a regular file/);
      expect(run.code).toBe(15);
    } finally {
      await lab.close();
    }
  });

  // SIGTERM while the signing request is at the platform; SIGINT while the CA is being fetched.
  for (const [sig, route] of [
    ["SIGTERM", "sign"],
    ["SIGINT", "ca"],
  ] as const) {
    it(`${sig} while the platform is slow (${route}): exit ${sig === "SIGTERM" ? 143 : 130}, previous credentials intact, lock released`, async () => {
      await setDevice(fx.lab.dir, "victim", "reset");
      const out = join(await tempDir(), "certs");
      await cp(fx.base, out, { recursive: true });
      const before = await snapshot(out);
      // A gateway that passes everything to the lab but holds the slow route's request, and says when it has it.
      const lab = await serveFixture(fx);
      let held = false;
      const gateway = createServer((req, res) => {
        if ((route === "sign" && req.url?.startsWith("/sign/")) || (route === "ca" && req.url?.startsWith("/ca/"))) {
          held = true;
          return;
        }
        const up = httpRequest(
          new URL(req.url ?? "/", lab.url),
          { method: req.method, headers: req.headers },
          (upRes) => {
            res.writeHead(upRes.statusCode ?? 500, upRes.headers);
            upRes.pipe(res);
          },
        );
        req.pipe(up);
      });
      await new Promise<void>((resolve) => gateway.listen(0, "127.0.0.1", resolve));
      try {
        const url = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
        const child = spawn(
          process.execPath,
          [
            BIN,
            "enroll",
            "--platform",
            url,
            "--device-id",
            "victim",
            "--username",
            "admin",
            "--password-stdin",
            "--out",
            out,
            "--force",
          ],
          { stdio: ["pipe", "pipe", "pipe"] },
        );
        child.stdin.end(fx.lab.password);
        let stderr = "";
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
        await waitFor(() => held, 20_000).catch(() => {
          throw new Error(`the slow request never arrived: ${stderr}`);
        });
        // While it runs: the password is nowhere in its argv or environment.
        const cmdline = readFileSync(`/proc/${child.pid}/cmdline`, "utf8");
        const environ = readFileSync(`/proc/${child.pid}/environ`, "utf8");
        expect(cmdline).not.toContain(fx.lab.password);
        expect(environ).not.toContain(fx.lab.password);
        child.kill(sig);
        const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
        if (route === "sign") {
          // The request is at the platform: it may have issued, which the operator needs to know.
          expect(stderr).toMatch(
            /interrupted by SIGTERM during submit-csr; nothing was written here, but the request may have reached the platform, which may have issued a certificate/,
          );
          expect(stderr).toMatch(
            /hint: run again later; if the platform then says the certificate was issued already, reset the device on the platform/,
          );
        } else {
          expect(stderr).toMatch(
            new RegExp(`interrupted by ${sig}; nothing was written and the previous credentials are unchanged`),
          );
        }
        expect(code).toBe(sig === "SIGTERM" ? 143 : 130);
      } finally {
        gateway.closeAllConnections();
        await Promise.all([new Promise((resolve) => gateway.close(resolve)), lab.close()]);
      }
      // The previous credentials, byte for byte; a CSR that may have been signed leaves its journal (EJBCA-REST).
      const { "victim.issue.pending": journal, ...kept } = await snapshot(out);
      expect(kept).toEqual(before);
      expect(journal !== undefined).toBe(route === "sign");
      expect(existsSync(join(out, ".cert-retriever.lock"))).toBe(false);
      // The platform back to normal, the next run enrolls (the journal lets it reset an end entity the interrupted request left GENERATED).
      const fixed = await serveFixture(fx);
      try {
        const rerun = await enrollCli(fixed.url, fx.lab, "victim", out, ["--force"]);
        expect(rerun.code, rerun.stderr).toBe(0);
      } finally {
        await fixed.close();
      }
      expect(await listFiles(out)).not.toContain("victim.issue.pending");
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
