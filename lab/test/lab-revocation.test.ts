import { spawn, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { softwareCrypto, toPem } from "cert-retriever";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LAB_BIN, runCli, SECRETS } from "../../test/helpers/cli.js";
import { makeFactoryPki } from "../../test/helpers/factory-pki.js";
import { callLab, type LabWithJwt, startLabWithJwt, tempDir } from "../../test/helpers/lab.js";
import { startBroker } from "../../test/helpers/mosquitto.js";
import { haveTool, openssl } from "../../test/helpers/tools.js";
import { type LabOptions, setDevice } from "../src/server.js";
import { loadState, updateState } from "../src/state.js";
import * as x509 from "../src/x509.js";

/**
 * Revocation in the lab, as the platforms' code does it: x509-identity-mgmt's DELETE revokes a
 * certificate the platform issued (reason superseded) and serves EJBCA's latest CRL
 * (`CertificateService.deleteCertificate`, `EjbcaFacade.js` at dojot v0.7.0/v0.8.0;
 * `certificates-service.js`, `ejbca-facade.js` at v0.5.0); EJBCA-REST's `GET|PUT /ca/<name>/crl`
 * (`RESTmain.py` at ejbca-rest v0.4.3). Every CRL is checked with openssl against the CA.
 */
const password = "revocation-lab-password";
SECRETS.add(password);
const crypto = softwareCrypto();
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

const lab = (more: Partial<LabOptions> = {}) => startLabWithJwt(password, more);

/** A file in a fresh directory holding `text`. */
async function file(name: string, text: string): Promise<string> {
  const path = join(await tempDir("cr-rev-"), name);
  writeFileSync(path, text.endsWith("\n") ? text : `${text}\n`);
  return path;
}

