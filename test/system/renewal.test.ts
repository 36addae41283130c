import { spawnSync } from "node:child_process";
import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliRun, runCli } from "../helpers/cli.js";
import { haveFaketime, type LabProcess, type SharedClock, sharedClock, startLabProcess } from "../helpers/clock.js";
import { snapshot } from "../helpers/enroll.js";
import { closedPort, tempDir } from "../helpers/lab.js";
import { openssl } from "../helpers/tools.js";

/**
 * Renewal as a device lives it: a lab platform issuing one-hour certificates, the device and the
 * platform on one clock that the test moves (libfaketime), the renewal window at its default (a
 * third of the lifetime left: from 40 minutes on).
 */

const hasFaketime = haveFaketime();
const DEVICE = "a1b2c3";

describe.skipIf(!hasFaketime)(
  "renewal on a moving clock (x509-identity-mgmt v0.7 lab, one-hour certificates)",
  () => {
    let clock: SharedClock;
    let lab: LabProcess;
    beforeAll(async () => {
      clock = await sharedClock();
      lab = await startLabProcess(["--api", "x509", "--cert-lifetime", "1h", "--force-crl-renew"], clock.env);
    });
    afterAll(async () => lab?.stop());

    /** A device on the shared clock: `cert-retriever ARGS` with the platform settings in its environment. */
    const device = async (
      out: string,
      args: string[],
      env: Record<string, string> = {},
      fault?: string,
    ): Promise<CliRun> => {
      const pw = join(out, "..", "password");
      await writeFile(pw, lab.password, { mode: 0o600 });
      const online = ["enroll", "check"].includes(args[0]!)
        ? { CERT_RETRIEVER_PLATFORM: lab.url, CERT_RETRIEVER_USERNAME: "admin", CERT_RETRIEVER_PASSWORD_FILE: pw }
        : {};
      return runCli([...args, "--device-id", deviceOf(out), "--out", out], {
        env: { ...clock.env, ...online, ...env },
        timeoutMs: 60_000,
        fault,
      });
    };
    const deviceOf = (out: string) => (out.endsWith("-b") ? "b1b2c3" : DEVICE);
    const freshDevice = async (id = DEVICE): Promise<string> => {
      await runCli(["lab", "device", "add", "--dir", lab.dir, id]);
      return join(await tempDir("cr-renew-"), id === DEVICE ? "certs" : "certs-b");
    };

    it("inside the window: check says 0, enroll re-keys, runs the hook with the new paths, revokes the old certificate; then check says 1", async () => {
      await clock.set("+0");
      const out = await freshDevice();
      expect((await device(out, ["enroll", "--non-interactive"])).code).toBe(0);
      const before = await snapshot(out);
      const oldCert = join(out, "..", "old.crt");
      await copyFile(join(out, `${DEVICE}.crt`), oldCert);
      const early = await device(out, ["check"]);
      expect([early.code, early.stderr]).toEqual([
        1,
        expect.stringMatching(
          /nothing to do: .*renewal due from .*; certificate \w+ is not revoked, says the CRL just fetched/,
        ),
      ]);

      await clock.set("+45m");
      const due = await device(out, ["check", "--json"]);
      expect([due.code, JSON.parse(due.stdout).state]).toEqual([0, "expiring"]);

      const hookOut = join(out, "..", "hook.env");
      const secret = "not-for-hooks-1234";
      // The password from the environment this time, which the hook must not inherit.
      const renewed = await device(
        out,
        ["enroll", "--non-interactive", "--json", "--exec", `env > '${hookOut}'; echo hook ran`],
        {
          CERT_RETRIEVER_ENTITY_PASSWORD: secret,
          CERT_RETRIEVER_PASSWORD: lab.password,
          CERT_RETRIEVER_PASSWORD_FILE: "",
          CREDENTIALS_DIRECTORY: join(out, "..", "no-credentials"),
        },
      );
      expect(renewed.code, renewed.stderr).toBe(0);
      const result = JSON.parse(renewed.stdout);
      const after = await snapshot(out);
      // Re-keyed: a new key, a new certificate for it, the same CA.
      expect(after[`${DEVICE}.key`]).not.toBe(before[`${DEVICE}.key`]);
      expect(after[`${DEVICE}.crt`]).not.toBe(before[`${DEVICE}.crt`]);
      expect(after["IOTmidCA.crt"]).toBe(before["IOTmidCA.crt"]);
      const keyPub = openssl("pkey", "-in", join(out, `${DEVICE}.key`), "-pubout");
      expect(openssl("x509", "-in", join(out, `${DEVICE}.crt`), "-noout", "-pubkey")).toBe(keyPub);
      expect(result.previous).toMatchObject({ revoked: "revoked" });
      // The hook saw the new files and the replaced fingerprint, and no secret.
      const hookEnv = await readFile(hookOut, "utf8");
      expect(hookEnv).toContain(`CERT_RETRIEVER_CERT_FILE=${join(out, `${DEVICE}.crt`)}`);
      expect(hookEnv).toContain(`CERT_RETRIEVER_KEY_FILE=${join(out, `${DEVICE}.key`)}`);
      expect(hookEnv).toContain(`CERT_RETRIEVER_PREVIOUS_FINGERPRINT=${result.previous.sha256Fingerprint}`);
      expect(hookEnv).not.toContain(secret);
      expect(hookEnv).not.toContain(lab.password);
      // Only what the hook is told: none of the run's own settings (a password, a password file, the platform).
      const told = [
        "DEVICE_ID",
        "STORE",
        "STORE_LOCATION",
        "CERT_FILE",
        "KEY_FILE",
        "CA_FILE",
        "FINGERPRINT",
        "SERIAL",
        "NOT_AFTER",
        "PREVIOUS_FINGERPRINT",
      ];
      expect([...hookEnv.matchAll(/^CERT_RETRIEVER_(\w+)=/gm)].map((m) => m[1]).sort()).toEqual(told.sort());
      expect(hookEnv).not.toMatch(/^(CREDENTIALS_DIRECTORY|LD_PRELOAD)=/m);
      expect(renewed.stderr).toMatch(/hook ran/);
      expect(renewed.stderr).toMatch(/revoked the replaced certificate/);

      // The platform's CRL now lists the old certificate, and check (its cache dropped by the renewal) says the new one is fine.
      const settled = await device(out, ["check"]);
      expect([settled.code, settled.stderr]).toEqual([
        1,
        expect.stringMatching(/is not revoked, says the CRL just fetched/),
      ]);
      const crl = join(out, "IOTmidCA.crl");
      const verify = (cert: string) =>
        spawnSync("openssl", ["verify", "-crl_check", "-CAfile", join(out, "IOTmidCA.crt"), "-CRLfile", crl, cert], {
          env: { ...process.env, ...clock.env },
          encoding: "utf8",
        });
      expect(verify(join(out, `${DEVICE}.crt`)).status).toBe(0);
      expect(verify(oldCert).stdout + verify(oldCert).stderr).toMatch(/certificate revoked/);
    });

    it("a renewal whose platform is down keeps the old credentials in place and exits 75; a broker that cannot be reached with the new ones keeps them too (exit 20)", async () => {
      await clock.set("+0");
      const out = await freshDevice();
      expect((await device(out, ["enroll", "--non-interactive"])).code).toBe(0);
      const before = await snapshot(out);
      await clock.set("+45m");
      const down = await device(out, ["enroll", "--non-interactive", "--retries", "1", "--deadline", "10s"], {
        CERT_RETRIEVER_PLATFORM: `http://127.0.0.1:${await closedPort()}`,
      });
      expect([down.code, down.stderr]).toEqual([
        75,
        expect.stringMatching(
          /existing credentials will be replaced: .*within the renewal window[\s\S]*authenticate failed/,
        ),
      ]);
      expect(await snapshot(out)).toEqual(before);
      // The broker check runs before the swap: a broker that cannot be reached keeps the old credentials.
      const refused = await device(out, [
        "enroll",
        "--non-interactive",
        "--verify-broker",
        `mqtts://127.0.0.1:${await closedPort()}`,
        "--broker-timeout",
        "2s",
      ]);
      expect([refused.code, refused.stderr]).toEqual([
        20,
        expect.stringMatching(/which were not stored: the previous ones stay in use/),
      ]);
      expect(await snapshot(out)).toEqual(before);
      expect((await device(out, ["check"])).code).toBe(0); // still due
    });

    it("a hook that fails: exit 18, the new credentials stay, the old certificate is not revoked; --keep-previous keeps it too; --reload-unit runs systemctl", async () => {
      await clock.set("+0");
      const out = await freshDevice();
      expect((await device(out, ["enroll", "--non-interactive"])).code).toBe(0);
      const oldFp = fingerprintOf(join(out, `${DEVICE}.crt`));
      await clock.set("+45m");
      const failed = await device(out, [
        "enroll",
        "--non-interactive",
        "--json",
        "--exec",
        "echo from-the-hook; exit 3",
      ]);
      expect([failed.code, failed.stderr]).toEqual([
        18,
        expect.stringMatching(
          /hook failed: --exec 'echo from-the-hook; exit 3' exited with 3; the new credentials are stored and stay/,
        ),
      ]);
      expect(failed.stderr).toMatch(/from-the-hook/); // the hook's output goes to stderr: stdout stays JSON
      expect(JSON.parse(failed.stdout)).toMatchObject({
        ok: false,
        error: { exitCode: 18, reason: "hook-failed", step: "hook" },
      });
      const newFp = fingerprintOf(join(out, `${DEVICE}.crt`));
      expect(newFp).not.toBe(oldFp);
      expect(await certificateOnPlatform(oldFp)).toBe(200); // not revoked: what still uses it keeps working
      await clock.set("+90m");
      const kept = await device(out, ["enroll", "--non-interactive", "--keep-previous", "--json"]);
      expect(kept.code, kept.stderr).toBe(0);
      expect(JSON.parse(kept.stdout).previous).toMatchObject({
        sha256Fingerprint: newFp,
        revoked: "kept",
        why: "asked to keep it",
      });
      expect(await certificateOnPlatform(newFp)).toBe(200);
      // systemctl is real here but no systemd runs this container: its refusal is the hook's failure.
      await clock.set("+135m");
      const reload = await device(out, ["enroll", "--non-interactive", "--reload-unit", "mosquitto.service"]);
      expect([reload.code, reload.stderr]).toEqual([
        18,
        expect.stringMatching(/hook failed: --reload-unit mosquitto.service (exited with \d+|could not start)/),
      ]);
    });

    it("a revoked certificate makes check exit 0 (exit 1 with the reason when no CRL can be had), and enroll enrolls again", async () => {
      await clock.set("+0");
      const out = await freshDevice();
      expect((await device(out, ["enroll", "--non-interactive"])).code).toBe(0);
      const fp = fingerprintOf(join(out, `${DEVICE}.crt`));
      expect((await device(out, ["check"])).code).toBe(1);
      expect(await revokeOnPlatform(fp)).toBe(204);
      // Cached a moment ago, the CRL is used until --crl-refresh says it is old.
      const cached = await device(out, ["check"]);
      expect([cached.code, cached.stderr]).toEqual([1, expect.stringMatching(/says the cached CRL/)]);
      // A revocation that enroll could not see (the CRL cannot be kept where it reads it) is an error, not a daily "needed".
      await rm(join(out, "IOTmidCA.crl"));
      await mkdir(join(out, "IOTmidCA.crl"));
      await writeFile(join(out, "IOTmidCA.crl", "x"), "");
      const unkept = await device(out, ["check", "--crl-refresh", "0s"]);
      expect([unkept.code, unkept.stderr]).toEqual([
        255,
        expect.stringMatching(
          /was revoked at .*, but the CRL could not be kept in .*IOTmidCA\.crl .*where enroll reads it/,
        ),
      ]);
      await rm(join(out, "IOTmidCA.crl"), { recursive: true });
      const revoked = await device(out, ["check", "--crl-refresh", "0s", "--json"]);
      expect([revoked.code, JSON.parse(revoked.stdout).state]).toEqual([0, "revoked"]);
      expect(revoked.stderr).toMatch(
        /enrollment needed: certificate \w+ was revoked at .* \(superseded\), says the CRL just fetched/,
      );
      // Unreachable platform: the cached CRL (current) still answers; without one, "unknown" and exit 1.
      const down = { CERT_RETRIEVER_PLATFORM: `http://127.0.0.1:${await closedPort()}` };
      const stale = await device(out, ["check", "--crl-refresh", "0s", "--retries", "0", "--deadline", "5s"], down);
      expect([stale.code, stale.stderr]).toEqual([0, expect.stringMatching(/was revoked at/)]);
      // enroll reads the cached CRL (no network for that) and enrolls again.
      const again = await device(out, ["enroll", "--non-interactive"]);
      expect([again.code, again.stderr]).toEqual([
        0,
        expect.stringMatching(/existing credentials will be replaced: certificate \w+ was revoked/),
      ]);
      const cachedAgain = await device(
        out,
        ["check", "--crl-refresh", "0s", "--retries", "0", "--deadline", "5s"],
        down,
      );
      expect([cachedAgain.code, cachedAgain.stderr]).toEqual([
        1,
        expect.stringMatching(
          /is not revoked, says the cached CRL[\s\S]*note: the CRL could not be fetched .*; the cached one, current until .*, answered/,
        ),
      ]);
      await rm(join(out, "IOTmidCA.crl"));
      const unknown = await device(out, ["check", "--retries", "0", "--deadline", "5s"], down);
      expect([unknown.code, unknown.stderr]).toEqual([
        1,
        expect.stringMatching(/nothing to do: .*; revocation could not be checked: the CRL could not be fetched/),
      ]);
      const offline = await device(out, ["check", "--revocation", "off"], down);
      expect([offline.code, offline.stderr]).toEqual([
        1,
        expect.stringMatching(/revocation not checked \(--revocation off\)/),
      ]);
    });

    it("a CA the platform replaced: check notes it (exit 0), enroll with a password acts on the note, then check says 1", async () => {
      await clock.set("+0");
      const out = await freshDevice();
      expect((await device(out, ["enroll", "--non-interactive"])).code).toBe(0);
      // The same device id on another platform, with another CA.
      const other = await startLabProcess(["--api", "x509", "--cert-lifetime", "1h"], clock.env, "other");
      try {
        await runCli(["lab", "device", "add", "--dir", other.dir, DEVICE]);
        const pw = join(out, "..", "other-password");
        await writeFile(pw, other.password, { mode: 0o600 });
        const there = { CERT_RETRIEVER_PLATFORM: other.url, CERT_RETRIEVER_PASSWORD_FILE: pw };
        const noticed = await device(out, ["check", "--json"], there);
        expect([noticed.code, JSON.parse(noticed.stdout).state]).toEqual([0, "ca-changed"]);
        expect(await readFile(join(out, "IOTmidCA.replaced"), "utf8")).toBe(
          `${fingerprintOf(join(out, "IOTmidCA.crt"))}\n`,
        );
        const moved = await device(out, ["enroll", "--non-interactive"], there);
        expect([moved.code, moved.stderr]).toEqual([
          0,
          expect.stringMatching(
            /existing credentials will be replaced: the platform's CA is no longer the stored one \(found by check\)/,
          ),
        ]);
        expect(moved.stderr).toMatch(/the replaced certificate \w+ stays valid: another CA issued it/);
        await expect(readFile(join(out, "IOTmidCA.replaced"))).rejects.toThrow();
        expect((await device(out, ["check"], there)).code).toBe(1);
      } finally {
        await other.stop();
      }
    });

    /** SHA-256 fingerprint of a PEM file, as the platform names certificates. */
    const fingerprintOf = (file: string) =>
      openssl("x509", "-in", file, "-noout", "-fingerprint", "-sha256").trim().split("=")[1]!;
    const jwt = async () => {
      const reply = await fetch(`${lab.url}/auth`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ username: "admin", passwd: lab.password }),
      });
      return ((await reply.json()) as { jwt: string }).jwt;
    };
    /** The status of GET /x509/v1/certificates/<fp> (200 while the platform holds it). */
    const certificateOnPlatform = async (fp: string) =>
      (await fetch(`${lab.url}/x509/v1/certificates/${fp}`, { headers: { authorization: `Bearer ${await jwt()}` } }))
        .status;
    /** An operator revokes a certificate: DELETE /x509/v1/certificates/<fp>. */
    const revokeOnPlatform = async (fp: string) =>
      (
        await fetch(`${lab.url}/x509/v1/certificates/${fp}`, {
          method: "DELETE",
          headers: { authorization: `Bearer ${await jwt()}` },
        })
      ).status;
  },
  300_000,
);
