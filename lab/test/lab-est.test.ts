import { spawnSync } from "node:child_process";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { OIDS, softwareCrypto, toPem } from "cert-retriever";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeCsrAttrs, oidOf } from "../../src/keys/pkcs7.js";
import { runCli, SECRETS } from "../../test/helpers/cli.js";
import {
  b64,
  basic,
  type EstReply,
  estRequest,
  keyAndCsr,
  opensslAsync,
  type PkiRun,
  pkcs7Certs,
  runPki,
} from "../../test/helpers/est.js";
import { tempDir } from "../../test/helpers/lab.js";
import { issueLeaf, makeCa, type TestCa } from "../../test/helpers/pki.js";
import { haveTool, openssl } from "../../test/helpers/tools.js";
import { issueServerCertificate } from "../src/ca.js";
import { type EstLabOptions, type LabOptions, type RunningLab, readEstIssued, startLab } from "../src/server.js";
import * as x509 from "../src/x509.js";

/**
 * The lab's EST server against RFC 7030 (as RFC 8951 corrects it), over real TLS on 127.0.0.1:
 * every route and refusal by raw HTTPS, every PKCS#7 it returns read by openssl, and strongSwan's
 * `pki --estca`/`--est` (an EST client written without this project in mind) enrolling,
 * re-enrolling and waiting out a 202 against it.
 */
const hasOpenssl = haveTool("openssl");
const hasPki = haveTool("pki") && pkiMakesEcdsa();

/** Whether strongSwan's pki has its openssl plugin (Debian: libstrongswan-standard-plugins, only recommended by strongswan-pki), without which it makes no ECDSA key and speaks no ECDHE. */
function pkiMakesEcdsa(): boolean {
  if (spawnSync("pki", ["--gen", "--type", "ecdsa", "--size", "256"], { timeout: 10_000 }).status === 0) return true;
  const why =
    "strongSwan's pki cannot make an ECDSA key: its openssl plugin (libstrongswan-standard-plugins) is missing";
  if (process.env.CI === "true") throw new Error(`${why}; .ci/run should install it`);
  console.warn(`\n!!! SKIPPING the strongSwan tests: ${why}. CI installs it. !!!\n`);
  return false;
}
const password = "est-lab-test-password";
SECRETS.add(password);
const crypto = softwareCrypto();

let dir: string;
let work: string;
let lab: RunningLab;
let base: string;
let rootPem: string;
let rootFile: string;
let issuingFile: string;
let factory: TestCa;
let foreign: TestCa;
const others: RunningLab[] = [];

/** Another EST lab on the same directory (same CAs and users), with `est` as its settings. */
async function estLab(est: EstLabOptions, more: Partial<LabOptions> = {}): Promise<RunningLab> {
  const running = await startLab({
    dir,
    host: "127.0.0.1",
    port: 0,
    crypto,
    certProfile: "cfree",
    autoRegister: false,
    adminPassword: password,
    tokenLifetime: 420,
    api: "est",
    est,
    ...more,
  });
  others.push(running);
  return running;
}

/** A file in the work directory holding `text`. */
async function file(name: string, text: string | Uint8Array): Promise<string> {
  const path = join(work, name);
  await writeFile(path, text);
  return path;
}

const post = (
  url: string,
  body: string,
  headers: Record<string, string> = {},
  tls: { cert?: string; key?: string } = {},
) =>
  estRequest(url, rootPem, {
    method: "POST",
    body,
    headers: { "content-type": "application/pkcs10", ...headers },
    ...tls,
  });
const admin = { authorization: basic("admin", password) };

/** The single certificate of a 200 enrollment reply, after checking the reply's form (RFC 7030 §4.2.3). */
function issued(reply: EstReply): x509.X509Certificate {
  expect(reply.status, reply.body).toBe(200);
  expect(reply.headers["content-type"]).toBe("application/pkcs7-mime; smime-type=certs-only");
  expect(reply.headers["content-transfer-encoding"]).toBe("base64");
  expect(reply.body).toMatch(/^[A-Za-z0-9+/]+={0,2}$/); // RFC 4648 base64: one line
  const certs = pkcs7Certs(reply.body, work);
  expect(certs).toHaveLength(1);
  return new x509.X509Certificate(certs[0]!);
}

