import { softwareCrypto } from "cert-retriever";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestLab, type TestLab } from "../../test/helpers/lab.js";
import { loadState } from "../src/state.js";
import * as x509 from "../src/x509.js";

/**
 * EJBCA-REST's end-entity and revocation routes (ejbca-rest v0.4.3 over EJBCA 6.3.1.1) and what
 * the lab counts as issued: a certificate issued under a fault is issued all the same, so the
 * rerun after a failure past submit-csr meets the status the real EJBCA has.
 */
const crypto = softwareCrypto();
const IOTMIDCA_DN = "CN=IOTmidCA,O=EJBCA IOT,C=SE";

/** One call with the lab's JWT: status and raw text (`type` sets the content type, `body` a string is sent as is). */
async function call(
  lab: TestLab,
  jwt: string,
  method: string,
  path: string,
  body?: unknown,
  type = "application/json",
): Promise<{ status: number; text: string }> {
  const res = await fetch(`${lab.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${jwt}`, "content-type": type },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, text: await res.text() };
}

async function login(lab: TestLab): Promise<string> {
  const res = await fetch(`${lab.url}/auth`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: "admin", passwd: lab.password }),
  });
  return ((await res.json()) as { jwt: string }).jwt;
}

/** A base64 DER CSR with a 2048-bit RSA key, as CFREE takes it. */
async function csr(): Promise<string> {
  const alg = {
    name: "RSASSA-PKCS1-v1_5",
    hash: "SHA-256",
    publicExponent: new Uint8Array([1, 0, 1]),
    modulusLength: 2048,
  };
  const keys = (await crypto.subtle.generateKey(alg, false, ["sign", "verify"])) as CryptoKeyPair;
  const req = await x509.Pkcs10CertificateRequestGenerator.create(
    { name: "CN=ignored", keys, signingAlgorithm: alg },
    crypto,
  );
  return Buffer.from(req.rawData).toString("base64");
}

/** `POST /sign/<id>/pkcs10`: the status, the text, and the certificate when one came. */
async function sign(lab: TestLab, jwt: string, id: string, passwd = "dojot") {
  const reply = await call(lab, jwt, "POST", `/sign/${id}/pkcs10`, { passwd, certificate: await csr() });
  const data = reply.status === 200 ? (JSON.parse(reply.text) as { status: { data: string } }).status.data : undefined;
  return { ...reply, cert: data === undefined ? undefined : new x509.X509Certificate(Buffer.from(data, "base64")) };
}

const generated = (id: string) =>
  `{"status":400,"message":"soap message: Got request with status GENERATED (40), NEW, FAILED or INPROCESS required: ${id}."}`;

/** `GET /user/<id>`'s one entry. */
async function userOf(lab: TestLab, jwt: string, id: string): Promise<Record<string, unknown>> {
  const reply = await call(lab, jwt, "GET", `/user/${id}`);
  expect(reply.status).toBe(200);
  return (JSON.parse(reply.text) as { user: Record<string, unknown>[] }).user[0]!;
}

describe("EJBCA-REST (--api legacy): a certificate issued under a fault counts as issued", () => {
  let lab: TestLab;
  let jwt: string;
  beforeAll(async () => {
    lab = await startTestLab({
      faults: [
        { route: "sign", kind: "expired", times: 1 },
        { route: "sign", kind: "reply-lost", times: 1 },
      ],
    });
    jwt = await login(lab);
  });
  afterAll(async () => lab.stop());

  it("a faulted reply (expired) and a lost one (reply-lost): the entity is GENERATED (40) and the rerun refused", async () => {
    await lab.addDevice("spoilt");
    const spoilt = await sign(lab, jwt, "spoilt");
    expect(spoilt.status).toBe(200);
    expect(spoilt.cert!.notAfter.getTime()).toBeLessThan(Date.now()); // the fault was in the reply
    expect((await userOf(lab, jwt, "spoilt")).status).toBe(40);
    expect((await sign(lab, jwt, "spoilt")).text).toBe(generated("spoilt"));

    await lab.addDevice("lost");
    await expect(sign(lab, jwt, "lost")).rejects.toThrow(); // the connection closed, no reply
    expect((await userOf(lab, jwt, "lost")).status).toBe(40);
    expect((await sign(lab, jwt, "lost")).text).toBe(generated("lost"));
    // Both issued certificates are the CA's to revoke: the lab recorded them.
    const { devices } = (await loadState(lab.dir))!;
    expect(devices.spoilt!.issued).toEqual([spoilt.cert!.serialNumber]);
    expect(devices.lost!.issued).toHaveLength(1);
  });
});

