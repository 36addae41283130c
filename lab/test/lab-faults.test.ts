import { softwareCrypto } from "cert-retriever";
import { beforeAll, describe, expect, it } from "vitest";
import { certsFromPkcs7 } from "../../src/keys/pkcs7.js";
import { runCli, SECRETS } from "../../test/helpers/cli.js";
import { basic, estRequest, keyAndCsr } from "../../test/helpers/est.js";
import { tempDir } from "../../test/helpers/lab.js";
import type { FaultKind, LabFault } from "../src/faults.js";
import { type LabOptions, type RunningLab, startLab } from "../src/server.js";
import * as x509 from "../src/x509.js";

/**
 * Every fault kind takes effect on every API that has its route, or is refused at start: for
 * each API the lab serves, the certificate the client receives really carries each certificate
 * fault (before, `--fault sign:critical-extension` on an x509 lab issued a normal certificate).
 */
const crypto = softwareCrypto();
const password = "fault-lab-password";
SECRETS.add(password);
const DAY = 86_400_000;
const TRAILING = Buffer.from("TRAILING");

/** The faults in a certificate a signing route can carry, and those a CA route can. */
const SIGN_KINDS = [
  "wrong-ca",
  "other-key",
  "expired",
  "not-yet-valid",
  "skewed-clock",
  "trailing-data",
  "critical-extension",
] as const;
const CA_KINDS = ["wrong-ca", "trailing-data", "skewed-clock"] as const;

/** What a client received: the bytes meant to be one certificate (EST: one PKCS#7), the reply's Date, and the key its CSR carried. */
interface Received {
  bytes: Buffer;
  date: number;
  csrKey?: ArrayBuffer;
}

/** One lab per API, serving the same directory again with other faults. */
type Serve = (faults: LabFault[]) => Promise<RunningLab>;

function labOn(dir: string, more: Partial<LabOptions>): Serve {
  return (faults) =>
    startLab({
      dir,
      host: "127.0.0.1",
      port: 0,
      crypto,
      certProfile: "open",
      autoRegister: true,
      adminPassword: password,
      tokenLifetime: 420,
      faults,
      ...more,
    });
}

async function jwtOf(lab: RunningLab): Promise<string> {
  const res = await fetch(`${lab.url}/auth`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: "admin", passwd: password }),
  });
  return ((await res.json()) as { jwt: string }).jwt;
}

/** A P-256 CSR for `cn`: its DER and PEM, and its public key (SPKI). */
async function csrFor(cn: string): Promise<{ der: Uint8Array; pem: string; spki: ArrayBuffer }> {
  const { csr } = await keyAndCsr(`CN=${cn}`);
  return { der: new Uint8Array(csr.rawData), pem: csr.toString("pem").trimEnd(), spki: csr.publicKey.rawData };
}

const dateOf = (res: { headers: { get(name: string): string | null } }) => Date.parse(res.headers.get("date") ?? "");
const pemBytes = (pem: string) => Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ""), "base64");

/**
 * Asserts that `got` carries `kind`: for a device's certificate (`device`), compared with `ca`, the
 * lab's own CA; for a CA route, `got` is the CA served in place of `ca`.
 */
async function expectCarries(kind: FaultKind, got: Received, ca: x509.X509Certificate, device: boolean): Promise<void> {
  if (kind === "trailing-data") {
    expect(got.bytes.subarray(-TRAILING.length)).toEqual(TRAILING);
    return;
  }
  const cert = new x509.X509Certificate(new Uint8Array(got.bytes));
  // A device's certificate from the lab's CA; or, on a CA route, the lab's CA itself.
  const genuine = device
    ? await cert.verify({ publicKey: ca.publicKey, signatureOnly: true }, crypto)
    : Buffer.from(cert.rawData).equals(Buffer.from(ca.rawData));
  const now = Date.now();
  switch (kind) {
    case "wrong-ca":
      expect(device ? cert.issuer : cert.subject).toBe(ca.subject); // the same names...
      expect(genuine).toBe(false); // ...and another key
      return;
    case "other-key":
      expect(Buffer.from(cert.publicKey.rawData)).not.toEqual(Buffer.from(got.csrKey!));
      break;
    case "expired":
      expect(cert.notAfter.getTime()).toBeLessThan(now);
      break;
    case "not-yet-valid":
      expect(cert.notBefore.getTime()).toBeGreaterThan(now);
      break;
    case "skewed-clock":
      expect(got.date).toBeGreaterThan(now + 2.5 * DAY);
      if (device) expect(cert.notBefore.getTime()).toBeGreaterThan(now + DAY);
      break;
    case "critical-extension":
      expect(cert.getExtension("1.3.6.1.4.1.32473.1")?.critical).toBe(true);
      break;
  }
  expect(genuine).toBe(true); // the fault is the only thing wrong
}

