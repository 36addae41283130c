// A first boot that survives a bad day (issue 27, items 1 and 2): enroll --dry-run runs every check
// a real run makes before its key and requests nothing; a certificate a run was issued and could
// not store is revoked (x509-identity-mgmt), or its end entity put back to NEW (EJBCA-REST), or
// said to need nothing (EST); and each failure is followed by a rerun that enrolls.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runMain } from "../helpers/cli.js";
import { enrollCli, listFiles } from "../helpers/enroll.js";
import { DEVICE, enrollEst, device as estDevice, estLab } from "../helpers/est-lab.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";

const labs: Array<{ stop(): Promise<void> }> = [];
afterAll(async () => {
  await Promise.all(labs.map((l) => l.stop()));
});

async function lab(opts: Parameters<typeof startTestLab>[0] = {}): Promise<TestLab> {
  const started = await startTestLab(opts);
  labs.push(started);
  return started;
}

/** What the lab holds: its end entities (EJBCA-REST) and certificate records (x509-identity-mgmt). */
function labState(l: TestLab): {
  devices: Record<string, { status: unknown; issued: string[] }>;
  x509Certificates?: Record<string, unknown>;
} {
  return JSON.parse(readFileSync(join(l.dir, "state.json"), "utf8"));
}

describe("enroll --dry-run", () => {
  it("x509-identity-mgmt: authenticates, fetches the CA, says what it would request, exit 0; no key, no CSR, no directory", async () => {
    const x509 = await lab({ api: "x509", autoRegister: true });
    const out = join(await tempDir(), "certs");
    const run = await enrollCli(x509.url, x509, "d0d0a1", out, ["--dry-run", "--dns", "d0d0a1.local", "--json"]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/\[1\/8\] authenticate: /);
    expect(run.stderr).toMatch(/\[2\/8\] fetch-ca: /);
    expect(run.stderr).not.toMatch(/generate-key:|submit-csr:/);
    expect(run.stderr).toContain("dry run: device 'd0d0a1' would be enrolled; no key was made and no CSR sent");
    expect(run.stderr).toMatch(/ {2}API: {7}x509-identity-mgmt \(dojot >= v0\.5\)/);
    expect(run.stderr).toMatch(/ {2}subject: {3}CN=d0d0a1\n {2}names: {5}dns:d0d0a1\.local\n/);
    expect(run.stderr).toMatch(/ {2}key: {7}ec-p256, made in .* \(the API's preferred key\)/);
    expect(JSON.parse(run.stdout)).toMatchObject({
      status: "dry-run",
      deviceId: "d0d0a1",
      action: "enroll",
      api: "x509-identity-mgmt (dojot >= v0.5)",
      ca: {
        subject: expect.stringMatching(/CN=X509 Identity CA/),
        sha256Fingerprint: expect.stringMatching(/^([0-9A-F]{2}:){31}/),
      },
      request: { subject: "CN=d0d0a1", sans: ["dns:d0d0a1.local"], keyType: "ec-p256" },
      store: { kind: "files", location: out },
    });
    expect(existsSync(out)).toBe(false);
    expect(Object.keys(labState(x509).x509Certificates ?? {})).toEqual([]);
  });

  it("EJBCA-REST: an EC key for the CFREE profile is refused as a real run would be (exit 13), an RSA key passes, and the end entity stays NEW for the real run", async () => {
    const legacy = await lab();
    await legacy.addDevice("d0d0a2");
    const out = join(await tempDir(), "certs");
    const ec = await enrollCli(legacy.url, legacy, "d0d0a2", out, ["--dry-run", "--key-type", "ec-p256"]);
    expect(ec.code, ec.stderr).toBe(13);
    expect(ec.stderr).toMatch(
      /certificate profile CFREE, which takes RSA keys .*; no key was made and no certificate requested/,
    );
    const rsa = await enrollCli(legacy.url, legacy, "d0d0a2", out, ["--dry-run"]);
    expect(rsa.code, rsa.stderr).toBe(0);
    expect(rsa.stderr).toMatch(/ {2}key: {7}rsa-2048, made in .* \(the API's preferred key\)/);
    expect(labState(legacy).devices.d0d0a2).toMatchObject({ status: 10, issued: [] });
    const real = await enrollCli(legacy.url, legacy, "d0d0a2", out);
    expect(real.code, real.stderr).toBe(0);
    // Valid credentials stored: a dry run says a run would request nothing.
    const kept = await enrollCli(legacy.url, legacy, "d0d0a2", out, ["--dry-run", "--json"]);
    expect(kept.code, kept.stderr).toBe(0);
    expect(JSON.parse(kept.stdout)).toMatchObject({ action: "keep", notAfter: expect.any(String) });
    expect(kept.stderr).toMatch(/already has valid credentials .*: a run would request nothing/);
  });

  it("a device clock the platform's shows wrong is refused by the dry run too (exit 75)", async () => {
    const x509 = await lab({ api: "x509", autoRegister: true });
    const run = await runMain(
      [
        "enroll",
        "--dry-run",
        "--platform",
        x509.url,
        "--device-id",
        "d0d0a3",
        "--username",
        "admin",
        "--password-stdin",
        "--out",
        join(await tempDir(), "certs"),
      ],
      { input: `${x509.password}\n`, clock: () => new Date(Date.now() - 3 * 86_400_000) },
    );
    expect(run.code, run.stderr).toBe(75);
    expect(run.stderr).toMatch(/fetch-ca failed: this device's clock .* is 3 d behind the platform's/);
  });
});

describe("a certificate issued and not stored, and the rerun", () => {
  it("x509-identity-mgmt, a certificate that fails validation: revoked by the run that got it (exit 14); the rerun enrolls", async () => {
    const x509 = await lab({
      api: "x509",
      autoRegister: true,
      faults: [{ route: "sign", kind: "other-key", times: 1 }],
    });
    const out = join(await tempDir(), "certs");
    const run = await enrollCli(x509.url, x509, "d0d0b1", out);
    expect(run.code, run.stderr).toBe(14);
    expect(run.stderr).toMatch(
      /validate failed: the certificate's public key is not the key generated for this device; nothing was written; certificate [0-9a-f]+ was issued to this run and not stored, so it was revoked on the platform; the next run enrolls anew\n/,
    );
    expect(Object.keys(labState(x509).x509Certificates ?? {})).toEqual([]);
    expect(existsSync(out)).toBe(false);
    const rerun = await enrollCli(x509.url, x509, "d0d0b1", out);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(Object.keys(labState(x509).x509Certificates ?? {})).toHaveLength(1);
  });

  for (const api of ["legacy", "x509"] as const) {
    it(`${api === "legacy" ? "EJBCA-REST" : "x509-identity-mgmt"}, the write fails after the certificate came (a full disk): exit 15, ${api === "legacy" ? "the end entity reset to NEW" : "the certificate revoked"}; the rerun enrolls without --force`, async () => {
      const l = await lab({ api, autoRegister: true });
      const id = api === "legacy" ? "d0d0b2" : "d0d0b3";
      const out = join(await tempDir(), "certs");
      const run = await enrollCli(l.url, l, id, out, [], {}, "store:renamed-1");
      expect(run.code, run.stderr).toBe(15);
      expect(run.stderr).toMatch(
        api === "legacy"
          ? /; certificate [0-9a-f]+ was issued to this run and not stored, so it was revoked on the platform; the device's end entity was reset to NEW on the platform, so the next run signs again\n/
          : /; certificate [0-9a-f]+ was issued to this run and not stored, so it was revoked on the platform; the next run enrolls anew\n/,
      );
      if (api === "legacy") expect(labState(l).devices[id]).toMatchObject({ status: 10 });
      expect(await listFiles(out)).toEqual([]);
      const rerun = await enrollCli(l.url, l, id, out);
      expect(rerun.code, rerun.stderr).toBe(0);
      expect(await listFiles(out)).toEqual(["IOTmidCA.crt", `${id}.crt`, `${id}.key`, `${id}.settings.json`]);
    });
  }

  it("EJBCA-REST, the reply lost after the certificate was issued: exit 75, the journal kept; the rerun resets the end entity (POST /user) and enrolls", async () => {
    const legacy = await lab({ faults: [{ route: "sign", kind: "reply-lost", times: 1 }] });
    await legacy.addDevice("d0d0b4");
    const out = join(await tempDir(), "certs");
    const lost = await enrollCli(legacy.url, legacy, "d0d0b4", out);
    expect(lost.code, lost.stderr).toBe(75);
    expect(lost.stderr).toMatch(/the request may have reached the platform/);
    expect(labState(legacy).devices.d0d0b4).toMatchObject({ status: 40 });
    expect(await listFiles(out)).toEqual(["d0d0b4.issue.pending"]);
    const rerun = await enrollCli(legacy.url, legacy, "d0d0b4", out);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(rerun.stderr).toMatch(
      /note: an earlier run \(at \d{4}-.*Z\) was issued a certificate it did not store: the device's end entity was reset to NEW to sign again/,
    );
    expect(await listFiles(out)).toEqual(["IOTmidCA.crt", "d0d0b4.crt", "d0d0b4.key", "d0d0b4.settings.json"]);
    // Without the journal, an end entity another run left GENERATED is not reset: EJBCA's refusal stands.
    const other = join(await tempDir(), "certs");
    const refused = await enrollCli(legacy.url, legacy, "d0d0b4", other);
    expect(refused.code).toBe(13);
    expect(refused.stderr).toMatch(/status GENERATED/);
  });

  it("EST, a certificate that fails validation: nothing to undo, and the message says so; the rerun enrolls", async () => {
    const est = await estLab({}, [{ route: "est-enroll", kind: "other-key", times: 1 }]);
    labs.push(est);
    const { out, pw } = await estDevice(est);
    const args = ["--username", "admin", "--password-file", pw, "--ca-fingerprint", est.pin];
    const run = await enrollEst(est, out, args);
    expect(run.code, run.stderr).toBe(14);
    expect(run.stderr).toMatch(
      /; certificate [0-9a-f]+ was issued to this run and not stored; an EST server keeps nothing to undo for it, and the next run enrolls again\n/,
    );
    const rerun = await enrollEst(est, out, args);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(await listFiles(out)).toContain(`${DEVICE}.crt`);
  });
});

describe("EJBCA-REST v0.5.0-alpha.1, whose /sign resets the end entity itself", () => {
  it("renewal and --force enroll; an unknown device is still found before any key", async () => {
    const v05 = await lab({ ejbcaRestVersion: "v0.5" });
    await v05.addDevice("d0d0c1");
    const out = join(await tempDir(), "certs");
    expect((await enrollCli(v05.url, v05, "d0d0c1", out)).code).toBe(0);
    const renewed = await enrollCli(v05.url, v05, "d0d0c1", out, ["--renew-before", "731d", "--json"]);
    expect(renewed.code, renewed.stderr).toBe(0);
    expect(JSON.parse(renewed.stdout).previous).toMatchObject({ revoked: "revoked" });
    const forced = await enrollCli(v05.url, v05, "d0d0c1", out, ["--force"]);
    expect(forced.code, forced.stderr).toBe(0);
    const unknown = await enrollCli(v05.url, v05, "d0d0c2", join(await tempDir(), "certs"));
    expect(unknown.code).toBe(13);
    expect(unknown.stderr).toMatch(/the platform has no end entity for device 'd0d0c2'.*no key was made/);
  });
});