/** A text/plain refusal with `status`. */
function refused(reply: EstReply, status: number, text: RegExp): void {
  expect(reply.status, reply.body).toBe(status);
  expect(reply.headers["content-type"]).toBe("text/plain; charset=utf-8");
  expect(reply.body).toMatch(text);
}

beforeAll(async () => {
  dir = await tempDir("cr-estlab-");
  work = await tempDir("cr-estwork-");
  [factory, foreign] = await Promise.all([makeCa("Factory Bootstrap CA"), makeCa("Lab EST Issuing CA")]);
  lab = await startLab({
    dir,
    host: "127.0.0.1",
    port: 0,
    crypto,
    certProfile: "cfree",
    autoRegister: false,
    adminPassword: password,
    tokenLifetime: 420,
    api: "est",
    est: { labels: ["line-4"], bootstrapCas: [factory.pem] },
  });
  base = lab.estUrl!;
  rootPem = toPem(lab.estCa!.root.cert.rawData, "CERTIFICATE");
  rootFile = await file("root.pem", rootPem);
  issuingFile = await file("issuing.pem", toPem(lab.estCa!.issuing.cert.rawData, "CERTIFICATE"));
});
afterAll(async () => {
  await Promise.all([lab?.close(), ...others.map((o) => o.close())]);
  // The lab's CA keys and the devices' keys go with them.
  await Promise.all([dir, work].map((d) => d && rm(d, { recursive: true, force: true })));
});

describe.skipIf(!hasOpenssl)("the EST PKI (RFC 7030 §3.3.1, §4.1.3)", () => {
  it("a root and an issuing CA under it, kept in the lab directory; the TLS server presents its certificate and the issuing CA, names loopback and speaks TLS 1.2", async () => {
    expect(await readFile(join(dir, "est-root-ca.crt"), "utf8")).toBe(rootPem);
    expect(openssl("x509", "-in", rootFile, "-noout", "-subject", "-issuer")).toBe(
      "subject=CN = Lab EST Root CA, O = cert-retriever lab\nissuer=CN = Lab EST Root CA, O = cert-retriever lab\n",
    );
    const text = openssl("x509", "-in", issuingFile, "-noout", "-text");
    expect(text).toContain("Issuer: CN = Lab EST Root CA, O = cert-retriever lab");
    expect(text).toMatch(/CA:TRUE, pathlen:0/);
    expect(text).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign\n/);
    expect(openssl("verify", "-CAfile", rootFile, issuingFile)).toContain(": OK");
    const { port } = new URL(base);
    const shown = await opensslAsync(
      "s_client",
      "-connect",
      `127.0.0.1:${port}`,
      "-showcerts",
      "-CAfile",
      rootFile,
      "-verify_return_error",
      "-verify_ip",
      "127.0.0.1",
      "-tls1_2",
    );
    expect(shown).toMatch(/Verify return code: 0 \(ok\)/);
    expect(shown).toMatch(/1 s:CN = Lab EST Issuing CA, O = cert-retriever lab/);
  });
});

