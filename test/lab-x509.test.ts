import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as x509 from "../src/crypto/x509.js";
import { softwareCrypto } from "../src/crypto/provider.js";
import { noRoute } from "../src/platform/auto.js";
import { startLab, type LabOptions, type RunningLab } from "../src/lab/server.js";
import { runCli, SECRETS } from "./helpers/cli.js";
import { enrollCli } from "./helpers/enroll.js";
import { tempDir } from "./helpers/lab.js";
import { openssl } from "./helpers/tools.js";

/**
 * The lab's x509-identity-mgmt answers as the real service's code does at its tags (dojot/dojot
 * `x509-identity-mgmt/js` v0.5.0, `iam/x509-identity-mgmt/js` v0.7.0/v0.8.0); the expected bodies
 * below are what that code (ajv 6, http-errors, the SDK's error handler) sends.
 */
const password = "x509-fidelity-password";
SECRETS.add(password);
const crypto = softwareCrypto();

type Lab = RunningLab & { dir: string; jwt: string };

async function lab(x509Rules: "v0.5" | "v0.7", more: Partial<LabOptions> = {}): Promise<Lab> {
  const dir = await tempDir("cr-x509f-");
  const running = await startLab({ dir, host: "127.0.0.1", port: 0, crypto, certProfile: "cfree", autoRegister: false, adminPassword: password, tokenLifetime: 420, api: "x509", x509Rules, ...more });
  const res = await fetch(`${running.url}/auth`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ username: "admin", passwd: password }) });
  return { ...running, dir, jwt: ((await res.json()) as { jwt: string }).jwt };
}