describe("EJBCA-REST (--api legacy): GET /user, POST /user, GET /ca, DELETE /ca/<issuer DN>/certificate/<serial>", () => {
  let lab: TestLab;
  let jwt: string;
  beforeAll(async () => {
    lab = await startTestLab();
    jwt = await login(lab);
  });
  afterAll(async () => lab.stop());

  it("GET /user/<id>: EJBCA's UserDataVOWS as zeep gives it, fields in the WSDL's order, no password; unknown: 404", async () => {
    await lab.addDevice("f60c28");
    const reply = await call(lab, jwt, "GET", "/user/f60c28");
    expect(reply).toEqual({
      status: 200,
      text: JSON.stringify({
        user: [
          {
            caName: "IOTmidCA",
            cardNumber: null,
            certificateProfileName: "CFREE",
            certificateSerialNumber: null,
            clearPwd: false,
            email: null,
            endEntityProfileName: "EMPTY_CFREE",
            endTime: null,
            extendedInformation: [],
            hardTokenIssuerName: null,
            keyRecoverable: false,
            password: null,
            sendNotification: false,
            startTime: null,
            status: 10,
            subjectAltName: null,
            subjectDN: "CN=f60c28",
            tokenType: "USERGENERATED",
            username: "f60c28",
          },
        ],
      }),
    });
    expect(await call(lab, jwt, "GET", "/user/nobody")).toEqual({
      status: 404,
      text: '{"message":"no certificates found","status":404}',
    });
    // Behind Kong like /sign: no token, Kong's 401.
    expect((await fetch(`${lab.url}/user/f60c28`)).status).toBe(401);
  });

  it("POST /user with the entity's own values (as GET /user gives them) and status 10: NEW again, password and subject kept", async () => {
    await lab.addDevice("again");
    expect((await sign(lab, jwt, "again")).status).toBe(200);
    const user = await userOf(lab, jwt, "again");
    expect(await call(lab, jwt, "POST", "/user", { ...user, status: 10 })).toEqual({
      status: 200,
      text: '{"message":"ok","status":200}',
    });
    expect(await userOf(lab, jwt, "again")).toEqual({ ...user, status: 10 });
    // `password: null` is left out of EJBCA's call, which keeps the password it has.
    const next = await sign(lab, jwt, "again");
    expect(next.status).toBe(200);
    expect(next.cert!.subject).toBe("CN=again");
  });

  it("POST /user sets password and subject; one with the username alone puts dojot's defaults back", async () => {
    const own = { username: "custom", password: "s3cret", subjectDN: "CN=custom, O=Acme", email: "x@y.z" };
    expect((await call(lab, jwt, "POST", "/user", own)).status).toBe(200); // creates the entity
    const user = await userOf(lab, jwt, "custom");
    expect(user).toMatchObject({ status: 10, subjectDN: "CN=custom,O=Acme", email: null, password: null });
    expect((await sign(lab, jwt, "custom")).text).toBe(
      '{"status":400,"message":"soap message: Got request for user with invalid password: custom."}',
    );
    const signed = await sign(lab, jwt, "custom", "s3cret");
    expect(signed.cert!.subject).toBe("CN=custom, O=Acme"); // the entity's DN, whatever the CSR says

    expect((await call(lab, jwt, "POST", "/user", { username: "custom" })).status).toBe(200);
    expect(await userOf(lab, jwt, "custom")).toMatchObject({ status: 10, subjectDN: "CN=custom" });
    expect((await sign(lab, jwt, "custom")).cert!.subject).toBe("CN=custom");
  });

  it("POST /user refuses as ejbca-rest and EJBCA do; the status it sets is the one /sign checks", async () => {
    const post = (body: unknown, type?: string) => call(lab, jwt, "POST", "/user", body, type);
    expect(await post({ password: "x" })).toEqual({
      status: 400,
      text: '{"message":"required field usernamemissing.","status":400}',
    });
    expect(await post("{}", "text/plain")).toEqual({
      status: 400,
      text: '{"message":"invalid mimetype","status":400}',
    });
    expect(await post("{nope")).toEqual({ status: 400, text: '{"message":"malformed JSON","status":400}' });
    expect((await post("null")).status).toBe(500); // Python cannot iterate None: Flask's 500 page
    expect(await post({ username: "x", caName: "PROTOCOL" })).toEqual({
      status: 400,
      text: '{"message":"soap message: CA with name PROTOCOL does not exist.","status":400}',
    });
    expect((await post({ username: "x", tokenType: "NOPE" })).text).toContain(
      "soap message: Error Token Type  NOPE does not exist.",
    );
    expect((await post({ username: "held", status: 50 })).status).toBe(200);
    expect((await sign(lab, jwt, "held")).text).toBe(
      '{"status":400,"message":"soap message: Got request with status REVOKED (50), NEW, FAILED or INPROCESS required: held."}',
    );
    expect((await post({ username: "p12", tokenType: "P12" })).status).toBe(200);
    expect((await sign(lab, jwt, "p12")).text).toBe(
      `{"status":400,"message":"soap message: Error: Wrong Token Type of user, must be 'USERGENERATED' for PKCS10/SPKAC/CRMF/CVC requests"}`,
    );
  });

  it("GET /ca lists IOTmidCA with EJBCA's id (its DN's hash)", async () => {
    expect(await call(lab, jwt, "GET", "/ca")).toEqual({
      status: 200,
      text: '{"CAs":[{"id":576968287,"name":"IOTmidCA"}]}',
    });
  });

  it("DELETE /ca/<the CA's DN>/certificate/<serial hex>: revoked, in the next CRL; the bare CA name is EJBCA's 400", async () => {
    await lab.addDevice("gone");
    const { cert } = await sign(lab, jwt, "gone");
    const serial = cert!.serialNumber;
    const issuer = encodeURIComponent(IOTMIDCA_DN);
    const del = (cacn: string, sn: string, query = "") =>
      call(lab, jwt, "DELETE", `/ca/${cacn}/certificate/${sn}${query}`);
    expect(await del("IOTmidCA", serial)).toEqual({
      status: 400,
      text: '{"message":"soap message: Could not find CA with name null and ID 0","status":400}',
    });
    expect(await del(issuer, serial, "?reason=BOGUS")).toEqual({
      status: 400,
      text: '{"message":"invalid revokation reason BOGUS","status":400}',
    });
    expect(await del(issuer, "abc")).toEqual({
      status: 400,
      text: `{"message":"soap message: Could not find end entity certificate. Issuer ${IOTMIDCA_DN}, serialNo abc.","status":400}`,
    });
    // Blanks after the commas and the serial in capitals are the same CA and certificate to EJBCA.
    expect(
      await del(encodeURIComponent("CN=IOTmidCA, O=EJBCA IOT, C=SE"), serial.toUpperCase(), "?reason=KEYCOMPROMISE"),
    ).toEqual({
      status: 200,
      text: '{"message":"ok","status":200}',
    });
    expect((await del(issuer, serial)).text).toBe(
      `{"message":"soap message: Certificate is already revoked. Issuer: '${IOTMIDCA_DN}', serno: ${BigInt(`0x${serial}`).toString(16)}.","status":400}`,
    );
    expect((await call(lab, jwt, "PUT", "/ca/IOTmidCA/crl")).status).toBe(200);
    const crl = new x509.X509Crl(
      Buffer.from(
        (JSON.parse((await call(lab, jwt, "GET", "/ca/IOTmidCA/crl")).text) as { CRL: string }).CRL,
        "base64",
      ),
    );
    expect(crl.entries.map((e) => [e.serialNumber, e.reason])).toEqual([[serial, x509.X509CrlReason.keyCompromise]]);
  });

  it("a certificate on hold can be released (REMOVEFROMCRL); one that is not on hold cannot", async () => {
    await lab.addDevice("held2");
    const serial = (await sign(lab, jwt, "held2")).cert!.serialNumber;
    const path = `/ca/${encodeURIComponent(IOTMIDCA_DN)}/certificate/${serial}`;
    expect((await call(lab, jwt, "DELETE", `${path}?reason=REMOVEFROMCRL`)).text).toBe(
      `{"message":"soap message: Not allowed to unrevoke a certificate that is not on hold. Issuer ${IOTMIDCA_DN}, serialNo ${BigInt(`0x${serial}`).toString(16)}.","status":400}`,
    );
    expect((await call(lab, jwt, "DELETE", `${path}?reason=CERTIFICATEHOLD`)).status).toBe(200);
    expect((await call(lab, jwt, "DELETE", `${path}?reason=REMOVEFROMCRL`)).status).toBe(200);
    expect((await call(lab, jwt, "PUT", "/ca/IOTmidCA/crl")).status).toBe(200);
    const crl = new x509.X509Crl(
      Buffer.from(
        (JSON.parse((await call(lab, jwt, "GET", "/ca/IOTmidCA/crl")).text) as { CRL: string }).CRL,
        "base64",
      ),
    );
    expect(crl.entries.map((e) => e.serialNumber)).not.toContain(serial);
  });
});