describe.skipIf(!hasOpenssl)("routes under /.well-known/est (RFC 7030 §3.2.2)", () => {
  it("GET cacerts: no authentication, application/pkcs7-mime, base64 in one line of a certs-only PKCS#7 holding the issuing CA and the root", async () => {
    const reply = await estRequest(`${base}/cacerts`, rootPem);
    expect(reply.status).toBe(200);
    expect(reply.headers["content-type"]).toBe("application/pkcs7-mime");
    expect(reply.headers["content-transfer-encoding"]).toBe("base64");
    expect(reply.body).toMatch(/^[A-Za-z0-9+/]+={0,2}$/);
    const certs = pkcs7Certs(reply.body, work);
    expect(certs.map((c) => new x509.X509Certificate(c).subject)).toEqual([
      "CN=Lab EST Issuing CA, O=cert-retriever lab",
      "CN=Lab EST Root CA, O=cert-retriever lab",
    ]);
    expect(certs[1]).toBe(rootPem);
  });

  it("a configured CA label serves the same; an unknown label, an unknown operation and the optional fullcmc are 404; a wrong method is 405 with Allow", async () => {
    expect((await estRequest(`${base}/line-4/cacerts`, rootPem)).status).toBe(200);
    refused(await estRequest(`${base}/line-5/cacerts`, rootPem), 404, /the CA label 'line-5' is unknown here/);
    refused(await estRequest(`${base}/cacert`, rootPem), 404, /not an EST operation/);
    refused(await post(`${base}/fullcmc`, "", admin), 404, /not an EST operation/);
    refused(await estRequest(`${new URL(base).origin}/cacerts`, rootPem), 404, /not an EST operation/);
    const wrong = await post(`${base}/cacerts`, "");
    refused(wrong, 405, /cacerts takes GET/);
    expect(wrong.headers.allow).toBe("GET");
    expect((await estRequest(`${base}/simpleenroll`, rootPem)).headers.allow).toBe("POST");
  });

  it("GET csrattrs, per setting: none is 204; ec-p256, ec-p384 (with §4.5.2's macAddress extension request) and rsa as application/csrattrs", async () => {
    const none = await estRequest(`${base}/csrattrs`, rootPem);
    expect(none.status).toBe(204);
    expect(none.body).toBe("");
    const attrs = async (kind: "ec-p256" | "ec-p384" | "rsa") => {
      const reply = await estRequest(`${(await estLab({ csrAttrs: kind })).estUrl}/csrattrs`, rootPem);
      expect(reply.status).toBe(200);
      expect(reply.headers["content-type"]).toBe("application/csrattrs");
      expect(reply.headers["content-transfer-encoding"]).toBe("base64");
      return decodeCsrAttrs(new Uint8Array(Buffer.from(reply.body, "base64"))).map((a) =>
        "oid" in a ? a.oid : { [a.attribute]: a.values.map((v) => oidOf(v)) },
      );
    };
    expect(await attrs("ec-p256")).toEqual([{ [OIDS.ecPublicKey]: [OIDS.secp256r1] }, OIDS.ecdsaWithSHA256]);
    expect(await attrs("ec-p384")).toEqual([
      { [OIDS.ecPublicKey]: [OIDS.secp384r1] },
      { [OIDS.extensionRequest]: ["1.3.6.1.1.1.1.22"] },
      OIDS.ecdsaWithSHA384,
    ]);
    expect(await attrs("rsa")).toEqual([OIDS.rsaEncryption]);
  });
});