async function call(platform: Lab, method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${platform.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${platform.jwt}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

/** A PEM CSR (no trailing newline, as the agent sends it) for `name`, with extensions if given. */
async function csr(name: string, extensions: x509.Extension[] = []): Promise<string> {
  const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign", "verify"])) as CryptoKeyPair;
  return (await x509.Pkcs10CertificateRequestGenerator.create({ name, keys, signingAlgorithm: { name: "ECDSA", hash: "SHA-256" }, extensions }, crypto)).toString("pem").trimEnd();
}

/** A secp256k1 CSR from openssl (WebCrypto has no such curve). */
function secp256k1Csr(): string {
  const dir = execFileSync("mktemp", ["-d"], { encoding: "utf8" }).trim();
  openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1", "-nodes", "-keyout", join(dir, "k"), "-subj", "/CN=abc", "-out", join(dir, "csr"));
  return readFileSync(join(dir, "csr"), "utf8").trimEnd();
}

function pemFile(pem: string): string {
  const path = join(execFileSync("mktemp", ["-d"], { encoding: "utf8" }).trim(), "c.pem");
  writeFileSync(path, `${pem}\n`);
  return path;
}

let v05: Lab;
let v07: Lab;
beforeAll(async () => {
  [v05, v07] = await Promise.all([lab("v0.5"), lab("v0.7")]);
});
afterAll(async () => Promise.all([v05.close(), v07.close()]));

describe("subject rules (distinguished-name.js v0.5.0, dnUtils.js v0.7.0/v0.8.0)", () => {
  it("v0.5: the CN rule's error quotes the RegExp as JavaScript prints it", async () => {
    expect(await call(v05, "POST", "/x509/v1/certificates", { csr: await csr("CN=dev-1") })).toEqual({
      status: 400,
      json: { message: "Error checking SubjectDN 'CN' attribute in CSR. The value does not match the regular expression: /^[0-9A-Za-z ]{1,255}$/. Found: dev-1" },
    });
  });

  it("v0.5: a CSR's own O is accepted and overwritten; 'Found:' lists every attribute, the constant O first", async () => {
    const ok = await call(v05, "POST", "/x509/v1/certificates", { csr: await csr("O=Acme, CN=abc") });
    expect(ok.status).toBe(201);
    const pem = (ok.json as { certificatePem: string }).certificatePem;
    expect(openssl("x509", "-in", pemFile(pem), "-noout", "-subject").trim()).toBe("subject=O = dojot IoT Platform, CN = admin:abc");
    expect(await call(v05, "POST", "/x509/v1/certificates", { csr: await csr("CN=abc, OU=Line 4") })).toEqual({
      status: 400,
      json: { message: "Error checking SubjectDN allowed attributes in CSR. Allowed: [CN] Found: [O,CN,OU]" },
    });
    expect(await call(v05, "POST", "/x509/v1/certificates", { csr: await csr("O=Acme") })).toEqual({
      status: 400,
      json: { message: "Error checking SubjectDN mandatory attributes in CSR. Mandatory: [CN] Found: [O]" },
    });
  });

  it("v0.7: the CSR's O is replaced, the subject string is built CN first with one O, and EJBCA encodes it O first", async () => {
    const ok = await call(v07, "POST", "/x509/v1/certificates", { csr: await csr("CN=abc, O=Acme") });
    const { certificateFingerprint, certificatePem } = ok.json as { certificateFingerprint: string; certificatePem: string };
    expect(openssl("x509", "-in", pemFile(certificatePem), "-noout", "-subject").trim()).toBe("subject=O = dojot IoT Platform, CN = abc");
    const record = await call(v07, "GET", `/x509/v1/certificates/${certificateFingerprint}`);
    expect(record.json).toMatchObject({ subjectDN: "CN=abc, O=dojot IoT Platform", belongsTo: {}, tenant: "admin" });
    const plain = await call(v07, "POST", "/x509/v1/certificates", { csr: await csr("CN=xyz") });
    const again = await call(v07, "GET", `/x509/v1/certificates/${(plain.json as { certificateFingerprint: string }).certificateFingerprint}`);
    expect(again.json).toMatchObject({ subjectDN: "CN=xyz, O=dojot IoT Platform" });
  });
});

describe("keys, signatures and error shapes (pki-utils.js v0.5.0, pkiUtils.js v0.8.0, the SDK's error handler)", () => {
  it("a secp256k1 key is a 400 naming the curve rule, in each generation's shape", async () => {
    const text = "The elliptical curve used in the ECDSA public key algorithm is not supported. (Use the NIST-recommended curves: P-256, P-384 or P-521)";
    const pem = secp256k1Csr();
    expect(await call(v05, "POST", "/x509/v1/certificates", { csr: pem })).toEqual({ status: 400, json: { message: text } });
    expect(await call(v07, "POST", "/x509/v1/certificates", { csr: pem })).toEqual({ status: 400, json: { error: text } });
  });

  it("a CSR whose signature does not verify reaches EJBCA and comes back as the generic 500 (the service has no text of its own for it)", async () => {
    const der = Buffer.from(x509.PemConverter.decodeFirst(await csr("CN=abc")));
    der[der.length - 5]! ^= 0xff; // inside the signature
    const pem = x509.PemConverter.encode(der, "CERTIFICATE REQUEST").trimEnd();
    expect(await call(v07, "POST", "/x509/v1/certificates", { csr: pem })).toEqual({ status: 500, json: { error: "An unexpected error has occurred." } });
    expect(await call(v05, "POST", "/x509/v1/certificates", { csr: pem })).toEqual({ status: 500, json: { message: "An unexpected error has occurred." } });
  });

  it("schema failures are ajv 6's errors under the real $ids: {} on v0.5 reports the oneOf of certificatePem and csr", async () => {
    const oneOf = (external: string) => [
      { keyword: "required", dataPath: "", schemaPath: "#/oneOf/0/required", params: { missingProperty: external }, message: `should have required property '${external}'` },
      { keyword: "required", dataPath: "", schemaPath: "#/oneOf/1/required", params: { missingProperty: "csr" }, message: "should have required property 'csr'" },
      { keyword: "oneOf", dataPath: "", schemaPath: "#/oneOf", params: { passingSchemas: null }, message: "should match exactly one schema in oneOf" },
    ];
    expect(await call(v05, "POST", "/x509/v1/certificates", {})).toEqual({
      status: 400,
      json: { "schema$id": "http://www.dojot.com.br/schemas/reg-or-gen-cert", schemaErrors: oneOf("certificatePem") },
    });
    const v07Id = "https://raw.githubusercontent.com/dojot/dojot/development/iam/x509-identity-mgmt/js/schemas";
    expect(await call(v07, "POST", "/x509/v1/certificates", {})).toEqual({
      status: 400,
      json: { error: "Input data schema validation failure.", detail: { schemaId: `${v07Id}/register-or-generate-certificate.json`, schemaErrors: oneOf("certificateChain") } },
    });
    const pattern = (await call(v07, "POST", "/x509/v1/certificates", { csr: "nope" })).json as { detail: { schemaErrors: unknown[] } };
    expect(pattern.detail.schemaErrors).toEqual([
      expect.objectContaining({ keyword: "pattern", dataPath: ".csr", schemaPath: `${v07Id}/defs.json#/definitions/csr/pattern`, message: expect.stringMatching(/^should match pattern "\^-\{5\}BEGIN CERTIFICATE REQUEST/) }),
    ]);
  });

  it("an unknown route is JSON in both generations ({message|error: 'Not Found'}), which auto-detection reads as 'no route'", async () => {
    for (const [platform, body] of [[v05, { message: "Not Found" }], [v07, { error: "Not Found" }]] as const) {
      const res = await fetch(`${platform.url}/x509/v1/no-such-route`, { method: "PATCH", headers: { authorization: `Bearer ${platform.jwt}` } });
      expect(res.status).toBe(404);
      expect(res.headers.get("content-type")).toMatch(/^application\/json/);
      const text = await res.text();
      expect(JSON.parse(text)).toEqual(body);
      expect(noRoute({ status: 404, contentType: "application/json", text })).toBe(true);
    }
    // An API refusing is not "no route".
    expect(noRoute({ status: 404, contentType: "application/json", text: '{"message":"No records found for the following parameters: {}"}' })).toBe(false);
  });
});

describe("binding (PATCH /certificates/:fingerprint)", () => {
  it("v0.5: belongsTo.device must be ten hex digits; the fingerprint is only upper-cased, so without colons it is not found", async () => {
    expect(await call(v05, "PATCH", "/x509/v1/certificates/AB", { belongsTo: { device: "f60c28" } })).toEqual({
      status: 400,
      json: {
        "schema$id": "http://www.dojot.com.br/schemas/ch-owner-cert",
        schemaErrors: [
          {
            keyword: "pattern",
            dataPath: ".belongsTo.device",
            schemaPath: "http://www.dojot.com.br/schemas/defs#/definitions/belongsTo/properties/device/pattern",
            params: { pattern: "^[0-9a-fA-F]{10}$" },
            message: 'should match pattern "^[0-9a-fA-F]{10}$"',
          },
        ],
      },
    });
    const issued = (await call(v05, "POST", "/x509/v1/certificates", { csr: await csr("CN=abc") })).json as { certificateFingerprint: string };
    const bare = issued.certificateFingerprint.replace(/:/g, "").toLowerCase();
    expect(await call(v05, "PATCH", `/x509/v1/certificates/${bare}`, { belongsTo: { device: "f60c28aa01" } })).toEqual({
      status: 404,
      json: { message: `No records found for the following parameters: {"fingerprint":"${bare.toUpperCase()}","tenant":"admin"}` },
    });
    expect((await call(v05, "PATCH", `/x509/v1/certificates/${issued.certificateFingerprint}`, { belongsTo: { device: "f60c28aa01" } })).status).toBe(204);
  });

  it("v0.7+: the fingerprint is normalised; an unknown one is 'No records found' with the colon fingerprint and the tenant", async () => {
    await call(v07, "POST", "/x509/v1/certificates", { csr: await csr("CN=abc") }); // a record exists, just not this one
    const fp = "ab".repeat(32);
    const colon = fp.toUpperCase().match(/../g)!.join(":");
    expect(await call(v07, "PATCH", `/x509/v1/certificates/${fp}`, { belongsTo: { device: "f60c28" } })).toEqual({
      status: 400,
      json: { error: "Device identifier 'f60c28' was not found for tenant 'admin'." },
    });
    const open = await lab("v0.7", { autoRegister: true });
    try {
      expect(await call(open, "PATCH", `/x509/v1/certificates/${fp}`, { belongsTo: { device: "f60c28" } })).toEqual({
        status: 404,
        json: { error: `No records found for the following parameters: {"fingerprint":"${colon}","tenant":"admin"}` },
      });
    } finally {
      await open.close();
    }
  });

  it("--auto-register: any device id works on the x509 API too (the device check is waived), end to end", async () => {
    const open = await lab("v0.7", { autoRegister: true });
    try {
      const out = join(await tempDir(), "c");
      const run = await enrollCli(open.url, { password }, "0badc0de", out);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toMatch(/bind: certificate bound to device 0badc0de/);
    } finally {
      await open.close();
    }
  });
});

describe("the issued certificate and the CA (X509Identity profile, certificate-authorities-creation.sh)", () => {
  it("a CSR without extensions gets the profile's: KU critical (4 usages), EKU, SKI, AKI, CRL distribution point, CA:FALSE critical", async () => {
    const issued = (await call(v07, "POST", "/x509/v1/certificates", { csr: await csr("CN=plain") })).json as { certificatePem: string };
    const text = openssl("x509", "-in", pemFile(issued.certificatePem), "-noout", "-text");
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature, Non Repudiation, Key Encipherment, Key Agreement\n/);
    expect(text).toMatch(/X509v3 Extended Key Usage: \s+TLS Web Client Authentication, E-mail Protection, TLS Web Server Authentication\n/);
    expect(text).toMatch(/X509v3 Subject Key Identifier/);
    expect(text).toMatch(/X509v3 Authority Key Identifier/);
    expect(text).toMatch(/X509v3 CRL Distribution Points:\s+Full Name:\s+URI:http:\/\/x509-ejbca:8080\/ejbca\/publicweb\/webdist\/certdist\?cmd=crl&issuer=UID%3Dc-0/);
  });

  it("the CA is named as dojot's (O, OU, CN X509 Identity CA, a UID), RSA 4096, and no device certificate outlives it", async () => {
    const ca = (await call(v05, "GET", "/x509/v1/ca")).json as { caPem: string };
    const caFile = pemFile(ca.caPem);
    expect(openssl("x509", "-in", caFile, "-noout", "-subject").trim()).toMatch(/^subject=O = dojot IoT Platform, OU = Certificate Issuer, CN = X509 Identity CA, UID = c-0[0-9a-f]{16}$/);
    expect(openssl("x509", "-in", caFile, "-noout", "-text")).toMatch(/Public-Key: \(4096 bit\)/);
    const issued = (await call(v05, "POST", "/x509/v1/certificates", { csr: await csr("CN=abc") })).json as { certificatePem: string };
    const end = (file: string) => Date.parse(openssl("x509", "-in", file, "-noout", "-enddate").trim().replace("notAfter=", ""));
    expect(end(pemFile(issued.certificatePem))).toBeLessThanOrEqual(end(caFile));
    expect(openssl("verify", "-CAfile", caFile, pemFile(issued.certificatePem)).trim()).toMatch(/: OK$/);
  });
});

describe("the lab as a server", () => {
  it("one client that sends headers and never its body holds up no other request", async () => {
    const socket = connect(Number(new URL(v07.url).port), "127.0.0.1");
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    socket.write(`POST /auth HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{`);
    try {
      // Before, every request queued behind that body for the server's five-minute request timeout.
      const res = await fetch(`${v07.url}/x509/v1/ca`, { headers: { authorization: `Bearer ${v07.jwt}` }, signal: AbortSignal.timeout(5_000) });
      expect(res.status).toBe(200);
    } finally {
      socket.destroy();
    }
  });

  it("`lab serve` on a port in use is a usage error naming the address (exit 2)", async () => {
    const port = new URL(v07.url).port;
    const run = await runCli(["lab", "serve", "--dir", await tempDir(), "--listen", `127.0.0.1:${port}`]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(new RegExp(`cannot listen on --listen 127\\.0\\.0\\.1:${port}: 127\\.0\\.0\\.1:${port} is already in use`));
    expect(run.stderr).not.toMatch(/this is a bug/);
  });
});