/** A key and its PEM CSR (no trailing newline); RSA 2048 for EJBCA-REST's CFREE profile, else P-256. */
async function keyAndCsr(cn: string, rsa = false): Promise<{ csr: x509.Pkcs10CertificateRequest; key: string }> {
  const alg = rsa
    ? { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256", publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 }
    : { name: "ECDSA", namedCurve: "P-256" };
  const keys = (await crypto.subtle.generateKey(alg, true, ["sign", "verify"])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    { name: `CN=${cn}`, keys, signingAlgorithm: rsa ? alg : { name: "ECDSA", hash: "SHA-256" } },
    crypto,
  );
  return { csr, key: toPem(await crypto.subtle.exportKey("pkcs8", keys.privateKey), "PRIVATE KEY") };
}

/** `POST /x509/v1/certificates` with a new key's CSR: the fingerprint, the certificate and its key. */
async function issue(
  platform: LabWithJwt,
  cn: string,
): Promise<{ fp: string; pem: string; cert: x509.X509Certificate; key: string }> {
  const { csr, key } = await keyAndCsr(cn);
  const reply = await callLab(platform, "POST", "/x509/v1/certificates", { csr: csr.toString("pem").trimEnd() });
  expect(reply.status).toBe(201);
  const { certificateFingerprint: fp, certificatePem: pem } = reply.json as {
    certificateFingerprint: string;
    certificatePem: string;
  };
  return { fp, pem, cert: new x509.X509Certificate(pem), key };
}

async function caFile(platform: LabWithJwt): Promise<string> {
  return file("ca.pem", ((await callLab(platform, "GET", "/x509/v1/ca")).json as { caPem: string }).caPem);
}

/** `GET /x509/v1/ca/crl`: the PEM (as sent) and the parsed CRL. */
async function getCrl(platform: LabWithJwt): Promise<{ pem: string; crl: x509.X509Crl }> {
  const reply = await callLab(platform, "GET", "/x509/v1/ca/crl");
  expect(reply.status).toBe(200);
  const pem = (reply.json as { crl: string }).crl;
  return { pem, crl: new x509.X509Crl(pem) };
}

/** The CRL's number (the cRLNumber extension). */
function crlNumber(crl: x509.X509Crl): number {
  const ext = crl.extensions.find((e) => e.type === "2.5.29.20");
  expect(ext, "the CRL has a cRLNumber").toBeDefined();
  return Number.parseInt(Buffer.from(ext!.value).toString("hex").slice(4), 16); // INTEGER: tag, length, value
}

/** `openssl crl -CAfile`: exit status and what it printed (it says "verify OK" on stderr). */
function opensslCrlCheck(crl: string, ca: string, inform = "PEM"): { status: number | null; out: string } {
  const run = spawnSync("openssl", ["crl", "-inform", inform, "-in", crl, "-CAfile", ca, "-noout"], {
    encoding: "utf8",
  });
  return { status: run.status, out: `${run.stdout}${run.stderr}` };
}

/** `openssl verify -crl_check` of `cert` against the CA and the CRL, as mosquitto's `crlfile` checks a client. */
function verifyWithCrl(ca: string, crl: string, cert: string): { status: number | null; out: string } {
  const run = spawnSync("openssl", ["verify", "-crl_check", "-CAfile", ca, "-CRLfile", crl, cert], {
    encoding: "utf8",
  });
  return { status: run.status, out: `${run.stdout}${run.stderr}` };
}

describe("x509-identity-mgmt: DELETE revokes what the platform issued, and the CRL says so", () => {
  let forced: LabWithJwt;
  let plain: LabWithJwt;
  beforeAll(async () => {
    [forced, plain] = await Promise.all([lab({ forceCrlRenew: true }), lab()]);
  });
  afterAll(async () => Promise.all([forced.close(), plain.close()]));

  it("with forcecrlrenew: the deleted certificate is in the next CRL (superseded), signed by the CA, with AKI and CRL number; openssl verify -crl_check refuses it and accepts the other", async () => {
    const [gone, kept] = [await issue(forced, "gone"), await issue(forced, "kept")];
    const del = await fetch(`${forced.url}/x509/v1/certificates/${gone.fp}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${forced.jwt}` },
    });
    expect(del.status).toBe(204);
    expect(await del.text()).toBe("");
    // The record is gone (`findByIdAndDelete` before the revocation): a second DELETE finds nothing.
    const notFound = {
      error: `No records found for the following parameters: ${JSON.stringify({ fingerprint: gone.fp, tenant: "admin" })}`,
    };
    expect(await callLab(forced, "GET", `/x509/v1/certificates/${gone.fp}`)).toEqual({ status: 404, json: notFound });
    expect(await callLab(forced, "DELETE", `/x509/v1/certificates/${gone.fp}`)).toEqual({
      status: 404,
      json: notFound,
    });

    const ca = await caFile(forced);
    const { pem, crl } = await getCrl(forced);
    expect(pem).toMatch(
      /^-----BEGIN X509 CRL-----\n([A-Za-z0-9+/=]{64}\n)*[A-Za-z0-9+/=]{1,64}\n-----END X509 CRL-----$/,
    );
    const crlPath = await file("crl.pem", pem);
    const check = opensslCrlCheck(crlPath, ca);
    expect(check.out).toMatch(/verify OK/);
    expect(check.status).toBe(0);

    const text = openssl("crl", "-in", crlPath, "-noout", "-text");
    expect(text).toMatch(/Version 2 \(0x1\)/);
    expect(text).toMatch(/Signature Algorithm: sha256WithRSAEncryption/);
    expect(text).toMatch(
      /Issuer: UID = c-0[0-9a-f]{16}, CN = X509 Identity CA, OU = Certificate Issuer, O = dojot IoT Platform/,
    );
    expect(text).toMatch(
      new RegExp(
        `Serial Number: ${gone.cert.serialNumber.toUpperCase()}\\s+Revocation Date: [^\\n]+\\s+CRL entry extensions:\\s+X509v3 CRL Reason Code:\\s+Superseded`,
      ),
    );
    expect(text).not.toMatch(new RegExp(kept.cert.serialNumber, "i"));
    // AKI (the CA's subject key id), then the CRL number, as EJBCA's X509CA.generateCRL adds them.
    const caCert = new x509.X509Certificate(
      ((await callLab(forced, "GET", "/x509/v1/ca")).json as { caPem: string }).caPem,
    );
    const ski = caCert.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId.toUpperCase().match(/../g)!.join(":");
    expect(text).toMatch(
      new RegExp(`CRL extensions:\\s+X509v3 Authority Key Identifier:\\s+${ski}\\s+X509v3 CRL Number:\\s+\\d+`),
    );
    expect(crl.extensions.map((e) => e.type)).toEqual(["2.5.29.35", "2.5.29.20"]);
    // EJBCA_CRL_EXPIRE_PERIOD_DEVICES_CA: 1d.
    expect(crl.nextUpdate!.getTime() - crl.thisUpdate.getTime()).toBe(DAY);
    expect(crl.entries).toHaveLength(1);
    expect(crl.entries[0]!.reason).toBe(x509.X509CrlReason.superseded);

    const revoked = verifyWithCrl(ca, crlPath, await file("gone.pem", gone.pem));
    expect(revoked.out).toMatch(/certificate revoked/);
    expect(revoked.status).not.toBe(0);
    const good = verifyWithCrl(ca, crlPath, await file("kept.pem", kept.pem));
    expect(good.out).toMatch(/: OK\n/);
    expect(good.status).toBe(0);
  });

  it("with forcecrlrenew every request makes a CRL: its number moves on by two, as createCRL also makes a delta CRL (delta CRL period 1h)", async () => {
    const first = crlNumber((await getCrl(forced)).crl);
    const second = crlNumber((await getCrl(forced)).crl);
    expect(second).toBe(first + 2);
  });

  it("by default (forcecrlrenew false) the latest CRL is served unchanged until it is due; then the revocation shows", async () => {
    const before = await getCrl(plain);
    expect(crlNumber(before.crl)).toBe(1); // EJBCA's first CRL, made with the CA
    expect(before.crl.entries).toHaveLength(0);
    const gone = await issue(plain, "stale");
    expect((await callLab(plain, "DELETE", `/x509/v1/certificates/${gone.fp}`)).status).toBe(204);
    const after = await getCrl(plain);
    expect(after.pem).toBe(before.pem);
    // The lab's record of the revocation is there, waiting for the next CRL.
    expect((await loadState(plain.dir))!.revocations!.x509!.revoked).toEqual([
      { serial: gone.cert.serialNumber, revocationDate: expect.any(String), reason: 4 },
    ]);
    // Ten minutes before nextUpdate (the overlap time) the CRL Updater makes the next one.
    await updateState(
      plain.dir,
      (s) => (s.revocations!.x509!.crl!.nextUpdate = new Date(Date.now() + 9 * 60_000).toISOString()),
    );
    const due = await getCrl(plain);
    expect(crlNumber(due.crl)).toBe(2);
    expect(due.crl.entries.map((e) => e.serialNumber)).toEqual([gone.cert.serialNumber]);
    expect(opensslCrlCheck(await file("crl.pem", due.pem), await caFile(plain)).status).toBe(0);
  });

  it("a registered (external) certificate is only forgotten, never revoked", async () => {
    const pki = makeFactoryPki(await tempDir("cr-rev-pki-"));
    const fp = (
      (await callLab(forced, "POST", "/x509/v1/trusted-cas", { caPem: pki.rootPem })).json as { caFingerprint: string }
    ).caFingerprint;
    const leaf = pki.read(pki.issue("external"));
    const registered = await callLab(forced, "POST", "/x509/v1/certificates", {
      certificateChain: leaf + pki.intPem,
      caFingerprint: fp,
    });
    expect(registered.status).toBe(201);
    const leafFp = (registered.json as { certificateFingerprint: string }).certificateFingerprint;
    expect((await callLab(forced, "GET", `/x509/v1/certificates/${leafFp}`)).json).toMatchObject({
      issuedByDojotPki: false,
    });
    const revokedBefore = (await loadState(forced.dir))!.revocations!.x509!.revoked.length;
    expect((await callLab(forced, "DELETE", `/x509/v1/certificates/${leafFp}`)).status).toBe(204);
    expect((await callLab(forced, "GET", `/x509/v1/certificates/${leafFp}`)).status).toBe(404);
    expect((await loadState(forced.dir))!.revocations!.x509!.revoked).toHaveLength(revokedBefore);
    const serial = new x509.X509Certificate(leaf).serialNumber;
    expect((await getCrl(forced)).crl.entries.map((e) => e.serialNumber)).not.toContain(serial);
  });

  it("v0.5 rules: the same (certificates-service.js deleteCertificate at v0.5.0), with the colon fingerprint the v0.5 route needs", async () => {
    const v05 = await lab({ x509Rules: "v0.5", forceCrlRenew: true });
    try {
      const gone = await issue(v05, "old");
      expect((await callLab(v05, "DELETE", `/x509/v1/certificates/${gone.fp}`)).status).toBe(204);
      expect(await callLab(v05, "DELETE", `/x509/v1/certificates/${gone.fp}`)).toEqual({
        status: 404,
        json: {
          message: `No records found for the following parameters: ${JSON.stringify({ fingerprint: gone.fp, tenant: "admin" })}`,
        },
      });
      const { pem, crl } = await getCrl(v05);
      expect(crl.entries.map((e) => [e.serialNumber, e.reason])).toEqual([
        [gone.cert.serialNumber, x509.X509CrlReason.superseded],
      ]);
      expect(verifyWithCrl(await caFile(v05), await file("crl.pem", pem), await file("c.pem", gone.pem)).out).toMatch(
        /certificate revoked/,
      );
    } finally {
      await v05.close();
    }
  });
});