describe.skipIf(!hasOpenssl)("simpleenroll (RFC 7030 §4.2.1, §4.2.3)", () => {
  it("HTTP Basic as a lab user: the CSR's subject and SANs, clientAuth, from the issuing CA, 365 days, in a certs-only PKCS#7 of that certificate alone; recorded as basic:admin", async () => {
    const { der } = await keyAndCsr("CN=dev-basic, O=Acme", { sans: [{ type: "dns", value: "dev-basic.example" }] });
    const cert = issued(await post(`${base}/simpleenroll`, b64(der), admin));
    const path = await file("basic.pem", toPem(cert.rawData, "CERTIFICATE"));
    expect(openssl("x509", "-in", path, "-noout", "-subject", "-issuer")).toBe(
      "subject=CN = dev-basic, O = Acme\nissuer=CN = Lab EST Issuing CA, O = cert-retriever lab\n",
    );
    const text = openssl("x509", "-in", path, "-noout", "-text");
    expect(text).toMatch(/Extended Key Usage: \n\s+TLS Web Client Authentication/);
    expect(text).toMatch(/Key Usage: critical\n\s+Digital Signature\n/);
    expect(text).toContain("DNS:dev-basic.example");
    expect(cert.notAfter.getTime() - cert.notBefore.getTime()).toBe(365 * 86_400_000 + 60_000);
    expect(openssl("verify", "-CAfile", rootFile, "-untrusted", issuingFile, "-purpose", "sslclient", path)).toContain(
      ": OK",
    );
    expect((await readEstIssued(dir)).find((r) => r.serial === cert.serialNumber)).toMatchObject({
      auth: "basic:admin",
      subject: "CN=dev-basic, O=Acme",
    });
  });

  it("the body in 76-character CRLF lines (MIME's base64) is read, white space ignored (RFC 8951 §3.1); an RSA key gets keyEncipherment too", async () => {
    const { der } = await keyAndCsr("CN=dev-rsa", { alg: "rsa" });
    const cert = issued(await post(`${base}/simpleenroll`, b64(der, true), admin));
    const text = openssl("x509", "-in", await file("rsa.pem", toPem(cert.rawData, "CERTIFICATE")), "-noout", "-text");
    expect(text).toMatch(/Key Usage: critical\n\s+Digital Signature, Key Encipherment\n/);
  });

  it("a client certificate from a bootstrap CA (a factory certificate) or from the issuing CA authenticates without a password; recorded as client-cert:<serial>", async () => {
    const boot = await issueLeaf(factory, "dev-factory", [], "client");
    const first = issued(await post(`${base}/simpleenroll`, b64((await keyAndCsr("CN=dev-factory")).der), {}, boot));
    const bootSerial = new x509.X509Certificate(boot.cert).serialNumber;
    expect((await readEstIssued(dir)).find((r) => r.serial === first.serialNumber)?.auth).toBe(
      `client-cert:${bootSerial}`,
    );
    const { der, key } = await keyAndCsr("CN=dev-factory");
    const own = issued(await post(`${base}/simpleenroll`, b64(der), admin));
    const again = issued(
      await post(
        `${base}/simpleenroll`,
        b64((await keyAndCsr("CN=dev-factory")).der),
        {},
        { cert: toPem(own.rawData, "CERTIFICATE"), key },
      ),
    );
    expect((await readEstIssued(dir)).find((r) => r.serial === again.serialNumber)?.auth).toBe(
      `client-cert:${own.serialNumber}`,
    );
  });

  it("refusals: 401 with WWW-Authenticate Basic for no, wrong or foreign credentials; 415 for another content type; 400 for a bad signature, no CN, or a key /csrattrs did not ask for", async () => {
    const { der } = await keyAndCsr("CN=dev-refused");
    for (const reply of [
      await post(`${base}/simpleenroll`, b64(der)),
      await post(`${base}/simpleenroll`, b64(der), { authorization: basic("admin", "wrong") }),
      await post(`${base}/simpleenroll`, b64(der), { authorization: basic("nobody", password) }),
      await post(`${base}/simpleenroll`, b64(der), {}, await issueLeaf(foreign, "dev-refused", [], "client")),
    ]) {
      refused(reply, 401, /./);
      expect(reply.headers["www-authenticate"]).toBe('Basic realm="estrealm"');
    }
    refused(
      await post(`${base}/simpleenroll`, b64(der), {}, await issueLeaf(foreign, "x", [], "client")),
      401,
      /not from a CA this server accepts/,
    );
    refused(
      await post(`${base}/simpleenroll`, b64(der), { ...admin, "content-type": "application/json" }),
      415,
      /not application\/pkcs10/,
    );
    refused(await post(`${base}/simpleenroll`, "not base64!", admin), 400, /not base64/);
    const tampered = new Uint8Array(der);
    tampered[tampered.length - 1]! ^= 0x01;
    refused(await post(`${base}/simpleenroll`, b64(tampered), admin), 400, /signature \(popo\)/);
    refused(await post(`${base}/simpleenroll`, b64((await keyAndCsr("O=Acme")).der), admin), 400, /has no CN/);
    const p384 = await estLab({ csrAttrs: "ec-p384" });
    refused(
      await post(`${p384.estUrl}/simpleenroll`, b64(der), admin),
      400,
      /the CSR's key is ec-p256, but \/csrattrs asks for ec-p384/,
    );
    issued(
      await post(`${p384.estUrl}/simpleenroll`, b64((await keyAndCsr("CN=dev-p384", { alg: "ec-p384" })).der), admin),
    );
  });

  it("manual approval: 202 with Retry-After the first N times for the same request, known by its key and subject, then the certificate; 'forever' never issues", async () => {
    const pending = await estLab({ pending: 1, retryAfter: 3 });
    const { der, keys } = await keyAndCsr("CN=dev-pending");
    const wait = await post(`${pending.estUrl}/simpleenroll`, b64(der), admin);
    refused(wait, 202, /awaits manual approval; repeat it in 3 s/);
    expect(wait.headers["retry-after"]).toBe("3");
    // The same request signed again (an ECDSA signature differs each time): still the same request (RFC 7030 §4.2.3; libest keys it by the public key).
    const again = await x509.Pkcs10CertificateRequestGenerator.create(
      { name: "CN=dev-pending", keys, signingAlgorithm: { name: "ECDSA", hash: "SHA-256" } },
      crypto,
    );
    expect(Buffer.from(again.rawData)).not.toEqual(Buffer.from(der));
    issued(await post(`${pending.estUrl}/simpleenroll`, b64(again.rawData, true), admin)); // however wrapped
    const forever = await estLab({ pending: "forever" });
    for (let i = 0; i < 3; i++)
      expect((await post(`${forever.estUrl}/simpleenroll`, b64(der), admin)).status).toBe(202);
  });
});

