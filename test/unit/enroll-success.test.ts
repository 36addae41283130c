import { existsSync, readFileSync } from "node:fs";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.js";
import { enrollCli, listFiles, modeOf, snapshot } from "../helpers/enroll.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { haveTool, openssl, opensslStatus } from "../helpers/tools.js";

const hasOpenssl = haveTool("openssl");

/** The openssl checks every stored credential set must pass. */
function expectOpensslAccepts(out: string, deviceId: string, caName = "IOTmidCA"): void {
  const ca = join(out, `${caName}.crt`);
  const crt = join(out, `${deviceId}.crt`);
  const key = join(out, `${deviceId}.key`);
  expect(openssl("verify", "-CAfile", ca, crt).trim()).toBe(`${crt}: OK`);
  expect(openssl("pkey", "-in", key, "-pubout")).toBe(openssl("x509", "-in", crt, "-noout", "-pubkey"));
  expect(opensslStatus("x509", "-in", crt, "-noout", "-checkend", "0")).toBe(0);
  expect(openssl("x509", "-in", crt, "-noout", "-subject").trim()).toBe(`subject=CN = ${deviceId}`);
  expect(readFileSync(key, "utf8")).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
}

describe.skipIf(!hasOpenssl)("enroll against the lab platform (EJBCA-REST, CFREE)", () => {
  let lab: TestLab;
  beforeAll(async () => {
    lab = await startTestLab();
  });
  afterAll(async () => lab.stop());

  it("runs the eight steps and stores three files that openssl verifies, key 0600 in a 0700 directory", async () => {
    await lab.addDevice("f60c28");
    const out = join(await tempDir(), "certs");
    const run = await enrollCli(lab.url, lab, "f60c28", out, ["--json", "--dns", "f60c28.local", "--ip", "10.1.2.3"]);
    expect(run.code, run.stderr).toBe(0);
    for (const [i, step] of [
      "authenticate",
      "fetch-ca",
      "generate-key",
      "build-csr",
      "submit-csr",
      "validate",
      "bind",
      "store",
    ].entries()) {
      expect(run.stderr).toContain(`[${i + 1}/8] ${step}:`);
    }
    expect(await listFiles(out)).toEqual(["IOTmidCA.crt", "f60c28.crt", "f60c28.key", "f60c28.settings.json"]);
    expect(await modeOf(out)).toBe(0o700);
    expect(await modeOf(join(out, "f60c28.key"))).toBe(0o600);
    expect(await modeOf(join(out, "f60c28.crt"))).toBe(0o644);
    expectOpensslAccepts(out, "f60c28");
    expect(openssl("x509", "-in", join(out, "f60c28.crt"), "-noout", "-ext", "subjectAltName")).toMatch(
      /DNS:f60c28\.local, IP Address:10\.1\.2\.3/,
    );
    expect(openssl("x509", "-in", join(out, "IOTmidCA.crt"), "-noout", "-subject").trim()).toBe(
      "subject=CN = IOTmidCA, O = EJBCA IOT, C = SE",
    );
    expect(openssl("pkey", "-in", join(out, "f60c28.key"), "-noout", "-text")).toMatch(/Private-Key: \(2048 bit/);

    const result = JSON.parse(run.stdout);
    const fingerprint = openssl("x509", "-in", join(out, "f60c28.crt"), "-noout", "-fingerprint", "-sha256")
      .trim()
      .split("=")[1];
    const serial = openssl("x509", "-in", join(out, "f60c28.crt"), "-noout", "-serial").trim().split("=")[1];
    expect(result).toMatchObject({
      status: "enrolled",
      deviceId: "f60c28",
      tenant: "admin",
      sha256Fingerprint: fingerprint,
    });
    expect(result.serialNumber.toUpperCase()).toBe(serial);
    expect(result.steps.map((s: { step: string }) => s.step)).toEqual([
      "authenticate",
      "fetch-ca",
      "generate-key",
      "build-csr",
      "submit-csr",
      "validate",
      "bind",
      "store",
    ]);
    // CFREE's 730 days, capped at the end of the lab's 650-day IOTmidCA as EJBCA caps it.
    expect(new Date(result.notAfter).getTime()).toBe(lab.ca.cert.notAfter.getTime());
  });

  it("--json lists only the files written (a profile file only with a profile), and a second device in a shared --out is no 'half state'", async () => {
    const out = join(await tempDir(), "certs");
    await lab.addDevice("shared-1");
    const first = await enrollCli(lab.url, lab, "shared-1", out, ["--json"]);
    expect(first.code, first.stderr).toBe(0);
    const files = JSON.parse(first.stdout).store.files;
    expect(Object.keys(files).sort()).toEqual(["ca", "certificate", "dir", "key", "settings"]);
    for (const key of ["ca", "certificate", "key", "settings"]) expect(existsSync(files[key]), files[key]).toBe(true);
    const again = await enrollCli(lab.url, { password: "" }, "shared-1", out, ["--json"]);
    expect(Object.keys(JSON.parse(again.stdout).store.files)).not.toContain("profile");
    // The CA file is the other device's too: the second device has no credentials, not half of them.
    await lab.addDevice("shared2");
    const check = await runCli(["check", "--device-id", "shared2", "--out", out]);
    expect(check.code).toBe(0);
    expect(check.stderr).toMatch(
      /enrollment needed: no credentials for 'shared2' in .* \(only the CA certificate, which devices there share\)/,
    );
    const second = await enrollCli(lab.url, lab, "shared2", out, ["--json", "--profile", "dojot-mosca"]);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).not.toMatch(/half state|will be replaced/);
    const profiled = JSON.parse(second.stdout).store.files;
    expect(profiled.profile).toBe(join(out, "shared2.profile.json"));
    expect(existsSync(profiled.profile)).toBe(true);
  });

  it("says valid credentials already exist, exits 0 and touches nothing, without asking for a password", async () => {
    await lab.addDevice("dev-again");
    const out = join(await tempDir(), "certs");
    expect((await enrollCli(lab.url, lab, "dev-again", out)).code).toBe(0);
    const before = await snapshot(out);
    const again = await enrollCli(lab.url, { password: "" }, "dev-again", out, ["--json"]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/already has valid credentials/);
    expect(JSON.parse(again.stdout).status).toBe("already-enrolled");
    expect(await snapshot(out)).toEqual(before);
  });

  it("with --force enrolls again (after the device is reset on the platform) with a new key", async () => {
    await lab.addDevice("dev-force");
    const out = join(await tempDir(), "certs");
    expect((await enrollCli(lab.url, lab, "dev-force", out)).code).toBe(0);
    const oldKey = await readFile(join(out, "dev-force.key"), "utf8");
    await lab.resetDevice("dev-force");
    const run = await enrollCli(lab.url, lab, "dev-force", out, ["--force"]);
    expect(run.code, run.stderr).toBe(0);
    expect(await readFile(join(out, "dev-force.key"), "utf8")).not.toBe(oldKey);
    expectOpensslAccepts(out, "dev-force");
    expect(await listFiles(out)).toEqual(["IOTmidCA.crt", "dev-force.crt", "dev-force.key", "dev-force.settings.json"]);
  });

  it("enrolls over half state (a key without a certificate) and over a damaged certificate", async () => {
    await lab.addDevice("dev-half");
    const out = join(await tempDir(), "certs");
    expect((await enrollCli(lab.url, lab, "dev-half", out)).code).toBe(0);
    await lab.resetDevice("dev-half");
    await rm(join(out, "dev-half.crt"));
    const half = await enrollCli(lab.url, lab, "dev-half", out);
    expect(half.code, half.stderr).toBe(0);
    expectOpensslAccepts(out, "dev-half");

    await lab.resetDevice("dev-half");
    await writeFile(join(out, "dev-half.crt"), "garbage");
    const damaged = await enrollCli(lab.url, lab, "dev-half", out);
    expect(damaged.code, damaged.stderr).toBe(0);
    expect(damaged.stderr).toMatch(/existing credentials will be replaced: .*not an X\.509 certificate/);
    expectOpensslAccepts(out, "dev-half");
  });

  it("generates rsa-3072 and rsa-4096 keys that CFREE accepts", async () => {
    for (const type of ["rsa-3072", "rsa-4096"]) {
      const id = `dev-${type}`;
      await lab.addDevice(id);
      const out = join(await tempDir(), "certs");
      const run = await enrollCli(lab.url, lab, id, out, ["--key-type", type]);
      expect(run.code, run.stderr).toBe(0);
      expectOpensslAccepts(out, id);
      expect(openssl("pkey", "-in", join(out, `${id}.key`), "-noout", "-text")).toContain(`(${type.slice(4)} bit`);
    }
  });

  it("takes the password from a file or CERT_RETRIEVER_PASSWORD as well as stdin", async () => {
    const { runCli } = await import("../helpers/cli.js");
    const dir = await tempDir();
    await writeFile(join(dir, "pw"), `${lab.password}\n`, { mode: 0o600 });
    await lab.addDevice("dev-pwfile");
    await lab.addDevice("dev-pwenv");
    const base = (id: string) => [
      "enroll",
      "--platform",
      lab.url,
      "--device-id",
      id,
      "--username",
      "admin",
      "--out",
      join(dir, id),
    ];
    expect((await runCli([...base("dev-pwfile"), "--password-file", join(dir, "pw")])).code).toBe(0);
    expect((await runCli(base("dev-pwenv"), { env: { CERT_RETRIEVER_PASSWORD: lab.password } })).code).toBe(0);
  });
});

describe.skipIf(!hasOpenssl)("enroll against the lab with the open certificate profile", () => {
  let lab: TestLab;
  beforeAll(async () => {
    lab = await startTestLab({ certProfile: "open", autoRegister: true });
  });
  afterAll(async () => lab.stop());

  for (const type of ["ec-p256", "ec-p384"]) {
    it(`issues a certificate for an ${type} key, URI names kept`, async () => {
      const id = `ec-${type}`;
      const out = join(await tempDir(), "certs");
      const run = await enrollCli(lab.url, lab, id, out, [
        "--key-type",
        type,
        "--uri",
        `spiffe://example.com/device/${id}`,
      ]);
      expect(run.code, run.stderr).toBe(0);
      expectOpensslAccepts(out, id);
      expect(openssl("pkey", "-in", join(out, `${id}.key`), "-noout", "-text")).toContain(
        type === "ec-p256" ? "NIST CURVE: P-256" : "NIST CURVE: P-384",
      );
      expect(openssl("x509", "-in", join(out, `${id}.crt`), "-noout", "-ext", "subjectAltName")).toContain(
        `URI:spiffe://example.com/device/${id}`,
      );
    });
  }
});