describe("certificate lifetime (LabOptions.certLifetime; lab serve --cert-lifetime)", () => {
  it("x509-identity-mgmt: 1h gives 1h rounded out to whole minutes; the default stays 365 days", async () => {
    const [short, usual] = await Promise.all([lab({ certLifetime: HOUR }), lab()]);
    try {
      const sent = Date.now();
      const { cert } = await issue(short, "brief");
      expect(cert.notAfter.getTime() - cert.notBefore.getTime()).toBeGreaterThanOrEqual(HOUR);
      expect(cert.notAfter.getTime() - cert.notBefore.getTime()).toBeLessThanOrEqual(HOUR + 60_000);
      expect(cert.notAfter.getTime()).toBeGreaterThanOrEqual(sent + HOUR);
      expect([cert.notBefore.getTime() % 60_000, cert.notAfter.getTime() % 60_000]).toEqual([0, 0]);
      const { cert: year } = await issue(usual, "year");
      expect(year.notAfter.getTime() - year.notBefore.getTime()).toBe(365 * DAY);
    } finally {
      await Promise.all([short.close(), usual.close()]);
    }
  });

  it("EJBCA-REST: 1h in place of CFREE's 730 days", async () => {
    const legacy = await lab({ api: "legacy", certLifetime: HOUR });
    try {
      await setDevice(legacy.dir, "dev1", "add");
      const { csr } = await keyAndCsr("dev1", true);
      const sent = Date.now();
      const reply = await callLab(legacy, "POST", "/sign/dev1/pkcs10", {
        passwd: "dojot",
        certificate: Buffer.from(csr.rawData).toString("base64"),
      });
      expect(reply.status).toBe(200);
      const cert = new x509.X509Certificate(
        Buffer.from((reply.json as { status: { data: string } }).status.data, "base64"),
      );
      expect(cert.notAfter.getTime()).toBeGreaterThanOrEqual(Math.floor(sent / 1000) * 1000 + HOUR);
      expect(cert.notAfter.getTime()).toBeLessThanOrEqual(Date.now() + HOUR);
    } finally {
      await legacy.close();
    }
  });

  it("lab serve --cert-lifetime 1h --force-crl-renew: a short-lived certificate, revoked at once; a duration without a unit is refused", async () => {
    const dir = await tempDir("cr-rev-serve-");
    const child = spawn(
      process.execPath,
      [
        LAB_BIN,
        "serve",
        "--dir",
        dir,
        "--listen",
        "127.0.0.1:0",
        "--api",
        "x509",
        "--cert-lifetime",
        "1h",
        "--force-crl-renew",
      ],
      {
        env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", CERT_RETRIEVER_LAB_PASSWORD: password },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    try {
      let stderr = "";
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const url = await new Promise<string>((resolve, reject) => {
        let out = "";
        child.stdout.on("data", (d: Buffer) => {
          out += d.toString();
          const m = /^(http:\/\/\S+)\n/m.exec(out);
          if (m) resolve(m[1]!);
        });
        child.on("exit", (code) => reject(new Error(`lab serve exited (${code}): ${stderr}`)));
      });
      expect(stderr).toMatch(/certificates valid 1h; a new CRL on every request/);
      const auth = await fetch(`${url}/auth`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ username: "admin", passwd: password }),
      });
      const platform = { url, dir, jwt: ((await auth.json()) as { jwt: string }).jwt } as LabWithJwt;
      const { fp, cert } = await issue(platform, "served");
      // x509-identity-mgmt's times are whole minutes: the end rounds up, so the certificate lasts 1h to 1h + 1 min.
      expect(cert.notAfter.getTime() - cert.notBefore.getTime()).toBeGreaterThanOrEqual(HOUR);
      expect(cert.notAfter.getTime() - cert.notBefore.getTime()).toBeLessThanOrEqual(HOUR + 60_000);
      expect((await callLab(platform, "DELETE", `/x509/v1/certificates/${fp}`)).status).toBe(204);
      expect((await getCrl(platform)).crl.entries.map((e) => e.serialNumber)).toEqual([cert.serialNumber]);
    } finally {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.on("exit", r)));
    }
    const refused = await runCli(["lab", "serve", "--dir", dir, "--listen", "127.0.0.1:0", "--cert-lifetime", "5"]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--cert-lifetime '5' has no unit/);
  });
});