describe.skipIf(!hasOpenssl)("simplereenroll (RFC 7030 §4.2.2)", () => {
  let current: { cert: string; key: string; serial: string };
  beforeAll(async () => {
    const { der, key } = await keyAndCsr("CN=dev-renew, O=Acme", {
      sans: [{ type: "dns", value: "dev-renew.example" }],
    });
    const cert = issued(await post(`${base}/simpleenroll`, b64(der), admin));
    current = { cert: toPem(cert.rawData, "CERTIFICATE"), key, serial: cert.serialNumber };
  });

  it("the current certificate over TLS re-keys: same subject and SANs, a new key; recorded as reenroll:<serial>", async () => {
    const { der } = await keyAndCsr("CN=dev-renew, O=Acme", { sans: [{ type: "dns", value: "dev-renew.example" }] });
    const renewed = issued(await post(`${base}/simplereenroll`, b64(der), {}, current));
    const old = new x509.X509Certificate(current.cert);
    expect(Buffer.from(renewed.subjectName.toArrayBuffer())).toEqual(Buffer.from(old.subjectName.toArrayBuffer()));
    expect(Buffer.from(renewed.publicKey.rawData)).not.toEqual(Buffer.from(old.publicKey.rawData));
    expect((await readEstIssued(dir)).find((r) => r.serial === renewed.serialNumber)?.auth).toBe(
      `reenroll:${current.serial}`,
    );
  });

  it("refusals: no client certificate (Basic does not do) 401; a bootstrap or foreign certificate 403; another subject or subjectAltName 400", async () => {
    const same = b64(
      (await keyAndCsr("CN=dev-renew, O=Acme", { sans: [{ type: "dns", value: "dev-renew.example" }] })).der,
    );
    const none = await post(`${base}/simplereenroll`, same, admin);
    refused(none, 401, /needs the TLS client certificate being renewed/);
    expect(none.headers["www-authenticate"]).toBe('Basic realm="estrealm"');
    refused(
      await post(`${base}/simplereenroll`, same, {}, await issueLeaf(factory, "dev-renew", [], "client")),
      403,
      /not from a CA this server accepts/,
    );
    refused(
      await post(`${base}/simplereenroll`, same, {}, await issueLeaf(foreign, "dev-renew", [], "client")),
      403,
      /not from a CA this server accepts/,
    );
    // A certificate of the issuing CA that may not authenticate a TLS client (a broker's, serverAuth only): refused as OpenSSL's sslclient purpose refuses it.
    const broker = await issueServerCertificate(lab.estCa!.issuing, [{ type: "dns", value: "broker.example" }], crypto);
    refused(await post(`${base}/simplereenroll`, same, {}, broker), 403, /extendedKeyUsage lacks clientAuth/);
    refused(await post(`${base}/simpleenroll`, same, {}, broker), 401, /extendedKeyUsage lacks clientAuth/);
    // A client certificate of the issuing CA that this server never enrolled: nothing to renew.
    const strayKeys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
      "sign",
      "verify",
    ])) as CryptoKeyPair;
    const strayCert = await x509.X509CertificateGenerator.create(
      {
        subject: "CN=dev-renew, O=Acme",
        issuer: lab.estCa!.issuing.cert.subjectName,
        publicKey: strayKeys.publicKey,
        signingKey: lab.estCa!.issuing.key,
        signingAlgorithm: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + 86_400_000),
        extensions: [
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
          new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "dev-renew.example" }]),
        ],
      },
      crypto,
    );
    const stray = {
      cert: toPem(strayCert.rawData, "CERTIFICATE"),
      key: toPem(await crypto.subtle.exportKey("pkcs8", strayKeys.privateKey), "PRIVATE KEY"),
    };
    refused(await post(`${base}/simplereenroll`, same, {}, stray), 403, /was not issued by this EST server/);
    refused(
      await post(
        `${base}/simplereenroll`,
        b64((await keyAndCsr("CN=dev-other, O=Acme", { sans: [{ type: "dns", value: "dev-renew.example" }] })).der),
        {},
        current,
      ),
      400,
      /subject 'CN=dev-other, O=Acme' differs/,
    );
    refused(
      await post(
        `${base}/simplereenroll`,
        b64((await keyAndCsr("O=Acme, CN=dev-renew", { sans: [{ type: "dns", value: "dev-renew.example" }] })).der),
        {},
        current,
      ),
      400,
      /subject .* differs/,
    );
    refused(
      await post(`${base}/simplereenroll`, b64((await keyAndCsr("CN=dev-renew, O=Acme")).der), {}, current),
      400,
      /subjectAltName differs/,
    );
  });
});

