import { chmod, rm, writeFile } from "node:fs/promises";
import { type AddressInfo, createServer } from "node:net";
import { join } from "node:path";
import { describeCredentials, type EnrollResult } from "cert-retriever";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli, runMain, SECRETS } from "../helpers/cli.js";
import { enrollCli, snapshot } from "../helpers/enroll.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { openssl } from "../helpers/tools.js";

// An x509-identity-mgmt lab that makes a new CRL on every request (dojot's forcecrlrenew), so
// that a revocation reaches check's cached CRL at once; devices are registered as they come.
let lab: TestLab;
beforeAll(async () => {
  lab = await startTestLab({ api: "x509", autoRegister: true, forceCrlRenew: true });
});
afterAll(async () => lab.stop());

const DAY_MS = 24 * 60 * 60_000;

/** A device enrolled with the CLI into a directory of its own: its --out and what enroll --json said. */
async function enrolled(id: string, extra: string[] = []) {
  const out = join(await tempDir(), "certs");
  const run = await enrollCli(lab.url, lab, id, out, ["--json", ...extra]);
  expect(run.code, run.stderr).toBe(0);
  return {
    out,
    result: JSON.parse(run.stdout) as EnrollResult,
  };
}

/** The value of one line of the human block: `Label:   value` (a continuation line belongs to it). */
function field(text: string, label: string): string {
  const m = new RegExp(`^${label}: +(.*(?:\\n {4,}.*)*)`, "m").exec(text);
  if (!m) throw new Error(`no '${label}:' line in:\n${text}`);
  return m[1]!.replace(/\n +/g, "\n");
}

/** check asks the platform (for the CA and its CRL) with the lab's admin, from the environment as a unit gives them. */
const CHECK_LOGIN = () => ({ CERT_RETRIEVER_USERNAME: "admin", CERT_RETRIEVER_PASSWORD: lab.password });

/** Revokes a certificate on the lab, as x509-identity-mgmt's DELETE /x509/v1/certificates/<fingerprint> does. */
async function revokeOnPlatform(fingerprint: string): Promise<void> {
  const auth = await fetch(`${lab.url}/auth`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: "admin", passwd: lab.password }),
  });
  const { jwt } = (await auth.json()) as { jwt: string };
  const res = await fetch(`${lab.url}/x509/v1/certificates/${fingerprint}`, {
    method: "DELETE",
    headers: { authorization: `Bearer ${jwt}` },
  });
  expect(res.status).toBe(204);
}

