import { existsSync } from "node:fs";

import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as x509 from "../src/crypto/x509.js";
import { softwareCrypto } from "../src/crypto/provider.js";
import { startLab, setDevice, type LabOptions, type RunningLab } from "../src/lab/server.js";
import { runCli, SECRETS } from "./helpers/cli.js";
import { enrollCli } from "./helpers/enroll.js";
import { startProxy, tempDir } from "./helpers/lab.js";
import { openssl } from "./helpers/tools.js";

const password = "x509-lab-password";
SECRETS.add(password);
const crypto = softwareCrypto();

/** A lab serving `api` with `rules`, in a fresh directory. */
async function lab(api: LabOptions["api"], x509Rules: LabOptions["x509Rules"] = "v0.7"): Promise<RunningLab & { dir: string }> {
  const dir = await tempDir("cr-x509-");
  const running = await startLab({ dir, host: "127.0.0.1", port: 0, crypto, certProfile: "cfree", autoRegister: false, adminPassword: password, tokenLifetime: 420, api, x509Rules });
  return { ...running, dir };
}

async function login(url: string): Promise<string> {
  const res = await fetch(`${url}/auth`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ username: "admin", passwd: password }) });
  return ((await res.json()) as { jwt: string }).jwt;
}

describe("enroll --api auto, unchanged, against each API the lab serves", () => {
  const modes = [
    { name: "EJBCA-REST (dojot <= v0.4)", api: "legacy", rules: "v0.7", detected: /API EJBCA-REST/, key: /Private-Key: \(2048 bit/, subject: (id: string) => `subject=CN = ${id}` },
    { name: "x509-identity-mgmt, v0.5 rules", api: "x509", rules: "v0.5", detected: /API x509-identity-mgmt/, key: /NIST CURVE: P-256/, subject: (id: string) => `subject=O = dojot IoT Platform, CN = admin:${id}` },
    { name: "x509-identity-mgmt, v0.7 rules", api: "x509", rules: "v0.7", detected: /API x509-identity-mgmt/, key: /NIST CURVE: P-256/, subject: (id: string) => `subject=O = dojot IoT Platform, CN = ${id}` },
    { name: "both APIs (the newer is chosen)", api: "both", rules: "v0.7", detected: /API x509-identity-mgmt/, key: /NIST CURVE: P-256/, subject: (id: string) => `subject=O = dojot IoT Platform, CN = ${id}` },
  ] as const;
  for (const mode of modes) {
    it(`${mode.name}: detected, the API's preferred key, files openssl verifies`, async () => {
      const platform = await lab(mode.api, mode.rules);
      try {
        const id = "a1b2c3";
        await setDevice(platform.dir, id, "add");
        const out = join(await tempDir(), "certs");
        const run = await enrollCli(platform.url, { password }, id, out, ["--json"]);
        expect(run.code, run.stderr).toBe(0);
        expect(run.stderr).toMatch(mode.detected);
        const crt = join(out, `${id}.crt`);
        expect(openssl("verify", "-CAfile", join(out, "IOTmidCA.crt"), crt).trim()).toBe(`${crt}: OK`);
        expect(openssl("pkey", "-in", join(out, `${id}.key`), "-noout", "-text")).toMatch(mode.key);
        expect(openssl("pkey", "-in", join(out, `${id}.key`), "-pubout")).toBe(openssl("x509", "-in", crt, "-noout", "-pubkey"));
        expect(openssl("x509", "-in", crt, "-noout", "-subject").trim()).toBe(mode.subject(id));
        if (mode.api !== "legacy" && mode.rules === "v0.7") {
          // Bound to the device, as VerneMQ v0.7+ needs to find the owner by fingerprint.
          const fp = JSON.parse(run.stdout).sha256Fingerprint.replace(/:/g, "");
          const record = await fetch(`${platform.url}/x509/v1/certificates/${fp}`, { headers: { authorization: `Bearer ${await login(platform.url)}` } });
          expect(((await record.json()) as { belongsTo: unknown }).belongsTo).toEqual({ device: id });
        }
      } finally {
        await platform.close();
      }
    });
  }
});

describe("x509-identity-mgmt errors reach the user as one sentence with the step's code", () => {
  let v05: RunningLab & { dir: string };
  let v07: RunningLab & { dir: string };
  beforeAll(async () => {
    [v05, v07] = await Promise.all([lab("x509", "v0.5"), lab("x509", "v0.7")]);
  });
  afterAll(async () => Promise.all([v05.close(), v07.close()]));

  it("a device id v0.5-v0.6 cannot take as CN is refused up front (exit 2), with --api dojot before any request and with auto before any key", async () => {
    const explicit = await runCli(["enroll", "--platform", v05.url, "--api", "dojot", "--device-id", "dev_1", "--username", "admin", "--password-stdin", "--out", join(await tempDir(), "c")], { input: password });
    expect(explicit.code).toBe(2);
    expect(explicit.stderr).toMatch(/the device id 'dev_1' cannot be the CN x509-identity-mgmt accepts \(letters, digits and spaces only/);
    const out = join(await tempDir(), "c");
    const auto = await enrollCli(v05.url, { password }, "dev_1", out);
    expect(auto.code).toBe(2);
    expect(auto.stderr).not.toMatch(/generate-key/);
    expect(existsSync(out)).toBe(false);
  });

  it("v0.7: a device the tenant does not have is refused at the binding (exit 13), nothing written", async () => {
    const out = join(await tempDir(), "c");
    const run = await enrollCli(v07.url, { password }, "abcdef", out);
    expect(run.stderr).toMatch(/submit-csr failed: binding the certificate to device 'abcdef' failed: HTTP 400: Device identifier 'abcdef' was not found for tenant 'admin'\./);
    expect(run.code).toBe(13);
    expect(existsSync(out)).toBe(false);
  });

  it("schema errors of both generations are shown as one sentence (exit 13)", async () => {
    const bodies = [
      { "schema$id": "http://www.dojot.com.br/schemas/reg-or-gen-cert", schemaErrors: [{ keyword: "pattern", dataPath: ".csr", message: "should match pattern" }] },
      { error: "Input data schema validation failure.", detail: { schemaId: "x", schemaErrors: [{ instancePath: "/csr", message: "must match pattern" }, { instancePath: "/x", message: "y" }] } },
    ];
    const expected = [/HTTP 400: Input data schema validation failure: \.csr should match pattern/, /HTTP 400: Input data schema validation failure\.: \/csr must match pattern \(and 1 more\)/];
    for (const [i, body] of bodies.entries()) {
      const proxy = await startProxy(v07.url, (path) => (path === "/x509/v1/certificates" ? { status: 400, body: JSON.stringify(body) } : undefined));
      try {
        await setDevice(v07.dir, "cafe01", "add");
        const run = await enrollCli(proxy.url, { password }, "cafe01", join(await tempDir(), "c"));
        expect(run.stderr).toMatch(expected[i]!);
        expect(run.code).toBe(13);
        expect(run.stderr.trim().split("\n").filter((l) => l.startsWith("cert-retriever:"))).toHaveLength(1);
      } finally {
        await proxy.close();
      }
    }
  });

  it("a CA whose content does not match the fingerprint the platform gives is refused (exit 11)", async () => {
    const proxy = await startProxy(v07.url, (path, up) => (path === "/x509/v1/ca" ? { status: 200, body: up.body.replace(/"certificateFingerprint":"[0-9A-F]/, '"certificateFingerprint":"0') } : undefined));
    try {
      const run = await enrollCli(proxy.url, { password }, "beef01", join(await tempDir(), "c"));
      expect(run.stderr).toMatch(/fetch-ca failed: the CA certificate does not match the fingerprint the platform gave for it/);
      expect(run.code).toBe(11);
    } finally {
      await proxy.close();
    }
  });

  it("the lab applies section 5.2: weak keys, v0.5 subjects and v0.5's trailing newline are refused with dojot's texts", async () => {
    const auth = { authorization: `Bearer ${await login(v05.url)}`, "content-type": "application/json" };
    const csr = async (alg: RsaHashedKeyGenParams | EcKeyGenParams, name: string) => {
      const keys = (await crypto.subtle.generateKey(alg, false, ["sign", "verify"])) as CryptoKeyPair;
      const sig = alg.name === "ECDSA" ? { name: "ECDSA", hash: "SHA-256" } : alg;
      return (await x509.Pkcs10CertificateRequestGenerator.create({ name, keys, signingAlgorithm: sig }, crypto)).toString("pem");
    };
    const post = async (pem: string) => {
      const res = await fetch(`${v05.url}/x509/v1/certificates`, { method: "POST", headers: auth, body: JSON.stringify({ csr: pem }) });
      return [res.status, await res.text()] as const;
    };
    const rsa1024 = await csr({ name: "RSASSA-PKCS1-v1_5", hash: "SHA-256", publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 1024 }, "CN=abc");
    expect(await post(rsa1024.trimEnd())).toEqual([400, '{"message":"The RSA public key length less than 2048 bits is not supported."}']);
    const withO = await csr({ name: "ECDSA", namedCurve: "P-256" }, "CN=abc, O=Acme");
    expect((await post(withO.trimEnd()))[1]).toMatch(/Error checking SubjectDN allowed attributes in CSR\. Allowed: \[CN\] Found: \[/);
    const ok = await csr({ name: "ECDSA", namedCurve: "P-256" }, "CN=abc");
    expect((await post(`${ok.trimEnd()}\n`))[0]).toBe(400); // v0.5: no line break after END
    expect((await post(ok.trimEnd()))[0]).toBe(201);
  });
});


