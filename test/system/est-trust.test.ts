import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import * as asn1js from "asn1js";
import { describe, expect, it } from "vitest";
import { certsOnlyPkcs7, oidDer } from "../../lab/src/pkcs7.js";
import { startLab } from "../../lab/src/server.js";
import { sha256Fingerprint } from "../../src/flows/certificate.js";
import { OIDS } from "../../src/keys/pkcs7.js";
import { softwareCrypto } from "../../src/keys/provider.js";
import * as x509 from "../../src/keys/x509.js";
import { orderCaBag } from "../../src/protocols/est/cacerts.js";
import { readCsrAttrs } from "../../src/protocols/est/csrattrs.js";
import { runCli, SECRETS } from "../helpers/cli.js";
import { listFiles } from "../helpers/enroll.js";
import { labDir, tempDir } from "../helpers/lab.js";
import { issueLeaf, makeCa } from "../helpers/pki.js";

/**
 * EST's trust rules where an attacker or an unusual server would test them: what /cacerts may make
 * the client trust, how its certificates are put in order, how fast a 202 is answered, what a
 * renewal asks for, and a stored CA that is not the pinned one.
 */

const crypto = softwareCrypto();
const SIGN = { name: "ECDSA", hash: "SHA-256" } as const;
const DAY = 86_400_000;
const gen = async () =>
  (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;

/** A certificate for `subject`'s key, signed by `signer` in the name of `issuer`. */
async function cert(
  subject: string,
  keys: CryptoKeyPair,
  issuer: string,
  signer: CryptoKeyPair,
  ca = true,
): Promise<x509.X509Certificate> {
  return x509.X509CertificateGenerator.create(
    {
      serialNumber: `1${Math.floor(Math.random() * 1e12).toString(16)}`,
      subject,
      issuer,
      publicKey: keys.publicKey,
      signingKey: signer.privateKey,
      signingAlgorithm: SIGN,
      notBefore: new Date(Date.now() - DAY),
      notAfter: new Date(Date.now() + 30 * DAY),
      extensions: [new x509.BasicConstraintsExtension(ca, undefined, true)],
    },
    crypto,
  );
}

/** An EST look-alike on 127.0.0.1 that serves `cacerts` (base64 PKCS#7) and answers the rest with `other`; records each request. */
async function fakeEst(
  tls: { cert: string; key: string },
  cacerts: x509.X509Certificate[],
  other: (path: string) => { status: number; headers?: Record<string, string> },
) {
  const seen: string[] = [];
  const server: Server = createServer({ ...tls }, (req, res) => {
    seen.push(`${req.method} ${req.url} ${req.headers.authorization ? "with-authorization" : ""}`.trim());
    req.resume();
    if (req.url!.endsWith("/cacerts")) {
      res.writeHead(200, { "content-type": "application/pkcs7-mime" });
      res.end(Buffer.from(certsOnlyPkcs7(cacerts.map((c) => new Uint8Array(c.rawData)))).toString("base64"));
      return;
    }
    const reply = other(req.url!);
    res.writeHead(reply.status, reply.headers ?? {});
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/est`,
    seen,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

async function passwordFile(secret: string): Promise<{ dir: string; pw: string }> {
  SECRETS.add(secret);
  const dir = await tempDir("cr-est-trust-");
  await writeFile(join(dir, "pw"), secret, { mode: 0o600 });
  return { dir, pw: join(dir, "pw") };
}

describe("what /cacerts may make the client trust", () => {
  it("a man in the middle who adds his own root beside the pinned chain never receives the password: only the pinned chain vouches for the server (exit 11)", async () => {
    const realRoot = await makeCa("Real Root");
    const issuingKeys = await gen();
    const realIssuing = await cert("CN=Real Issuing", issuingKeys, "CN=Real Root", realRoot.keys);
    const attacker = await makeCa("Attacker Root");
    // Named like the real root, issued by the attacker's: it would link the attacker's root in by name.
    const decoy = await cert("CN=Real Root", await gen(), "CN=Attacker Root", attacker.keys);
    const mitm = await fakeEst(
      await issueLeaf(attacker, "127.0.0.1", [{ type: "ip", value: "127.0.0.1" }], "server"),
      [realIssuing, realRoot.cert, attacker.cert, decoy],
      () => ({ status: 500 }),
    );
    try {
      const { dir, pw } = await passwordFile("mitm-must-not-see-this");
      const run = await runCli([
        "enroll",
        "--api",
        "est",
        "--platform",
        mitm.url,
        "--device-id",
        "d1",
        "--out",
        join(dir, "out"),
        "--non-interactive",
        "--username",
        "admin",
        "--password-file",
        pw,
        "--ca-fingerprint",
        `sha256:${sha256Fingerprint(realRoot.cert)}`,
        "--json",
      ]);
      expect(run.code, run.stderr).toBe(11);
      expect(JSON.parse(run.stdout).error).toMatchObject({ reason: "tls-untrusted" });
      expect(mitm.seen).toEqual(["GET /.well-known/est/cacerts"]);
      expect(await listFiles(join(dir, "out"))).toEqual([]);
    } finally {
      await mitm.close();
    }
  });

  it("the provisional fetch of /cacerts sends no client certificate", async () => {
    const root = await makeCa("Root For Client Cert Check");
    let presented: unknown = "not asked";
    const tls = await issueLeaf(root, "127.0.0.1", [{ type: "ip", value: "127.0.0.1" }], "server");
    const server = createServer({ ...tls, requestCert: true, rejectUnauthorized: false }, (req, res) => {
      const peer = (req.socket as import("node:tls").TLSSocket).getPeerCertificate();
      presented = Object.keys(peer).length === 0 ? "none" : peer.subject;
      res.writeHead(500).end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { dir } = await passwordFile("unused-secret-for-client-cert");
      const factory = await makeCa("Factory");
      const boot = await issueLeaf(factory, "device-serial-0042", [], "client");
      await writeFile(join(dir, "boot.crt"), boot.cert);
      await writeFile(join(dir, "boot.key"), boot.key, { mode: 0o600 });
      const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
      await runCli([
        "enroll",
        "--api",
        "est",
        "--platform",
        url,
        "--device-id",
        "d1",
        "--out",
        join(dir, "out"),
        "--non-interactive",
        "--client-cert",
        join(dir, "boot.crt"),
        "--client-key",
        join(dir, "boot.key"),
        "--ca-fingerprint",
        `sha256:${sha256Fingerprint(root.cert)}`,
        "--retries",
        "0",
      ]);
      expect(presented).toBe("none");
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe("putting /cacerts in order", () => {
  const order = async (bag: x509.X509Certificate[], known: x509.X509Certificate[] = []) =>
    (await orderCaBag(bag, crypto, (c) => known.some((k) => k.equal(c)))).map((c) => c.subject);

  it("takes any order, duplicates, a lone root or a lone intermediate; leaves out what is no CA", async () => {
    const rk = await gen();
    const ik = await gen();
    const root = await cert("CN=Root", rk, "CN=Root", rk);
    const issuing = await cert("CN=Issuing", ik, "CN=Root", rk);
    const serverLeaf = await cert("CN=est.example", await gen(), "CN=Issuing", ik, false);
    expect(await order([root, issuing])).toEqual(["CN=Issuing", "CN=Root"]);
    expect(await order([issuing, root, issuing, root])).toEqual(["CN=Issuing", "CN=Root"]);
    expect(await order([root])).toEqual(["CN=Root"]);
    expect(await order([issuing])).toEqual(["CN=Issuing"]);
    expect(await order([issuing, root, serverLeaf])).toEqual(["CN=Issuing", "CN=Root"]);
  });

  it("links by signature, not by name: a root changing over (RFC 7030 §4.1.3's four certificates) gives the issuing CA under the new root, in any order", async () => {
    const ok = await gen();
    const nk = await gen();
    const ik = await gen();
    const oldWithOld = await cert("CN=Old Root", ok, "CN=Old Root", ok);
    const newWithNew = await cert("CN=New Root", nk, "CN=New Root", nk);
    const newWithOld = await cert("CN=New Root", nk, "CN=Old Root", ok);
    const oldWithNew = await cert("CN=Old Root", ok, "CN=New Root", nk);
    const issuing = await cert("CN=Issuing", ik, "CN=New Root", nk);
    for (const bag of [
      [issuing, newWithNew, oldWithOld, newWithOld, oldWithNew],
      [issuing, newWithOld, oldWithNew, newWithNew, oldWithOld],
    ]) {
      const chain = await orderCaBag(bag, crypto, () => false);
      expect(chain.map((c) => c.subject)).toEqual(["CN=Issuing", "CN=New Root"]);
      expect(chain[1]!.equal(newWithNew)).toBe(true);
    }
  });

  it("several chains: the one the pin or the stored chain names, else a refusal (exit 17's reason)", async () => {
    const [ak, bk, ik, jk] = await Promise.all([gen(), gen(), gen(), gen()]);
    const rootA = await cert("CN=Root A", ak, "CN=Root A", ak);
    const rootB = await cert("CN=Root B", bk, "CN=Root B", bk);
    const issuingA = await cert("CN=Issuing A", ik, "CN=Root A", ak);
    const issuingB = await cert("CN=Issuing B", jk, "CN=Root B", bk);
    expect(await order([issuingA, rootA, issuingB, rootB], [rootB])).toEqual(["CN=Issuing B", "CN=Root B"]);
    await expect(order([issuingA, rootA, issuingB, rootB])).rejects.toMatchObject({ reason: "not-supported" });
  });
});

describe("what the client does with what the server says", () => {
  it("csrattrs: rsaEncryption with a size (RFC 9908's form) asks for that RSA key; a curve it cannot make is a note", () => {
    const size = (n: number) => new Uint8Array(new asn1js.Integer({ value: n }).toBER());
    expect(readCsrAttrs([{ attribute: OIDS.rsaEncryption, values: [size(3072)] }])).toEqual({
      keyType: "rsa-3072",
      notes: [],
    });
    expect(readCsrAttrs([{ oid: OIDS.rsaEncryption }]).keyType).toBe("rsa-2048");
    const p521 = readCsrAttrs([{ attribute: OIDS.ecPublicKey, values: [oidDer("1.3.132.0.35")] }]);
    expect(p521.keyType).toBeUndefined();
    expect(p521.notes[0]).toContain("1.3.132.0.35");
  });

  it("a 202 whose Retry-After is 0 is not answered in a tight loop: at least a second between submissions", async () => {
    const ca = await makeCa("Retry Root");
    let posts = 0;
    const server = await fakeEst(
      await issueLeaf(ca, "127.0.0.1", [{ type: "ip", value: "127.0.0.1" }], "server"),
      [ca.cert],
      (path) => {
        if (path.endsWith("/csrattrs")) return { status: 204 };
        posts++;
        return { status: 202, headers: { "retry-after": "0" } };
      },
    );
    try {
      const { dir, pw } = await passwordFile("retry-after-zero-secret");
      const run = await runCli([
        "enroll",
        "--api",
        "est",
        "--platform",
        server.url,
        "--device-id",
        "d1",
        "--out",
        join(dir, "out"),
        "--non-interactive",
        "--username",
        "u",
        "--password-file",
        pw,
        "--ca-fingerprint",
        `sha256:${sha256Fingerprint(ca.cert)}`,
        "--deadline",
        "3s",
      ]);
      expect(run.code).toBe(75);
      expect(posts).toBeGreaterThanOrEqual(1);
      expect(posts).toBeLessThanOrEqual(4);
    } finally {
      await server.close();
    }
  });
});

describe("against the lab's EST server", () => {
  const lab = async () => {
    const dir = await labDir("cr-est-trust-lab-");
    const password = `est-trust-${Math.random().toString(36).slice(2)}`;
    SECRETS.add(password);
    const running = await startLab({
      dir,
      host: "127.0.0.1",
      port: 0,
      crypto,
      certProfile: "open",
      autoRegister: false,
      adminPassword: password,
      tokenLifetime: 420,
      api: "est",
    });
    await writeFile(join(dir, "pw"), password, { mode: 0o600 });
    const pin = `sha256:${sha256Fingerprint(running.estCa!.root.cert)}`;
    const enroll = (out: string, args: string[]) =>
      runCli([
        "enroll",
        "--api",
        "est",
        "--platform",
        running.estUrl!,
        "--device-id",
        "d1",
        "--out",
        out,
        "--non-interactive",
        ...args,
      ]);
    return {
      dir,
      pin,
      enroll,
      pw: join(dir, "pw"),
      stop: async () => {
        await running.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  };

  it("a renewal asks for the names the certificate has (RFC 7030 §4.2.2), whatever --dns now says, and says so", async () => {
    const l = await lab();
    try {
      const out = join(l.dir, "dev");
      expect(
        (
          await l.enroll(out, [
            "--username",
            "admin",
            "--password-file",
            l.pw,
            "--ca-fingerprint",
            l.pin,
            "--dns",
            "d1.example",
          ])
        ).code,
      ).toBe(0);
      const renewed = await l.enroll(out, ["--renew-before", "400d", "--dns", "d1.example", "--dns", "d1-new.example"]);
      expect(renewed.code, renewed.stderr).toBe(0);
      expect(renewed.stderr).toContain("a renewal keeps the names the certificate has");
      const san = new x509.X509Certificate(await readFile(join(out, "d1.crt"), "utf8")).getExtension(
        x509.SubjectAlternativeNameExtension,
      );
      expect(san?.names.toJSON()).toEqual([{ type: "dns", value: "d1.example" }]);
    } finally {
      await l.stop();
    }
  });

  it("a stored CA file from elsewhere (an old dojot CA) does not stand in for the pin: the pin bootstraps", async () => {
    const l = await lab();
    try {
      const out = join(l.dir, "dev");
      await mkdir(out, { recursive: true, mode: 0o700 });
      await writeFile(join(out, "IOTmidCA.crt"), (await makeCa("Old dojot CA")).pem);
      const run = await l.enroll(out, ["--username", "admin", "--password-file", l.pw, "--ca-fingerprint", l.pin]);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toContain("(matches the pin)");
    } finally {
      await l.stop();
    }
  });
});