describe("EJBCA-REST /sign takes a PEM CSR as EJBCA does", () => {
  it("the CSR with its BEGIN/END CERTIFICATE REQUEST lines is signed", async () => {
    const lab = await startTestLab();
    try {
      await lab.addDevice("pemcsr");
      const jwt = await login(lab);
      const der = await csr();
      const pem = `-----BEGIN CERTIFICATE REQUEST-----\n${der.match(/.{1,64}/g)!.join("\n")}\n-----END CERTIFICATE REQUEST-----\n`;
      const reply = await call(lab, jwt, "POST", "/sign/pemcsr/pkcs10", { passwd: "dojot", certificate: pem });
      expect(reply.status, reply.text).toBe(200);
    } finally {
      await lab.stop();
    }
  });
});

describe("EJBCA-REST v0.5.0-alpha.1 (--ejbca-rest-version v0.5): /sign resets the end entity to NEW first", () => {
  it("a GENERATED entity signs again; an unknown one is 400 'User not found to renew..'", async () => {
    const lab = await startTestLab({ ejbcaRestVersion: "v0.5" });
    try {
      await lab.addDevice("v05dev");
      const jwt = await login(lab);
      expect((await sign(lab, jwt, "v05dev")).status).toBe(200);
      expect((await userOf(lab, jwt, "v05dev")).status).toBe(40);
      const again = await sign(lab, jwt, "v05dev");
      expect(again.status, again.text).toBe(200);
      expect(await sign(lab, jwt, "nobody")).toMatchObject({
        status: 400,
        text: '{"message":"User not found to renew..","status":400}',
      });
    } finally {
      await lab.stop();
    }
  });
});