describe.skipIf(!hasOpenssl)("EST faults (--fault est-cacerts:KIND, est-enroll:KIND)", () => {
  it("malformed-pkcs7, wrong-ca (same names, other keys), wrapped-base64, and a transport fault", async () => {
    const faulty = await estLab(
      {},
      {
        faults: [
          { route: "est-cacerts", kind: "malformed-pkcs7", times: 1 },
          { route: "est-cacerts", kind: "wrong-ca", times: 1 },
          { route: "est-cacerts", kind: "wrapped-base64", times: 1 },
          { route: "est-enroll", kind: "wrong-ca", times: 1 },
          { route: "est-enroll", kind: "503", times: 1 },
        ],
      },
    );
    const url = `${faulty.estUrl}/cacerts`;
    const malformed = (await estRequest(url, rootPem)).body;
    expect(() => pkcs7Certs(malformed, work)).toThrow();
    const wrong = pkcs7Certs((await estRequest(url, rootPem)).body, work);
    expect(wrong.map((c) => new x509.X509Certificate(c).subject)).toEqual([
      "CN=Lab EST Issuing CA, O=cert-retriever lab",
      "CN=Lab EST Root CA, O=cert-retriever lab",
    ]);
    expect(wrong[1]).not.toBe(rootPem);
    const wrapped = await estRequest(url, rootPem);
    expect(wrapped.body).toMatch(/^([A-Za-z0-9+/]{64}\r\n)+[A-Za-z0-9+/]{1,63}={0,2}\r\n$/);
    expect(pkcs7Certs(wrapped.body, work)[1]).toBe(rootPem);
    const { der } = await keyAndCsr("CN=dev-fault");
    const foreignIssued = issued(await post(`${faulty.estUrl}/simpleenroll`, b64(der), admin));
    expect(foreignIssued.issuer).toBe("CN=Lab EST Issuing CA, O=cert-retriever lab");
    const foreignFile = await file("foreign.pem", toPem(foreignIssued.rawData, "CERTIFICATE"));
    expect(() => openssl("verify", "-CAfile", rootFile, "-untrusted", issuingFile, foreignFile)).toThrow();
    const busy = await post(`${faulty.estUrl}/simpleenroll`, b64(der), admin);
    expect(busy.status).toBe(503);
    expect(busy.headers["content-type"]).toBe("text/plain; charset=utf-8"); // an EST server's shape, not dojot's gateway JSON
    issued(await post(`${faulty.estUrl}/simpleenroll`, b64(der), admin));
  });

  it("a fault on a route it cannot strike, or an est-* fault with no EST server, is refused at start (exit 2), not ignored", async () => {
    const lab = await tempDir("cr-estfault-");
    try {
      const wrongRoute = await runCli([
        "lab",
        "serve",
        "--dir",
        lab,
        "--listen",
        "127.0.0.1:0",
        "--api",
        "est",
        "--fault",
        "sign:malformed-pkcs7",
      ]);
      expect([wrongRoute.code, wrongRoute.stderr]).toEqual([
        2,
        expect.stringContaining("malformed-pkcs7 strikes only est-cacerts, est-enroll"),
      ]);
      const noEst = await runCli([
        "lab",
        "serve",
        "--dir",
        lab,
        "--listen",
        "127.0.0.1:0",
        "--fault",
        "est-cacerts:garbage",
      ]);
      expect([noEst.code, noEst.stderr]).toEqual([2, expect.stringContaining("need an EST server")]);
    } finally {
      await rm(lab, { recursive: true, force: true });
    }
  });
});

