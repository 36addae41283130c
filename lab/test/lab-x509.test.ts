import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { softwareCrypto } from "cert-retriever";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { noRoute } from "../../src/protocols/dojot-auto/client.js";
import { runCli, SECRETS } from "../../test/helpers/cli.js";
import { enrollCli } from "../../test/helpers/enroll.js";
import { makeFactoryPki } from "../../test/helpers/factory-pki.js";
import { callLab, type LabWithJwt, startLabWithJwt, tempDir } from "../../test/helpers/lab.js";
import { openssl } from "../../test/helpers/tools.js";
import { type LabOptions, setDevice } from "../src/server.js";
import * as x509 from "../src/x509.js";

/**
 * The lab's x509-identity-mgmt answers as the real service's code does at its tags (dojot/dojot
 * `x509-identity-mgmt/js` v0.5.0, `iam/x509-identity-mgmt/js` v0.7.0/v0.8.0); the expected bodies
 * below are what that code (ajv 6, http-errors, the SDK's error handler) sends.
 */
const password = "x509-fidelity-password";
SECRETS.add(password);
const crypto = softwareCrypto();

type Lab = LabWithJwt;
const lab = (x509Rules: "v0.5" | "v0.7", more: Partial<LabOptions> = {}) =>
  startLabWithJwt(password, { x509Rules, ...more });
const call = callLab;

/** A PEM CSR (no trailing newline, as the agent sends it) for `name`, with extensions if given. */
async function csr(name: string, extensions: x509.Extension[] = []): Promise<string> {
  const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
  return (
    await x509.Pkcs10CertificateRequestGenerator.create(
      { name, keys, signingAlgorithm: { name: "ECDSA", hash: "SHA-256" }, extensions },
      crypto,
    )
  )
    .toString("pem")
    .trimEnd();
}

/** A secp256k1 CSR from openssl (WebCrypto has no such curve). */
function secp256k1Csr(): string {
  const dir = execFileSync("mktemp", ["-d"], { encoding: "utf8" }).trim();
  openssl(
    "req",
    "-new",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:secp256k1",
    "-nodes",
    "-keyout",
    join(dir, "k"),
    "-subj",
    "/CN=abc",
    "-out",
    join(dir, "csr"),
  );
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
      json: {
        message:
          "Error checking SubjectDN 'CN' attribute in CSR. The value does not match the regular expression: /^[0-9A-Za-z ]{1,255}$/. Found: dev-1",
      },
    });
  });

  it("v0.5: a CSR's own O is accepted and overwritten; 'Found:' lists every attribute, the constant O first", async () => {
    const ok = await call(v05, "POST", "/x509/v1/certificates", { csr: await csr("O=Acme, CN=abc") });
    expect(ok.status).toBe(201);
    const pem = (ok.json as { certificatePem: string }).certificatePem;
    expect(openssl("x509", "-in", pemFile(pem), "-noout", "-subject").trim()).toBe(
      "subject=O = dojot IoT Platform, CN = admin:abc",
    );
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
    const { certificateFingerprint, certificatePem } = ok.json as {
      certificateFingerprint: string;
      certificatePem: string;
    };
    expect(openssl("x509", "-in", pemFile(certificatePem), "-noout", "-subject").trim()).toBe(
      "subject=O = dojot IoT Platform, CN = abc",
    );
    const record = await call(v07, "GET", `/x509/v1/certificates/${certificateFingerprint}`);
    expect(record.json).toMatchObject({ subjectDN: "CN=abc, O=dojot IoT Platform", tenant: "admin" });
    expect(record.json).not.toHaveProperty("belongsTo"); // unbound: v0.8 keeps none (see "records and lists" below)
    const plain = await call(v07, "POST", "/x509/v1/certificates", { csr: await csr("CN=xyz") });
    const again = await call(
      v07,
      "GET",
      `/x509/v1/certificates/${(plain.json as { certificateFingerprint: string }).certificateFingerprint}`,
    );
    expect(again.json).toMatchObject({ subjectDN: "CN=xyz, O=dojot IoT Platform" });
  });
});