describe("EJBCA-REST: GET|PUT /ca/<caName>/crl (RESTmain.py v0.4.3)", () => {
  let legacy: LabWithJwt;
  beforeAll(async () => {
    legacy = await lab({ api: "legacy" });
  });
  afterAll(async () => legacy.close());

  const caPemFile = async () =>
    file(
      "ca.pem",
      `-----BEGIN CERTIFICATE-----\n${((await callLab(legacy, "GET", "/ca/IOTmidCA")).json as { certificate: string }).certificate}\n-----END CERTIFICATE-----`,
    );

  it("{CRL: base64 DER on one line}, signed by IOTmidCA; unknown CA is EJBCA's fault; ?delta=true finds no delta CRL (Flask's 500)", async () => {
    const reply = await callLab(legacy, "GET", "/ca/IOTmidCA/crl");
    expect(reply.status).toBe(200);
    const b64 = (reply.json as { CRL: string }).CRL;
    expect(b64).toMatch(/^[A-Za-z0-9+/]+=*$/);
    const der = await file("crl.der", "");
    writeFileSync(der, Buffer.from(b64, "base64"));
    const check = opensslCrlCheck(der, await caPemFile(), "DER");
    expect(check.out).toMatch(/verify OK/);
    expect(check.status).toBe(0);
    const crl = new x509.X509Crl(Buffer.from(b64, "base64"));
    expect(crl.issuer).toBe("CN=IOTmidCA, O=EJBCA IOT, C=SE");
    expect(crlNumber(crl)).toBe(1);
    expect(crl.entries).toHaveLength(0);
    for (const method of ["GET", "PUT"]) {
      expect(await callLab(legacy, method, "/ca/NoSuchCA/crl")).toEqual({
        status: 400,
        json: { status: 400, message: "soap message: CA with name NoSuchCA does not exist." },
      });
    }
    const delta = await fetch(`${legacy.url}/ca/IOTmidCA/crl?delta=true`, {
      headers: { authorization: `Bearer ${legacy.jwt}` },
    });
    expect(delta.status).toBe(500);
    expect(await delta.text()).toMatch(/<title>500 Internal Server Error<\/title>/);
  });

  it("lists what IOTmidCA revoked once a new CRL is made (PUT: createCRL); an unspecified reason has no reasonCode", async () => {
    await setDevice(legacy.dir, "dev2", "add");
    const { csr } = await keyAndCsr("dev2", true);
    const signed = await callLab(legacy, "POST", "/sign/dev2/pkcs10", {
      passwd: "dojot",
      certificate: Buffer.from(csr.rawData).toString("base64"),
    });
    const certPem = `-----BEGIN CERTIFICATE-----\n${(signed.json as { status: { data: string } }).status.data}\n-----END CERTIFICATE-----`;
    const serial = new x509.X509Certificate(certPem).serialNumber;
    const ca = await caPemFile();
    // EJBCA-REST's revokeCert: the CA by its subject DN, the serial in hex, reason UNSPECIFIED by default.
    const issuer = encodeURIComponent("CN=IOTmidCA,O=EJBCA IOT,C=SE");
    expect(await callLab(legacy, "DELETE", `/ca/${issuer}/certificate/${serial}`)).toEqual({
      status: 200,
      json: { message: "ok", status: 200 },
    });
    const stale = (await callLab(legacy, "GET", "/ca/IOTmidCA/crl")).json as { CRL: string };
    expect(new x509.X509Crl(Buffer.from(stale.CRL, "base64")).entries).toHaveLength(0);
    expect(await callLab(legacy, "PUT", "/ca/IOTmidCA/crl")).toEqual({
      status: 200,
      json: { message: "ok", status: 200 },
    });
    const fresh = Buffer.from(
      ((await callLab(legacy, "GET", "/ca/IOTmidCA/crl")).json as { CRL: string }).CRL,
      "base64",
    );
    const crl = new x509.X509Crl(fresh);
    expect(crlNumber(crl)).toBe(2); // IOTmidCA makes no delta CRLs
    expect(crl.entries.map((e) => [e.serialNumber, e.reason])).toEqual([[serial, undefined]]);
    const crlPath = await file("crl.pem", x509.PemConverter.encode(fresh, "X509 CRL"));
    expect(openssl("crl", "-in", crlPath, "-noout", "-text")).not.toMatch(/CRL Reason Code/);
    // No crlEntryExtensions at all (BouncyCastle's addCRLEntry with reason 0), not an empty SEQUENCE.
    expect(openssl("asn1parse", "-in", crlPath)).not.toMatch(/l= *0 cons: SEQUENCE/);
    expect(opensslCrlCheck(crlPath, ca).status).toBe(0);
    expect(verifyWithCrl(ca, crlPath, await file("dev2.pem", certPem)).out).toMatch(/certificate revoked/);
  });
});