/** The same checks on a reply without a fault: each must fail there, or the check proves nothing. */
async function expectClean(
  kinds: readonly FaultKind[],
  got: Received,
  ca: x509.X509Certificate,
  device: boolean,
): Promise<void> {
  for (const kind of kinds) await expect(expectCarries(kind, got, ca, device), kind).rejects.toThrow();
}

/**
 * Runs every kind once on `route`, in order, then one request without a fault: each faulty reply
 * carries its fault, the last carries none.
 */
async function proveKinds(
  serve: Serve,
  route: "sign" | "ca" | "est-enroll" | "est-cacerts",
  kinds: readonly FaultKind[],
  receive: (lab: RunningLab, n: number) => Promise<Received>,
  caOf: (lab: RunningLab) => x509.X509Certificate,
): Promise<void> {
  const lab = await serve(kinds.map((kind) => ({ route, kind, times: 1 })));
  try {
    const device = route === "sign" || route === "est-enroll";
    for (const [n, kind] of kinds.entries()) await expectCarries(kind, await receive(lab, n), caOf(lab), device);
    await expectClean(kinds, await receive(lab, kinds.length), caOf(lab), device);
  } finally {
    await lab.close();
  }
}

describe("EJBCA-REST (--api legacy): each fault on /sign and /ca is in what the client receives", () => {
  let serve: Serve;
  beforeAll(async () => {
    serve = labOn(await tempDir("cr-faults-legacy-"), { api: "legacy" });
  });

  const signed = async (lab: RunningLab, n: number): Promise<Received> => {
    const csr = await csrFor(`legacy${n}`);
    const res = await fetch(`${lab.url}/sign/legacy${n}/pkcs10`, {
      method: "POST",
      headers: { authorization: `Bearer ${await jwtOf(lab)}`, "content-type": "application/json" },
      body: JSON.stringify({ passwd: "dojot", certificate: Buffer.from(csr.der).toString("base64") }),
    });
    const body = (await res.json()) as { status: { data: string } };
    return { bytes: Buffer.from(body.status.data, "base64"), date: dateOf(res), csrKey: csr.spki };
  };
  const served = async (lab: RunningLab): Promise<Received> => {
    const res = await fetch(`${lab.url}/ca/IOTmidCA`, { headers: { authorization: `Bearer ${await jwtOf(lab)}` } });
    return {
      bytes: Buffer.from(((await res.json()) as { certificate: string }).certificate, "base64"),
      date: dateOf(res),
    };
  };

  it("sign: every certificate fault", () => proveKinds(serve, "sign", SIGN_KINDS, signed, (lab) => lab.ca.cert));
  it("ca: wrong-ca, trailing-data, skewed-clock", () =>
    proveKinds(serve, "ca", CA_KINDS, served, (lab) => lab.ca.cert));

  it("a fault strikes its route only: ca is GET /ca/<name>, not its CRL", async () => {
    const lab = await serve([
      { route: "sign", kind: "503" },
      { route: "ca", kind: "500" },
    ]);
    try {
      const crl = await fetch(`${lab.url}/ca/IOTmidCA/crl`, {
        headers: { authorization: `Bearer ${await jwtOf(lab)}` },
      });
      expect(crl.status).toBe(200);
      expect(
        (await fetch(`${lab.url}/ca/IOTmidCA`, { headers: { authorization: `Bearer ${await jwtOf(lab)}` } })).status,
      ).toBe(500);
    } finally {
      await lab.close();
    }
  });
});