describe("keys, signatures and error shapes (pki-utils.js v0.5.0, pkiUtils.js v0.8.0, the SDK's error handler)", () => {
  it("a secp256k1 key is a 400 naming the curve rule, in each generation's shape", async () => {
    const text =
      "The elliptical curve used in the ECDSA public key algorithm is not supported. (Use the NIST-recommended curves: P-256, P-384 or P-521)";
    const pem = secp256k1Csr();
    expect(await call(v05, "POST", "/x509/v1/certificates", { csr: pem })).toEqual({
      status: 400,
      json: { message: text },
    });
    expect(await call(v07, "POST", "/x509/v1/certificates", { csr: pem })).toEqual({
      status: 400,
      json: { error: text },
    });
  });

  it("a CSR whose signature does not verify reaches EJBCA and comes back as the generic 500 (the service has no text of its own for it)", async () => {
    const der = Buffer.from(x509.PemConverter.decodeFirst(await csr("CN=abc")));
    der[der.length - 5]! ^= 0xff; // inside the signature
    const pem = x509.PemConverter.encode(der, "CERTIFICATE REQUEST").trimEnd();
    expect(await call(v07, "POST", "/x509/v1/certificates", { csr: pem })).toEqual({
      status: 500,
      json: { error: "An unexpected error has occurred." },
    });
    expect(await call(v05, "POST", "/x509/v1/certificates", { csr: pem })).toEqual({
      status: 500,
      json: { message: "An unexpected error has occurred." },
    });
  });

  it("schema failures are ajv 6's errors under the real $ids: {} on v0.5 reports the oneOf of certificatePem and csr", async () => {
    const oneOf = (external: string) => [
      {
        keyword: "required",
        dataPath: "",
        schemaPath: "#/oneOf/0/required",
        params: { missingProperty: external },
        message: `should have required property '${external}'`,
      },
      {
        keyword: "required",
        dataPath: "",
        schemaPath: "#/oneOf/1/required",
        params: { missingProperty: "csr" },
        message: "should have required property 'csr'",
      },
      {
        keyword: "oneOf",
        dataPath: "",
        schemaPath: "#/oneOf",
        params: { passingSchemas: null },
        message: "should match exactly one schema in oneOf",
      },
    ];
    expect(await call(v05, "POST", "/x509/v1/certificates", {})).toEqual({
      status: 400,
      json: { schema$id: "http://www.dojot.com.br/schemas/reg-or-gen-cert", schemaErrors: oneOf("certificatePem") },
    });
    const v07Id = "https://raw.githubusercontent.com/dojot/dojot/development/iam/x509-identity-mgmt/js/schemas";
    expect(await call(v07, "POST", "/x509/v1/certificates", {})).toEqual({
      status: 400,
      json: {
        error: "Input data schema validation failure.",
        detail: { schemaId: `${v07Id}/register-or-generate-certificate.json`, schemaErrors: oneOf("certificateChain") },
      },
    });
    const pattern = (await call(v07, "POST", "/x509/v1/certificates", { csr: "nope" })).json as {
      detail: { schemaErrors: unknown[] };
    };
    expect(pattern.detail.schemaErrors).toEqual([
      expect.objectContaining({
        keyword: "pattern",
        dataPath: ".csr",
        schemaPath: `${v07Id}/defs.json#/definitions/csr/pattern`,
        message: expect.stringMatching(/^should match pattern "\^-\{5\}BEGIN CERTIFICATE REQUEST/),
      }),
    ]);
  });

  it("an unknown route is JSON in both generations ({message|error: 'Not Found'}), which auto-detection reads as 'no route'", async () => {
    for (const [platform, body] of [
      [v05, { message: "Not Found" }],
      [v07, { error: "Not Found" }],
    ] as const) {
      const res = await fetch(`${platform.url}/x509/v1/no-such-route`, {
        method: "PATCH",
        headers: { authorization: `Bearer ${platform.jwt}` },
      });
      expect(res.status).toBe(404);
      expect(res.headers.get("content-type")).toMatch(/^application\/json/);
      const text = await res.text();
      expect(JSON.parse(text)).toEqual(body);
      expect(noRoute({ status: 404, contentType: "application/json", text })).toBe(true);
    }
    // An API refusing is not "no route".
    expect(
      noRoute({
        status: 404,
        contentType: "application/json",
        text: '{"message":"No records found for the following parameters: {}"}',
      }),
    ).toBe(false);
  });
});

describe("binding (PATCH /certificates/:fingerprint)", () => {
  it("v0.5: belongsTo.device must be ten hex digits; the fingerprint is only upper-cased, so without colons it is not found", async () => {
    expect(await call(v05, "PATCH", "/x509/v1/certificates/AB", { belongsTo: { device: "f60c28" } })).toEqual({
      status: 400,
      json: {
        schema$id: "http://www.dojot.com.br/schemas/ch-owner-cert",
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
    const issued = (await call(v05, "POST", "/x509/v1/certificates", { csr: await csr("CN=abc") })).json as {
      certificateFingerprint: string;
    };
    const bare = issued.certificateFingerprint.replace(/:/g, "").toLowerCase();
    expect(await call(v05, "PATCH", `/x509/v1/certificates/${bare}`, { belongsTo: { device: "f60c28aa01" } })).toEqual({
      status: 404,
      json: {
        message: `No records found for the following parameters: {"fingerprint":"${bare.toUpperCase()}","tenant":"admin"}`,
      },
    });
    expect(
      (
        await call(v05, "PATCH", `/x509/v1/certificates/${issued.certificateFingerprint}`, {
          belongsTo: { device: "f60c28aa01" },
        })
      ).status,
    ).toBe(204);
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
  it("a CSR without extensions gets the profile's, in the order and form of the certificates the real service issued", async () => {
    const issued = (await call(v07, "POST", "/x509/v1/certificates", { csr: await csr("CN=plain") })).json as {
      certificatePem: string;
    };
    const text = openssl("x509", "-in", pemFile(issued.certificatePem), "-noout", "-text");
    // As in apidocs/api-description.apib at v0.5.0 (openssl -text of its example certificates).
    expect([...text.matchAll(/X509v3 ([A-Za-z ]+?):/g)].map((m) => m[1]).filter((n) => n !== "extensions")).toEqual([
      "Basic Constraints",
      "Authority Key Identifier",
      "Freshest CRL",
      "Extended Key Usage",
      "CRL Distribution Points",
      "Subject Key Identifier",
      "Key Usage",
    ]);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(
      /X509v3 Key Usage: critical\s+Digital Signature, Non Repudiation, Key Encipherment, Key Agreement\n/,
    );
    expect(text).toMatch(/X509v3 Extended Key Usage: \s+TLS Web Client Authentication, E-mail Protection\n/);
    expect(text).toMatch(
      /X509v3 Freshest CRL: \s+Full Name:\s+URI:http:\/\/x509-ejbca:8080\/ejbca\/publicweb\/webdist\/certdist\?cmd=deltacrl&issuer=UID%3Dc-0[0-9a-f]{16}%2CCN%3DX509%20Identity%20CA%2COU%3DCertificate%20Issuer%2CO%3Ddojot%20IoT%20Platform\n/,
    );
    expect(text).toMatch(
      /X509v3 CRL Distribution Points: \s+Full Name:\s+URI:http:\/\/x509-ejbca:8080\/ejbca\/publicweb\/webdist\/certdist\?cmd=crl&issuer=UID%3Dc-0\w+%2CCN%3DX509%20Identity%20CA%2COU%3DCertificate%20Issuer%2CO%3Ddojot%20IoT%20Platform\s+CRL Issuer:\s+DirName:UID = c-0\w+, CN = X509 Identity CA, OU = Certificate Issuer, O = dojot IoT Platform/,
    );
    expect(text).toMatch(/Not Before: .+:\d\d:00 \d{4} GMT/); // EJBCA keeps the times to the minute
  });

  it("the CA is named as dojot's (UID, CN X509 Identity CA, OU, O, in that order), RSA 4096, 30 years, pathlen 0; no device certificate outlives it", async () => {
    const ca = (await call(v05, "GET", "/x509/v1/ca")).json as { caPem: string };
    const caFile = pemFile(ca.caPem);
    expect(openssl("x509", "-in", caFile, "-noout", "-subject").trim()).toMatch(
      /^subject=UID = c-0[0-9a-f]{16}, CN = X509 Identity CA, OU = Certificate Issuer, O = dojot IoT Platform$/,
    );
    const text = openssl("x509", "-in", caFile, "-noout", "-text");
    expect(text).toMatch(/Public-Key: \(4096 bit\)/);
    expect(text).toMatch(/CA:TRUE, pathlen:0/);
    const end = (file: string) =>
      Date.parse(openssl("x509", "-in", file, "-noout", "-enddate").trim().replace("notAfter=", ""));
    expect(Math.round((end(caFile) - Date.now()) / 86_400_000)).toBe(10_950);
    const issued = (await call(v05, "POST", "/x509/v1/certificates", { csr: await csr("CN=abc") })).json as {
      certificatePem: string;
    };
    expect(end(pemFile(issued.certificatePem))).toBeLessThanOrEqual(end(caFile));
    expect(openssl("verify", "-CAfile", caFile, pemFile(issued.certificatePem)).trim()).toMatch(/: OK$/);
  });
});

describe("routes and parameters as Express and the real handlers treat them", () => {
  it("the CRL, the list, removing an owner (v0.7), a CA certificate refused for registration, bad parameters and bodies", async () => {
    const crl = (await call(v07, "GET", "/x509/v1/ca/crl")).json as { crl: string };
    expect(openssl("crl", "-in", pemFile(crl.crl), "-noout", "-issuer").trim()).toMatch(/CN = X509 Identity CA/);
    await setDevice(v07.dir, "f00d01", "add");
    const issued = (
      await call(v07, "POST", "/x509/v1/certificates", { csr: await csr("CN=listed"), belongsTo: { device: "f00d01" } })
    ).json as { certificateFingerprint: string };
    const listed = (await call(v07, "GET", "/x509/v1/certificates?limit=1")).json as {
      paging: { limitPerPage: number; totalItems: number };
      certificates: { fingerprint: string }[];
    };
    expect(listed.paging.limitPerPage).toBe(1);
    expect(listed.certificates).toHaveLength(1);
    expect((await call(v07, "DELETE", `/x509/v1/certificates/${issued.certificateFingerprint}/belongsto`)).status).toBe(
      204,
    );
    expect((await call(v07, "GET", `/x509/v1/certificates/${issued.certificateFingerprint}`)).json).toMatchObject({
      belongsTo: {},
    });
    expect(
      (await call(v05, "DELETE", `/x509/v1/certificates/${issued.certificateFingerprint}/belongsto`)).json,
    ).toEqual({ message: "Not Found" });
    const caPem = ((await call(v07, "GET", "/x509/v1/ca")).json as { caPem: string }).caPem;
    // `assertLeaf` comes before the search for the root CA (CertificateService.registerCertificate at v0.7.0).
    expect(await call(v07, "POST", "/x509/v1/certificates", { certificateChain: caPem })).toEqual({
      status: 400,
      json: {
        error:
          "The certificate is a CA certificate. It contains the flag 'CA:TRUE' in the extension 'Basic Constraints'.",
      },
    });
    expect(
      (
        await call(v05, "POST", "/x509/v1/certificates", {
          certificatePem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
        })
      ).json,
    ).toEqual({ message: "This operation is not available yet" });
    // sanitizeFingerprint on one character throws (a 500); a bad escape is Express's 400.
    expect(await call(v07, "GET", "/x509/v1/certificates/a")).toEqual({
      status: 500,
      json: { error: "An unexpected error has occurred." },
    });
    expect(await call(v05, "GET", "/x509/v1/certificates/%zz")).toEqual({
      status: 400,
      json: { message: "Failed to decode param '%zz'" },
    });
    // asn1js cannot read it: 400; it can but it is no CSR: pkijs throws, a 500.
    const pem = (b64: string) => `-----BEGIN CERTIFICATE REQUEST-----\n${b64}\n-----END CERTIFICATE REQUEST-----`;
    expect(
      await call(v05, "POST", "/x509/v1/certificates", {
        csr: pem(Buffer.from("3003020500", "hex").toString("base64")),
      }),
    ).toEqual({ status: 400, json: { message: "Can not parse ASN1 data structure from binary data" } });
    expect(
      (
        await call(v05, "POST", "/x509/v1/certificates", {
          csr: pem(Buffer.from("3003020105", "hex").toString("base64")),
        })
      ).status,
    ).toBe(500);
    const raw = await fetch(`${v05.url}/x509/v1/certificates`, {
      method: "POST",
      headers: { authorization: `Bearer ${v05.jwt}`, "content-type": "application/json" },
      body: "  5",
    });
    expect([raw.status, await raw.json()]).toEqual([400, { message: "Unexpected token 5 in JSON at position 2" }]);
  });
});

describe("records and lists as the services' code and its libraries answer them", () => {
  const V05 = ["issuedByDojotPki", "autoRegistered", "fingerprint", "pem", "belongsTo", "tenant", "createdAt"];
  const V08 = [
    "issuedByDojotPki",
    "autoRegistered",
    "fingerprint",
    "pem",
    "subjectDN",
    "validity",
    "tenant",
    "createdAt",
    "modifiedAt",
  ];
  const issue = async (platform: Lab, subject: string, more: object = {}) =>
    (
      (await call(platform, "POST", "/x509/v1/certificates", { csr: await csr(subject), ...more })).json as {
        certificateFingerprint: string;
      }
    ).certificateFingerprint;
  const record = async (platform: Lab, fp: string) =>
    (await call(platform, "GET", `/x509/v1/certificates/${fp}`)).json as Record<string, unknown>;
  const list = async (platform: Lab, query: string) =>
    (await call(platform, "GET", `/x509/v1/certificates?${query}`)).json as {
      paging: Record<string, unknown>;
      certificates: Record<string, unknown>[];
    };

  it("v0.5 (certificates-service.js, db.js at v0.5.0; mongoose 5.9.12): the fields in the stored order, belongsTo {} when unbound; a binding adds no modifiedAt", async () => {
    const fp = await issue(v05, "CN=order5");
    const unbound = await record(v05, fp);
    expect(Object.keys(unbound)).toEqual(V05);
    expect(unbound).toMatchObject({
      issuedByDojotPki: true,
      autoRegistered: false,
      fingerprint: fp,
      belongsTo: {},
      tenant: "admin",
    });
    expect(
      (await call(v05, "PATCH", `/x509/v1/certificates/${fp}`, { belongsTo: { device: "0123456789" } })).status,
    ).toBe(204);
    const bound = await record(v05, fp);
    expect(Object.keys(bound)).toEqual(V05);
    expect(bound.belongsTo).toEqual({ device: "0123456789" });
    expect((await list(v05, `fingerprint=${fp}`)).certificates).toEqual([bound]);
  });

  it("v0.7 (CertificateService.js, CertificateModel.js at v0.8.0; mongoose 5.12.0): an unbound record has no belongsTo and a modifiedAt from its creation; a later binding comes last", async () => {
    const fp = await issue(v07, "CN=order7");
    const unbound = await record(v07, fp);
    expect(Object.keys(unbound)).toEqual(V08);
    expect(Object.keys(unbound.validity as object)).toEqual(["notBefore", "notAfter"]);
    expect(unbound.modifiedAt).toBe(unbound.createdAt);
    await setDevice(v07.dir, "beef01", "add");
    expect((await call(v07, "PATCH", `/x509/v1/certificates/${fp}`, { belongsTo: { device: "beef01" } })).status).toBe(
      204,
    );
    const bound = await record(v07, fp);
    expect(Object.keys(bound)).toEqual([...V08, "belongsTo"]); // MongoDB's $set appends a field the document lacks
    expect(bound.belongsTo).toEqual({ device: "beef01" });
    expect(Date.parse(bound.modifiedAt as string)).toBeGreaterThanOrEqual(Date.parse(bound.createdAt as string));
    // Bound when issued: belongsTo where generateCertificate's model names it, after pem.
    const atOnce = await record(v07, await issue(v07, "CN=order7b", { belongsTo: { device: "beef01" } }));
    expect(Object.keys(atOnce)).toEqual([
      "issuedByDojotPki",
      "autoRegistered",
      "fingerprint",
      "pem",
      "belongsTo",
      "subjectDN",
      "validity",
      "tenant",
      "createdAt",
      "modifiedAt",
    ]);
    expect((await list(v07, "limit=250")).certificates.find((c) => c.fingerprint === fp)).toEqual(bound);
  });

  it("GET /certificates: v0.5 filters by the query's fields (db.js's whitelist, mongo-querystring 4.1.1), v0.8 by ?keyVal= alone; the paging URLs keep the query (express-paginate 1.0's href)", async () => {
    const [a, b] = [await issue(v05, "CN=filterA"), await issue(v05, "CN=filterB")];
    const only = await list(v05, `fingerprint=${a}`);
    expect(only.certificates.map((c) => c.fingerprint)).toEqual([a]);
    expect(only.paging).toEqual({
      previous: null,
      current: { number: 1, url: `/api/v1/certificates?fingerprint=${encodeURIComponent(a)}&page=1&limit=25` },
      next: null,
      totalItems: 1,
      totalPages: 1,
      limitPerPage: 25,
    });
    expect((await list(v05, `fingerprint=${b}&issuedByDojotPki=true`)).certificates.map((c) => c.fingerprint)).toEqual([
      b,
    ]);
    expect((await list(v05, `fingerprint=${b}&issuedByDojotPki=false`)).certificates).toEqual([]);
    // A repeated key is qs's array: $in, with "!" a $nin.
    const both = await list(v05, `fingerprint=!${a}&fingerprint=${b}`);
    expect(both.certificates.map((c) => c.fingerprint)).toEqual([b]);
    expect((both.paging.current as { url: string }).url).toBe(
      `/api/v1/certificates?fingerprint%5B0%5D=${encodeURIComponent(`!${a}`).replace("!", "%21")}&fingerprint%5B1%5D=${encodeURIComponent(b)}&page=1&limit=25`,
    );
    const all = (await list(v07, "limit=1")).paging.totalItems as number;
    const ignored = await list(v07, `fingerprint=${a}&limit=1`); // v0.8 reads keyVal only
    expect(ignored.paging.totalItems).toBe(all);
    expect((ignored.paging.current as { url: string }).url).toBe(
      `/api/v1/certificates?fingerprint=${encodeURIComponent(a)}&limit=1&page=1`,
    );
    const every = (await list(v07, "limit=250")).certificates;
    const fp7 = every[0]!.fingerprint as string;
    // CommonModel.handleFilterField: pairs split at ',', each at '=', ':' or '|'; `null` is "missing"; the tenant is the token's.
    expect((await list(v07, "keyVal=issuedByDojotPki=true,tenant=other")).paging.totalItems).toBe(
      every.filter((c) => c.issuedByDojotPki === true).length,
    );
    expect((await list(v07, "keyVal=pem=null")).paging.totalItems).toBe(0);
    await setDevice(v07.dir, "beef02", "add");
    const owned = await issue(v07, "CN=owned", { belongsTo: { device: "beef02" } });
    expect((await list(v07, "keyVal=belongsTo.device:beef02")).certificates.map((c) => c.fingerprint)).toEqual([owned]);
    expect((await list(v07, `keyVal=fingerprint=${fp7}`)).paging.totalItems).toBe(0); // its colons split it too: only "fingerprint=XX" is left
    // limit=0: v0.5's paginate.js makes it 1, the SDK's (v0.8) the default 25; page 2 of one per page links back to page 1.
    expect((await list(v05, "limit=0")).paging.limitPerPage).toBe(1);
    expect((await list(v07, "limit=0")).paging.limitPerPage).toBe(25);
    const second = await list(v05, "page=2&limit=1");
    expect(second.paging.previous).toEqual({ number: 1, url: "/api/v1/certificates?page=1&limit=1" });
    expect(second.paging.current).toEqual({ number: 2, url: "/api/v1/certificates?page=2&limit=1" });
  });

  it("a trusted CA's record (TrustedCAModel.js, TrustedCAService.js at v0.8.0) in the stored order, as apidocs/api-description.apib shows it", async () => {
    const pki = makeFactoryPki(await tempDir("cr-trust-order-"), "Order Root CA");
    const { caFingerprint } = (await call(v07, "POST", "/x509/v1/trusted-cas", { caPem: pki.rootPem })).json as {
      caFingerprint: string;
    };
    expect(Object.keys((await call(v07, "GET", `/x509/v1/trusted-cas/${caFingerprint}`)).json as object)).toEqual([
      "allowAutoRegistration",
      "caFingerprint",
      "caPem",
      "subjectDN",
      "validity",
      "tenant",
      "createdAt",
      "modifiedAt",
    ]);
  });
});

describe("trusted CAs and registered certificates, as TrustedCAService and CertificateService (v0.7.0) answer", () => {
  it("a trusted CA: one self-signed root per request, once per tenant, listed; v0.5.0's stubs answer Express's status text", async () => {
    const pki = makeFactoryPki(await tempDir("cr-trust-"));
    expect((await call(v07, "POST", "/x509/v1/trusted-cas", { caPem: pki.rootPem + pki.intPem })).json).toEqual({
      error: "Only one CA certificate is expected per request.",
    });
    expect((await call(v07, "POST", "/x509/v1/trusted-cas", { caPem: pki.intPem })).json).toEqual({
      error: "The certificate is not a Root CA certificate (not self signed).",
    });
    expect((await call(v07, "POST", "/x509/v1/trusted-cas", { caPem: pki.read(pki.issue("leaf")) })).json).toEqual({
      error:
        "The certificate is not a CA certificate. It does not contain the flag 'CA:TRUE' in the extension 'Basic Constraints'.",
    });
    expect((await call(v07, "POST", "/x509/v1/trusted-cas", {})).json).toMatchObject({
      error: "Input data schema validation failure.",
      detail: { schemaErrors: [{ keyword: "required", params: { missingProperty: "caPem" } }] },
    });
    const added = await call(v07, "POST", "/x509/v1/trusted-cas", { caPem: pki.rootPem, allowAutoRegistration: true });
    const fp = openssl("x509", "-in", join(pki.dir, "root.crt"), "-noout", "-fingerprint", "-sha256")
      .trim()
      .replace(/^.*=/, "");
    expect(added).toEqual({ status: 201, json: { caFingerprint: fp } });
    expect(await call(v07, "POST", "/x509/v1/trusted-cas", { caPem: pki.rootPem })).toEqual({
      status: 409,
      json: { error: `The certificate with fingerprint '${fp}' already exists.` },
    });
    const listed = (await call(v07, "GET", "/x509/v1/trusted-cas")).json as {
      paging: { totalItems: number };
      "trusted-cas": { caFingerprint: string; allowAutoRegistration: boolean; subjectDN: string }[];
    };
    expect(listed["trusted-cas"].find((ca) => ca.caFingerprint === fp)).toMatchObject({
      allowAutoRegistration: true,
      subjectDN: "O=Acme, CN=Factory Root CA",
    });
    expect(
      (
        await call(v07, "PATCH", `/x509/v1/trusted-cas/${fp.replace(/:/g, "").toLowerCase()}`, {
          allowAutoRegistration: false,
        })
      ).status,
    ).toBe(204);
    expect((await call(v07, "GET", `/x509/v1/trusted-cas/${fp}`)).json).toMatchObject({
      caFingerprint: fp,
      allowAutoRegistration: false,
      tenant: "admin",
    });
    const v05Post = await fetch(`${v05.url}/x509/v1/trusted-cas`, {
      method: "POST",
      headers: { authorization: `Bearer ${v05.jwt}`, "content-type": "application/json" },
      body: JSON.stringify({ caPem: pki.rootPem.trimEnd() }),
    });
    expect([v05Post.status, await v05Post.text()]).toEqual([201, "Created"]);

    // Registration against it: the chain of trust (pkijs's engine), a mismatched caFingerprint, the validity.
    await setDevice(v07.dir, "f00d02", "add");
    const stranger = makeFactoryPki(await tempDir("cr-trust-"), "Stranger Root CA");
    const foreign = stranger.read(stranger.issue("foreign"));
    expect(
      await call(v07, "POST", "/x509/v1/certificates", {
        certificateChain: foreign,
        caFingerprint: fp,
        belongsTo: { device: "f00d02" },
      }),
    ).toEqual({
      status: 400,
      json: {
        error: "The certificate chain of trust is not valid.",
        detail: { chainOfTrustResult: "No valid certificate paths found" },
      },
    });
    expect(
      (
        await call(v07, "POST", "/x509/v1/certificates", {
          certificateChain: foreign + stranger.intPem + stranger.rootPem,
          caFingerprint: fp,
        })
      ).json,
    ).toEqual({
      error:
        "The fingerprint of the CA defined in the payload of the request does not match the fingerprint of the certificate of the root CA that was also informed in the certificate chain.",
    });
    const expired = pki.read(pki.issue("expired", { days: -1 }));
    expect(
      (await call(v07, "POST", "/x509/v1/certificates", { certificateChain: expired + pki.intPem + pki.rootPem })).json,
    ).toEqual({ error: "The certificate expired 2 days ago." });
    const leaf = pki.read(pki.issue("f00d02"));
    const registered = await call(v07, "POST", "/x509/v1/certificates", {
      certificateChain: leaf + pki.intPem,
      caFingerprint: fp.replace(/:/g, ""),
      belongsTo: { device: "f00d02" },
    });
    expect(registered).toMatchObject({
      status: 201,
      json: { certificateFingerprint: expect.stringMatching(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/) },
    });
    // A CA with certificates registered by hand under it stays.
    expect((await call(v07, "DELETE", `/x509/v1/trusted-cas/${fp}`)).json).toEqual({
      error:
        "There are certificates dependent on the CA to be removed, however these certificates are not marked as 'autoRegistered'. Therefore, they must be removed manually before removing their CA certificate.",
    });
    expect(
      (
        await call(
          v07,
          "DELETE",
          `/x509/v1/certificates/${(registered.json as { certificateFingerprint: string }).certificateFingerprint}`,
        )
      ).status,
    ).toBe(204);
    expect((await call(v07, "DELETE", `/x509/v1/trusted-cas/${fp}`)).status).toBe(204);
    expect((await call(v07, "GET", `/x509/v1/trusted-cas/${fp}`)).status).toBe(404);
  });
});

describe("the lab as a server", () => {
  it("one client that sends headers and never its body holds up no other request", async () => {
    const socket = connect(Number(new URL(v07.url).port), "127.0.0.1");
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    socket.write(`POST /auth HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{`);
    try {
      // Before, every request queued behind that body for the server's five-minute request timeout.
      const res = await fetch(`${v07.url}/x509/v1/ca`, {
        headers: { authorization: `Bearer ${v07.jwt}` },
        signal: AbortSignal.timeout(5_000),
      });
      expect(res.status).toBe(200);
    } finally {
      socket.destroy();
    }
  });

  it("`lab serve` on a port in use is a usage error naming the address (exit 2)", async () => {
    const port = new URL(v07.url).port;
    const run = await runCli(["lab", "serve", "--dir", await tempDir(), "--listen", `127.0.0.1:${port}`]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(
      new RegExp(`cannot listen on --listen 127\\.0\\.0\\.1:${port}: 127\\.0\\.0\\.1:${port} is already in use`),
    );
    expect(run.stderr).not.toMatch(/this is a bug/);
  });
});