describe("status: the stored credentials described for people", () => {
  it("after an enroll: device, subject and SANs, issuer and chain, serial, fingerprint, validity, renewal, revocation never checked, the key file and its mode; platform and API not recorded", async () => {
    const { out, result } = await enrolled("5a7a01", ["--dns", "5a7a01.local", "--ip", "10.0.0.7"]);
    const run = await runCli(["status", "--device-id", "5a7a01", "--out", out]);
    expect([run.code, run.stderr]).toEqual([0, ""]);
    const text = run.stdout;
    expect(field(text, "Device")).toBe("5a7a01");
    expect(field(text, "Stored in")).toBe(`${out} (files)`);
    expect(field(text, "Subject")).toBe(result.subject);
    expect(field(text, "SANs")).toBe("DNS:5a7a01.local, IP:10.0.0.7");
    expect(field(text, "Issuer")).toBe(result.issuer);
    // The stored CA, as openssl reads the file (the lab's x509-identity-mgmt CA is self-signed).
    const caSubject = openssl("x509", "-in", join(out, "IOTmidCA.crt"), "-noout", "-subject", "-nameopt", "RFC2253");
    expect(field(text, "Chain")).toMatch(/ \(root\)$/);
    expect(caSubject).toMatch(/CN=X509 Identity CA/);
    expect(field(text, "Chain")).toMatch(/CN=X509 Identity CA/);
    expect(field(text, "Serial")).toBe(result.serialNumber);
    expect(field(text, "SHA-256 fingerprint")).toBe(result.sha256Fingerprint);
    const utc = (iso: string) => iso.replace("T", " ").replace(/\.\d+Z$/, " UTC");
    expect(field(text, "Valid from")).toBe(utc(result.notBefore));
    expect(field(text, "Valid until")).toBe(`${utc(result.notAfter)} (expires in 364 days)`);
    // The default window: when 33% of the lifetime (365 days on x509-identity-mgmt) is left.
    const lifetime = Date.parse(result.notAfter) - Date.parse(result.notBefore);
    const renewFrom = new Date(Date.parse(result.notAfter) - lifetime * 0.33).toISOString();
    expect(field(text, "Renewal due")).toBe(`${utc(renewFrom)} (in 244 days)`);
    expect(field(text, "Revocation")).toBe(
      `never checked: no CRL in ${join(out, "IOTmidCA.crl")} (check --platform keeps the CA's CRL there)`,
    );
    expect(field(text, "Key")).toBe(`file ${join(out, "5a7a01.key")} (mode 0600)`);
    // As the enrollment recorded them: the platform, and the API that answered.
    expect(field(text, "Platform")).toBe(lab.url);
    expect(field(text, "API")).toBe("x509-identity-mgmt");
    expect(text).not.toMatch(/PRIVATE KEY|BEGIN/);
    await rm(join(out, "5a7a01.settings.json"));
    const unrecorded = await runCli(["status", "--device-id", "5a7a01", "--out", out]);
    expect(field(unrecorded.stdout, "Platform")).toBe("not recorded");
    expect(field(unrecorded.stdout, "API")).toBe("not recorded");
  });

  it("--json: one object with the same facts (ISO dates, numbers), ok: true and the command; the library's describeCredentials gives the same", async () => {
    const { out, result } = await enrolled("5a7a02", ["--uri", "spiffe://lab/device/5a7a02"]);
    const now = new Date(Date.parse(result.notBefore) + 10 * DAY_MS + 3_600_000);
    const run = await runMain(
      ["status", "--device-id", "5a7a02", "--out", out, "--json", "--renew-before", "30d", "--api", "dojot"],
      { clock: () => now },
    );
    expect([run.code, run.stderr]).toEqual([0, ""]);
    const json = JSON.parse(run.stdout);
    const renewFrom = new Date(Date.parse(result.notAfter) - 30 * DAY_MS).toISOString();
    expect(json).toEqual({
      ok: true,
      command: "status",
      deviceId: "5a7a02",
      describedAt: now.toISOString(),
      store: { kind: "files", location: out },
      subject: result.subject,
      sans: [{ type: "uri", value: "spiffe://lab/device/5a7a02" }],
      issuer: result.issuer,
      chain: [
        {
          subject: result.issuer,
          issuer: result.issuer,
          sha256Fingerprint: expect.stringMatching(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/),
          notAfter: expect.any(String),
          selfSigned: true,
        },
      ],
      caReplaced: false,
      serialNumber: result.serialNumber,
      sha256Fingerprint: result.sha256Fingerprint,
      notBefore: result.notBefore,
      notAfter: result.notAfter,
      validity: "valid",
      expiresInDays: 354,
      renewFrom,
      renewalDue: false,
      revocation: { state: "never-checked", crlFile: join(out, "IOTmidCA.crl") },
      key: { kind: "file", path: join(out, "5a7a02.key"), mode: "0600" },
      // --api's alias is shown by the protocol's own name; the platform is the one recorded at enrollment.
      platform: { url: lab.url, api: "x509-identity-mgmt" },
    });
    const { ok: _ok, command: _command, ...facts } = json;
    const library = await describeCredentials({
      device: { id: "5a7a02" },
      store: { kind: "files", dir: out },
      platform: { protocol: "dojot", url: new URL(lab.url) },
      renewal: { renewBefore: { ms: 30 * DAY_MS } },
      clock: () => now,
    });
    expect(library).toEqual(facts);
  });

  it("expired credentials (the clock moved past notAfter): EXPIRED, renewal due now, and exit 0: status describes, check decides", async () => {
    const { out, result } = await enrolled("5a7a03");
    const later = new Date(Date.parse(result.notAfter) + 2 * DAY_MS + 3_600_000);
    const run = await runMain(["status", "--device-id", "5a7a03", "--out", out], { clock: () => later });
    expect([run.code, run.stderr]).toEqual([0, ""]);
    expect(field(run.stdout, "Valid until")).toMatch(/ \(EXPIRED 2 days ago\)$/);
    expect(field(run.stdout, "Renewal due")).toMatch(/^now \(since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)$/);
    const json = JSON.parse(
      (await runMain(["status", "--device-id", "5a7a03", "--out", out, "--json"], { clock: () => later })).stdout,
    );
    expect(json).toMatchObject({ ok: true, validity: "expired", expiresInDays: -2, renewalDue: true });
    const check = await runMain(["check", "--device-id", "5a7a03", "--out", out], { clock: () => later });
    expect(check.code).toBe(0); // enrollment needed
  });

  it("revocation as last seen: after check --platform, when it was checked and what the CRL said; revoked on the platform: REVOKED, still exit 0", async () => {
    const { out, result } = await enrolled("5a7a04");
    const args = ["status", "--device-id", "5a7a04", "--out", out];
    const first = await runCli(["check", "--device-id", "5a7a04", "--out", out, "--platform", lab.url], {
      env: CHECK_LOGIN(),
    });
    expect([first.code, first.stderr]).toEqual([1, expect.stringMatching(/is not revoked, says the CRL just fetched/)]);
    const good = await runCli([...args, "--json"]);
    const seen = JSON.parse(good.stdout).revocation;
    expect(seen).toMatchObject({ state: "good", crlFile: join(out, "IOTmidCA.crl") });
    expect(Date.parse(seen.checkedAt)).toBeGreaterThanOrEqual(Date.parse(seen.crlThisUpdate) - 1000);
    expect(field((await runCli(args)).stdout, "Revocation")).toMatch(
      /^not revoked, says the CA's CRL of .* UTC \(fetched .* UTC, next update .* UTC\)$/,
    );
    await revokeOnPlatform(result.sha256Fingerprint);
    // status reads only what check kept: until check fetches the CRL again, it says what it said.
    expect(JSON.parse((await runCli([...args, "--json"])).stdout).revocation.state).toBe("good");
    const check = await runCli(
      ["check", "--device-id", "5a7a04", "--out", out, "--platform", lab.url, "--crl-refresh", "0s"],
      { env: CHECK_LOGIN() },
    );
    expect([check.code, check.stderr]).toEqual([0, expect.stringMatching(/was revoked/)]);
    const revoked = await runCli(args);
    expect(revoked.code).toBe(0);
    expect(field(revoked.stdout, "Revocation")).toMatch(
      /^REVOKED at .* UTC \(superseded\), says the CA's CRL of .* UTC \(fetched .* UTC\)$/,
    );
    const json = JSON.parse((await runCli([...args, "--json"])).stdout);
    expect(json.revocation).toMatchObject({ state: "revoked", reason: "superseded", revokedAt: expect.any(String) });
  });

  it("a cached CRL past its next update is shown as outdated; one that is not the CA's CRL, as unusable", async () => {
    const { out, result } = await enrolled("5a7a08");
    const args = ["status", "--device-id", "5a7a08", "--out", out];
    const check = await runCli(["check", "--device-id", "5a7a08", "--out", out, "--platform", lab.url], {
      env: CHECK_LOGIN(),
    });
    expect(check.code, check.stderr).toBe(1);
    const later = new Date(Date.parse(result.notBefore) + 3 * DAY_MS);
    const old = await runMain(args, { clock: () => later });
    expect(field(old.stdout, "Revocation")).toMatch(
      /^not revoked as of the CA's CRL of .* UTC \(fetched .* UTC\), which is past its next update .* UTC: check fetches a new one when it next asks the platform$/,
    );
    await writeFile(join(out, "IOTmidCA.crl"), "not a CRL\n");
    const damaged = await runCli([...args, "--json"]);
    expect(damaged.code).toBe(0);
    expect(JSON.parse(damaged.stdout).revocation).toEqual({
      state: "unusable",
      crlFile: join(out, "IOTmidCA.crl"),
      why: expect.any(String),
    });
  });

  it("contacts nothing and writes nothing: with the lab stopped and --platform naming a listening port, no connection comes and the directory is unchanged", async () => {
    const gone = await startTestLab({ api: "x509", autoRegister: true });
    const out = join(await tempDir(), "certs");
    expect((await enrollCli(gone.url, gone, "5a7a05", out)).code).toBe(0);
    const check = await runCli(["check", "--device-id", "5a7a05", "--out", out, "--platform", gone.url], {
      env: { CERT_RETRIEVER_USERNAME: "admin", CERT_RETRIEVER_PASSWORD: gone.password },
    });
    expect([check.code, check.stderr]).toEqual([1, expect.stringMatching(/is not revoked/)]);
    await gone.stop();
    let connections = 0;
    const listener = createServer((socket) => {
      connections++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
    const platform = `http://127.0.0.1:${(listener.address() as AddressInfo).port}`;
    try {
      const before = await snapshot(out);
      const run = await runCli([
        "status",
        "--device-id",
        "5a7a05",
        "--out",
        out,
        "--platform",
        platform,
        "--api",
        "x509-identity-mgmt",
      ]);
      expect(run.code, run.stderr).toBe(0);
      // The platform given wins over the one recorded at enrollment, and the difference is said.
      expect(run.stderr).toMatch(
        new RegExp(
          `^note: --platform "${platform}" overrides "http://127\\.0\\.0\\.1:\\d+/", recorded when device '5a7a05' was enrolled\n$`,
        ),
      );
      expect(field(run.stdout, "Platform")).toBe(platform);
      expect(field(run.stdout, "API")).toBe("x509-identity-mgmt");
      expect(field(run.stdout, "Revocation")).toMatch(/^not revoked, says the CA's CRL of /);
      expect(connections).toBe(0);
      expect(await snapshot(out)).toEqual(before);
    } finally {
      listener.close();
    }
  });

  it("a key in a token is named by its recorded URI without any PIN, and the token is not opened (its module need not exist)", async () => {
    const { out } = await enrolled("5a7a06");
    const pin = "pin-Secret-4711";
    SECRETS.add(pin);
    const uri =
      "pkcs11:token=device;object=5a7a06;id=%2a;type=private?module-path=/nonexistent/libpkcs11.so&pin-value=pin-Secret-4711&pin-source=file:/etc/cert-retriever/pin";
    await rm(join(out, "5a7a06.key"));
    await writeFile(join(out, "5a7a06.key.uri"), `${uri}\n`, { mode: 0o644 });
    const run = await runCli(["status", "--device-id", "5a7a06", "--out", out]);
    expect([run.code, run.stderr]).toEqual([0, ""]);
    expect(field(run.stdout, "Key")).toBe(
      `PKCS#11 token, pkcs11:token=device;object=5a7a06;id=%2a;type=private?module-path=/nonexistent/libpkcs11.so&pin-source=file:/etc/cert-retriever/pin (recorded in ${join(out, "5a7a06.key.uri")})`,
    );
    const json = JSON.parse((await runCli(["status", "--device-id", "5a7a06", "--out", out, "--json"])).stdout);
    expect(json.key).toEqual({
      kind: "pkcs11",
      uri: "pkcs11:token=device;object=5a7a06;id=%2a;type=private?module-path=/nonexistent/libpkcs11.so&pin-source=file:/etc/cert-retriever/pin",
      recordedIn: join(out, "5a7a06.key.uri"),
    });
  });

  it("a key file others can read is shown with its mode as it is", async () => {
    const { out } = await enrolled("5a7a07");
    await chmod(join(out, "5a7a07.key"), 0o640);
    const run = await runCli(["status", "--device-id", "5a7a07", "--out", out]);
    expect(run.code, run.stderr).toBe(0);
    expect(field(run.stdout, "Key")).toBe(`file ${join(out, "5a7a07.key")} (mode 0640)`);
  });
});

describe("status: when there is nothing to describe", () => {
  it("no credentials, or half of them: exit 16 with verify's sentence and 'enroll first'; with --json the error object", async () => {
    const out = join(await tempDir(), "certs");
    const none = await runCli(["status", "--device-id", "5a7a00", "--out", out]);
    expect(none.code).toBe(16);
    expect(none.stdout).toBe("");
    expect(none.stderr).toBe(
      `cert-retriever: status failed: no complete credentials for '5a7a00' in ${out}\n  hint: enroll first\n`,
    );
    const { out: half } = await enrolled("5a7a0f");
    await rm(join(half, "5a7a0f.crt"));
    const json = await runCli(["status", "--device-id", "5a7a0f", "--out", half, "--json"]);
    expect(json.code).toBe(16);
    expect(JSON.parse(json.stdout)).toMatchObject({
      ok: false,
      error: { step: "status", reason: "not-enrolled", exitCode: 16 },
    });
  });

  it("a damaged certificate is as good as none (exit 16, naming the file)", async () => {
    const { out } = await enrolled("5a7a0b");
    await writeFile(join(out, "5a7a0b.crt"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    const run = await runCli(["status", "--device-id", "5a7a0b", "--out", out]);
    expect(run.code).toBe(16);
    expect(run.stderr).toMatch(/^cert-retriever: status failed: .*5a7a0b\.crt is not an X\.509 certificate/m);
  });

  it("usage errors are exit 2: no device id, a bad window, an unknown option, a platform URL with a password in it", async () => {
    const out = await tempDir();
    for (const args of [
      ["status", "--out", out],
      ["status", "--device-id", "d", "--out", out, "--renew-before", "soon"],
      ["status", "--device-id", "d", "--out", out, "--crl-refresh", "6h"],
      ["status", "--device-id", "d", "--out", out, "--platform", "https://admin:hunter2hunter2@dojot.example.com"],
    ]) {
      const run = await runCli(args);
      expect(run.code, args.join(" ")).toBe(2);
      expect(run.stderr).not.toMatch(/hunter2/);
    }
  });
});