describe.skipIf(!haveTool("mosquitto") || !haveTool("mosquitto_pub"))("mosquitto with the lab's CRL as crlfile", () => {
  it("refuses the certificate DELETE revoked and accepts one that was not", async () => {
    const platform = await lab({ forceCrlRenew: true });
    try {
      const [gone, kept] = [await issue(platform, "gone"), await issue(platform, "kept")];
      expect((await callLab(platform, "DELETE", `/x509/v1/certificates/${gone.fp}`)).status).toBe(204);
      const broker = await startBroker(platform.dir, { api: "x509", crlPem: `${(await getCrl(platform)).pem}\n` });
      try {
        const publish = async (who: { pem: string; key: string }) => {
          const [cert, key] = [await file("c.pem", who.pem), await file("k.pem", who.key)];
          return spawnSync(
            "mosquitto_pub",
            [
              "-h",
              "localhost",
              "-p",
              String(broker.port),
              "--cafile",
              join(broker.dir, "tls", "ca.crt"),
              "--cert",
              cert,
              "--key",
              key,
              "-t",
              "t",
              "-m",
              "m",
              "-q",
              "1",
            ],
            { encoding: "utf8", timeout: 15_000 },
          );
        };
        const refused = await publish(gone);
        expect(refused.status, refused.stderr).not.toBe(0);
        const accepted = await publish(kept);
        expect(accepted.status, accepted.stderr).toBe(0);
      } finally {
        await broker.stop();
      }
    } finally {
      await platform.close();
    }
  });
});