describe.each(["v0.5", "v0.7"] as const)(
  "x509-identity-mgmt (--api x509, rules %s): each fault on POST /certificates and GET /ca is in what the client receives",
  (x509Rules) => {
    let serve: Serve;
    beforeAll(async () => {
      serve = labOn(await tempDir("cr-faults-x509-"), { api: "x509", x509Rules });
    });

    const call = async (lab: RunningLab, method: string, path: string, body?: unknown) =>
      fetch(`${lab.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${await jwtOf(lab)}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    const signed = async (lab: RunningLab, n: number): Promise<Received> => {
      const csr = await csrFor(`device${n}`);
      const res = await call(lab, "POST", "/x509/v1/certificates", { csr: csr.pem });
      expect(res.status).toBe(201);
      return {
        bytes: pemBytes(((await res.json()) as { certificatePem: string }).certificatePem),
        date: dateOf(res),
        csrKey: csr.spki,
      };
    };
    const served = async (lab: RunningLab): Promise<Received> => {
      const res = await call(lab, "GET", "/x509/v1/ca");
      return { bytes: pemBytes(((await res.json()) as { caPem: string }).caPem), date: dateOf(res) };
    };

    it("sign (POST /x509/v1/certificates): every certificate fault", () =>
      proveKinds(serve, "sign", SIGN_KINDS, signed, (lab) => lab.x509Ca!.cert));
    it("ca (GET /x509/v1/ca): wrong-ca, trailing-data, skewed-clock", () =>
      proveKinds(serve, "ca", CA_KINDS, served, (lab) => lab.x509Ca!.cert));

    it("a fault strikes its route only: sign is POST /certificates, ca is GET /ca (not the CRL, the list or a record)", async () => {
      const lab = await serve([
        { route: "sign", kind: "503" },
        { route: "ca", kind: "500", times: 1 },
      ]);
      try {
        expect((await call(lab, "GET", "/x509/v1/ca/crl")).status).toBe(200);
        expect((await call(lab, "GET", "/x509/v1/certificates")).status).toBe(200);
        expect((await call(lab, "GET", "/x509/v1/ca")).status).toBe(500);
        expect((await call(lab, "POST", "/x509/v1/certificates", { csr: (await csrFor("struck")).pem })).status).toBe(
          503,
        );
      } finally {
        await lab.close();
      }
    });
  },
);

describe("EST (--api est): each fault on /simpleenroll and /cacerts is in what the client receives", () => {
  let serve: Serve;
  let rootPem: string;
  beforeAll(async () => {
    serve = labOn(await tempDir("cr-faults-est-"), { api: "est" });
    const first = await serve([]);
    rootPem = first.estCa!.root.cert.toString("pem");
    await first.close();
  });

  /** The base64 PKCS#7 body as DER; the certificate asked for (the first), unless the fault is trailing data, which follows the PKCS#7. */
  const fromPkcs7 = (body: string, which: number): Buffer => {
    const der = Buffer.from(body.replace(/\s+/g, ""), "base64");
    if (der.subarray(-TRAILING.length).equals(TRAILING)) return der;
    return Buffer.from(certsFromPkcs7(new Uint8Array(der))[which]!);
  };
  const signed = async (lab: RunningLab, n: number): Promise<Received> => {
    const csr = await csrFor(`est${n}`);
    const reply = await estRequest(`${lab.estUrl}/simpleenroll`, rootPem, {
      method: "POST",
      body: Buffer.from(csr.der).toString("base64"),
      headers: { "content-type": "application/pkcs10", authorization: basic("admin", password) },
    });
    expect(reply.status).toBe(200);
    return { bytes: fromPkcs7(reply.body, 0), date: Date.parse(String(reply.headers.date)), csrKey: csr.spki };
  };
  const served = async (lab: RunningLab): Promise<Received> => {
    const reply = await estRequest(`${lab.estUrl}/cacerts`, rootPem);
    return { bytes: fromPkcs7(reply.body, 0), date: Date.parse(String(reply.headers.date)) };
  };

  it("est-enroll: every certificate fault", () =>
    proveKinds(serve, "est-enroll", SIGN_KINDS, signed, (lab) => lab.estCa!.issuing.cert));
  it("est-cacerts: wrong-ca, trailing-data, skewed-clock", () =>
    proveKinds(serve, "est-cacerts", CA_KINDS, served, (lab) => lab.estCa!.issuing.cert));
});

describe("a fault on a route no API of the lab has is refused at start, not ignored", () => {
  it("startLab: dojot's routes with EST alone, EST's routes with dojot alone", async () => {
    const dir = await tempDir("cr-faults-refused-");
    for (const [api, fault] of [
      ["est", { route: "auth", kind: "503" }],
      ["est", { route: "sign", kind: "critical-extension" }],
      ["legacy", { route: "est-enroll", kind: "expired" }],
    ] as const) {
      const start = labOn(dir, { api })([fault]);
      await expect(
        start.then((lab) => lab.close()),
        `${api} ${fault.route}:${fault.kind}`,
      ).rejects.toThrow(new RegExp(`${fault.route}:${fault.kind}`));
    }
  });

  it("lab serve --api est --fault sign:503: exit 2, naming the fault", async () => {
    const run = await runCli(
      ["lab", "serve", "--dir", await tempDir(), "--listen", "127.0.0.1:0", "--api", "est", "--fault", "sign:503"],
      { timeoutMs: 20_000 },
    );
    expect([run.code, run.stderr]).toEqual([2, expect.stringContaining("sign:503")]);
  });
});