describe("x509-identity-mgmt (--api x509): a certificate issued under a fault is recorded", () => {
  let lab: TestLab;
  let jwt: string;
  beforeAll(async () => {
    lab = await startTestLab({
      api: "x509",
      faults: [
        { route: "sign", kind: "trailing-data", times: 1 },
        { route: "sign", kind: "reply-lost", times: 1 },
      ],
    });
    jwt = await login(lab);
  });
  afterAll(async () => lab.stop());

  it("trailing-data and reply-lost: both certificates are listed, found and deleted by fingerprint", async () => {
    const pem = (b64: string) =>
      `-----BEGIN CERTIFICATE REQUEST-----\n${b64.match(/.{1,64}/g)!.join("\n")}\n-----END CERTIFICATE REQUEST-----`;
    const faulted = await call(lab, jwt, "POST", "/x509/v1/certificates", { csr: pem(await csr()) });
    expect(faulted.status, faulted.text).toBe(201);
    const { certificateFingerprint: fp } = JSON.parse(faulted.text) as { certificateFingerprint: string };
    await expect(call(lab, jwt, "POST", "/x509/v1/certificates", { csr: pem(await csr()) })).rejects.toThrow();
    const listed = JSON.parse((await call(lab, jwt, "GET", "/x509/v1/certificates")).text) as {
      certificates: { fingerprint: string }[];
    };
    expect(listed.certificates).toHaveLength(2);
    expect((await call(lab, jwt, "GET", `/x509/v1/certificates/${fp}`)).status).toBe(200);
    for (const { fingerprint } of listed.certificates)
      expect((await call(lab, jwt, "DELETE", `/x509/v1/certificates/${fingerprint}`)).status).toBe(204);
  });
});