/**
 * strongSwan 5.9.8's `pki` as the client. Its URL is the server's origin: it appends
 * `/.well-known/est/<operation>` itself, and this version has no CA labels. It writes the
 * certificate to stdout.
 */
describe.skipIf(!hasOpenssl || !hasPki)("strongSwan pki --estca / --est against the lab", () => {
  const runs: PkiRun[] = [];
  let origin: string;
  const pki = async (args: string[]) => {
    const run = await runPki(args);
    runs.push(run);
    return run;
  };
  /** A key and a CSR made by strongSwan (`pki --gen`, `pki --req`, DER). */
  const strongswanCsr = async (name: string, dn: string, san: string) => {
    const key = join(work, `${name}.key`);
    const csr = join(work, `${name}.csr`);
    const gen = await runPki(["--gen", "--type", "ecdsa", "--size", "256", "--outform", "pem"]);
    expect(gen.code, gen.stderr).toBe(0);
    await writeFile(key, gen.stdout);
    const req = await runPki(["--req", "--in", key, "--type", "ecdsa", "--dn", dn, "--san", san, "--outform", "pem"]);
    expect(req.code, req.stderr).toBe(0);
    await writeFile(csr, req.stdout);
    return { key, csr };
  };
  const verify = (cert: string) =>
    openssl("verify", "-CAfile", rootFile, "-untrusted", issuingFile, "-purpose", "sslclient", cert);
  beforeAll(() => {
    origin = new URL(base).origin;
  });
  afterAll(async () => {
    if (process.env.CR_PKI_TRANSCRIPT) {
      const shown = (args: string[]) => args.join(" ").replaceAll(password, "<password>");
      await writeFile(
        process.env.CR_PKI_TRANSCRIPT,
        runs.map((r) => `$ pki ${shown(r.args)}\nexit ${r.code}\n${r.stderr.trim()}\n`).join("\n"),
        { mode: 0o600 },
      );
    }
  });

  it("pki --estca fetches /cacerts: the root (trusted through --cacert) and the issuing CA, written as PEM", async () => {
    const out = join(work, "estca");
    await mkdir(out);
    const run = await pki([
      "--estca",
      "--url",
      origin,
      "--cacert",
      rootFile,
      "--caout",
      join(out, "ca.pem"),
      "--outform",
      "pem",
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('Root CA cert "CN=Lab EST Root CA, O=cert-retriever lab"');
    expect(run.stderr).toMatch(/Sub CA cert is trusted, valid until .*, written to '.*ca-1\.pem'/);
    expect(await readFile(join(out, "ca.pem"), "utf8")).toBe(rootPem);
    expect(openssl("x509", "-in", join(out, "ca-1.pem"), "-noout", "-subject")).toBe(
      "subject=CN = Lab EST Issuing CA, O = cert-retriever lab\n",
    );
  });

  it("pki --est with --userpass enrolls a CSR made by pki --req; then pki --est with --cert/--key re-enrolls by TLS client certificate; openssl verifies both", async () => {
    const first = await strongswanCsr("ss1", "CN=ss-device, O=Acme", "ss-device.example");
    const enroll = await pki([
      "--est",
      "--url",
      origin,
      "--in",
      first.csr,
      "--cacert",
      rootFile,
      "--userpass",
      `admin:${password}`,
      "--outform",
      "pem",
    ]);
    expect(enroll.code, enroll.stderr).toBe(0);
    expect(enroll.stderr).toContain('Issued certificate "CN=ss-device, O=Acme"');
    const cert1 = await file("ss1.crt", enroll.stdout);
    expect(openssl("x509", "-in", cert1, "-noout", "-subject", "-issuer")).toBe(
      "subject=CN = ss-device, O = Acme\nissuer=CN = Lab EST Issuing CA, O = cert-retriever lab\n",
    );
    expect(openssl("x509", "-in", cert1, "-noout", "-ext", "subjectAltName")).toContain("DNS:ss-device.example");
    expect(verify(cert1)).toContain(": OK");
    const serial1 = new x509.X509Certificate(enroll.stdout).serialNumber;
    expect((await readEstIssued(dir)).find((r) => r.serial === serial1)?.auth).toBe("basic:admin");

    const second = await strongswanCsr("ss2", "CN=ss-device, O=Acme", "ss-device.example");
    const renew = await pki([
      "--est",
      "--url",
      origin,
      "--in",
      second.csr,
      "--cacert",
      rootFile,
      "--cacert",
      issuingFile,
      "--cert",
      cert1,
      "--key",
      first.key,
      "--outform",
      "pem",
    ]);
    expect(renew.code, renew.stderr).toBe(0);
    expect(renew.stderr).toContain("sending TLS client certificate 'CN=ss-device, O=Acme'");
    expect(renew.stderr).toMatch(/Issued certificate is trusted/);
    const cert2 = await file("ss2.crt", renew.stdout);
    expect(openssl("x509", "-in", cert2, "-noout", "-subject", "-issuer")).toBe(
      "subject=CN = ss-device, O = Acme\nissuer=CN = Lab EST Issuing CA, O = cert-retriever lab\n",
    );
    expect(verify(cert2)).toContain(": OK");
    const serial2 = new x509.X509Certificate(renew.stdout).serialNumber;
    expect((await readEstIssued(dir)).find((r) => r.serial === serial2)?.auth).toBe(`reenroll:${serial1}`);
  });

  it("pki --est waits out a 202 (Retry-After 1, --interval 1) and stores the certificate of the repeated request", async () => {
    const pending = await estLab({ pending: 1, retryAfter: 1 });
    const { csr } = await strongswanCsr("ss3", "CN=ss-pending", "ss-pending.example");
    const started = Date.now();
    const run = await pki([
      "--est",
      "--url",
      new URL(pending.estUrl!).origin,
      "--in",
      csr,
      "--cacert",
      rootFile,
      "--userpass",
      `admin:${password}`,
      "--interval",
      "1",
      "--maxpolltime",
      "10",
      "--outform",
      "pem",
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain("EST request pending, polling every 1 seconds up to 10 seconds");
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(verify(await file("ss3.crt", run.stdout))).toContain(": OK");
  });

  it("pki --est refused: a wrong password (401), re-enrollment with a factory certificate (403), another subject (400); exit 1 and nothing on stdout", async () => {
    const { key, csr } = await strongswanCsr("ss4", "CN=ss-refused", "ss-refused.example");
    const wrong = await pki([
      "--est",
      "--url",
      origin,
      "--in",
      csr,
      "--cacert",
      rootFile,
      "--userpass",
      "admin:wrong",
      "--outform",
      "pem",
    ]);
    expect([wrong.code, wrong.stdout]).toEqual([1, ""]);
    expect(wrong.stderr).toContain("EST request failed: HTTP 401");
    const boot = await issueLeaf(factory, "ss-refused", [], "client");
    const bootCert = await file("boot.crt", boot.cert);
    const bootKey = await file("boot.key", boot.key);
    const foreignRenew = await pki([
      "--est",
      "--url",
      origin,
      "--in",
      csr,
      "--cacert",
      rootFile,
      "--cert",
      bootCert,
      "--key",
      bootKey,
      "--outform",
      "pem",
    ]);
    expect([foreignRenew.code, foreignRenew.stdout]).toEqual([1, ""]);
    expect(foreignRenew.stderr).toContain("EST request failed: HTTP 403");
    const enroll = await pki([
      "--est",
      "--url",
      origin,
      "--in",
      csr,
      "--cacert",
      rootFile,
      "--userpass",
      `admin:${password}`,
      "--outform",
      "pem",
    ]);
    expect(enroll.code, enroll.stderr).toBe(0);
    const other = await strongswanCsr("ss5", "CN=ss-someone-else", "ss-refused.example");
    const mismatch = await pki([
      "--est",
      "--url",
      origin,
      "--in",
      other.csr,
      "--cacert",
      rootFile,
      "--cert",
      await file("ss4.crt", enroll.stdout),
      "--key",
      key,
      "--outform",
      "pem",
    ]);
    expect([mismatch.code, mismatch.stdout]).toEqual([1, ""]);
    expect(mismatch.stderr).toContain("EST request failed: HTTP 400");
  });
});
