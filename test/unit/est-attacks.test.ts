import type { ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { certsOnlyPkcs7 } from "../../lab/src/pkcs7.js";
import { exitCodeOf } from "../../src/cli/hints.js";
import { CertRetrieverError, createAgent, type Reason } from "../../src/index.js";
import { softwareCrypto } from "../../src/keys/provider.js";
import * as x509 from "../../src/keys/x509.js";
import { listFiles } from "../helpers/enroll.js";
import { tempDir } from "../helpers/lab.js";
import { issueLeaf, makeCa, type TestCa } from "../helpers/pki.js";

/**
 * A hostile EST server (RFC 7030), trusted for TLS (--platform-ca: a compromised or misconfigured
 * server, not a man in the middle; see est-mitm.test.ts for those) attacking the client with what
 * it answers: /cacerts with several chains, a loop, no CA, hundreds of certificates or 10 MB;
 * Retry-After of 0, -1, 10^12, a past date or a number too long for one; base64 and PKCS#7 that are
 * broken, cut, in indefinite lengths, nested 10,000 deep, or hold certificates that do not parse.
 * Each run, in-process through the library, ends in one sentence of the closed list of reasons
 * within its deadline, and nothing is written; attacks on /cacerts end before the password is sent.
 */

const crypto = softwareCrypto();
const SIGN = { name: "ECDSA", hash: "SHA-256" } as const;
const DAY = 86_400_000;
const PASSWORD = "est-attacks-password";
/** Every run's deadline: an attack must end within it (and a little more for the run's own teardown). */
const DEADLINE_MS = 4_000;

/** What the hostile server answers at one path: status, headers and body (a Buffer is sent as it is). */
type Answer = { status: number; headers?: Record<string, string>; body?: string | Buffer };
type Route = (n: number) => Answer | ((res: ServerResponse) => void);

/** A request as the server saw it: path, when, and whether it carried the password. */
interface Seen {
  path: string;
  at: number;
  authorization: boolean;
}

let tlsCa: TestCa;
let tls: { cert: string; key: string };
/** The EST CA a well-behaved /cacerts holds. */
let estCa: TestCa;
const servers: Server[] = [];

beforeAll(async () => {
  tlsCa = await makeCa("Hostile EST TLS CA");
  tls = await issueLeaf(tlsCa, "127.0.0.1", [{ type: "ip", value: "127.0.0.1" }], "server");
  estCa = await makeCa("Hostile EST CA");
});
afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
});

/** Starts the hostile server: `routes` by the last path segment; what is not routed is a 500. */
async function hostile(routes: Record<string, Route>): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const counts = new Map<string, number>();
  const server = createServer({ ...tls }, (req, res) => {
    const path = req.url!.split("/").pop()!;
    seen.push({ path, at: Date.now(), authorization: req.headers.authorization !== undefined });
    req.resume();
    res.on("error", () => undefined);
    const n = (counts.get(path) ?? 0) + 1;
    counts.set(path, n);
    const answer = routes[path]?.(n) ?? { status: 500 };
    if (typeof answer === "function") return answer(res);
    res.writeHead(answer.status, answer.headers ?? {});
    res.end(answer.body);
  });
  server.on("tlsClientError", () => undefined);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  servers.push(server);
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/est`, seen };
}

/** A 200 of base64 text as application/pkcs7-mime. */
const pkcs7 = (text: string | Buffer): Answer => ({
  status: 200,
  headers: { "content-type": "application/pkcs7-mime" },
  body: text,
});
const b64 = (der: Uint8Array | Buffer) => Buffer.from(der).toString("base64");
const bag = (certs: x509.X509Certificate[]) => b64(certsOnlyPkcs7(certs.map((c) => new Uint8Array(c.rawData))));

/** How one enrollment against the server ended. */
interface Outcome {
  error: CertRetrieverError;
  ms: number;
  written: string[];
  notes: string[];
}

/** One enrollment, in-process, trusting the server's TLS CA, within {@link DEADLINE_MS}; it must fail. */
async function enrollAgainst(url: string): Promise<Outcome> {
  const out = join(await tempDir("cr-est-attacks-"), "certs");
  const notes: string[] = [];
  const started = Date.now();
  const agent = createAgent({
    platform: { url, protocol: "est", tls: { ca: [tlsCa.pem] } },
    device: { id: "attacked" },
    store: { kind: "files", dir: out },
    login: { username: "admin", password: async () => PASSWORD },
    network: { deadline: started + DEADLINE_MS, attempts: 1 },
  });
  let error: unknown;
  try {
    await agent.enroll({ onEvent: (e) => e.type === "note" && notes.push(e.message) });
  } catch (err) {
    error = err;
  } finally {
    await agent.close();
  }
  const ms = Date.now() - started;
  expect(error, "the attack was not refused").toBeInstanceOf(CertRetrieverError);
  return { error: error as CertRetrieverError, ms, written: await listFiles(out), notes };
}

/** One sentence of the closed list, at `step` for `reason`, within the deadline, nothing written. */
function expectRefused(o: Outcome, step: string, reason: Reason, message?: RegExp): void {
  expect({ step: o.error.step, reason: o.error.reason }, o.error.message).toEqual({ step, reason });
  expect(o.error.message).not.toMatch(/[\n\r]/);
  expect(o.error.message.length).toBeLessThan(500);
  if (message) expect(o.error.message).toMatch(message);
  expect(exitCodeOf(o.error)).toBeGreaterThan(0);
  expect(o.ms, `${o.ms} ms`).toBeLessThan(DEADLINE_MS + 500);
  expect(o.written).toEqual([]);
}

/** An attack on /cacerts: refused at fetch-ca, the password never sent. */
async function attackCacerts(body: Route, reason: Reason, message?: RegExp): Promise<void> {
  const server = await hostile({ cacerts: body });
  const o = await enrollAgainst(server.url);
  expectRefused(o, "fetch-ca", reason, message);
  expect(server.seen.filter((s) => s.authorization)).toEqual([]);
  expect(server.seen.map((s) => s.path)).toEqual(["cacerts"]);
}

/** A certificate for `subject`'s key signed by `signer` in `issuer`'s name: a CA unless told, with key usages if given. */
async function cert(
  subject: string,
  keys: CryptoKeyPair,
  issuer: string,
  signer: CryptoKeyPair,
  opts: { ca?: boolean; usages?: x509.KeyUsageFlags } = {},
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
      extensions: [
        new x509.BasicConstraintsExtension(opts.ca ?? true, undefined, true),
        ...(opts.usages === undefined ? [] : [new x509.KeyUsagesExtension(opts.usages, true)]),
      ],
    },
    crypto,
  );
}
const keys = async () =>
  (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;

/** `n` copies of `c` that differ in the serial number's last two bytes only (their signatures no longer verify, at the same cost). */
function twins(c: x509.X509Certificate, n: number): Uint8Array[] {
  const der = new Uint8Array(c.rawData);
  const serial = Buffer.from(c.serialNumber, "hex");
  const end = Buffer.from(der).indexOf(serial) + serial.length;
  return Array.from({ length: n }, (_, i) => {
    const copy = der.slice();
    copy[end - 1] = i & 255;
    copy[end - 2] = i >> 8;
    return copy;
  });
}

describe("a hostile /cacerts: refused at fetch-ca within the deadline, before the password is sent", () => {
  it("two separate CA chains, none pinned: the device cannot choose (not-supported)", async () => {
    const [a, b, i, j] = await Promise.all([keys(), keys(), keys(), keys()]);
    const chains = [
      await cert("CN=Issuing A", i, "CN=Root A", a),
      await cert("CN=Root A", a, "CN=Root A", a),
      await cert("CN=Issuing B", j, "CN=Root B", b),
      await cert("CN=Root B", b, "CN=Root B", b),
    ];
    await attackCacerts(() => pkcs7(bag(chains)), "not-supported", /2 separate CA chains/);
  });

  it("150 CA certificates of one name: refused by their number, not verified pair by pair for minutes", async () => {
    const body = b64(certsOnlyPkcs7(twins(estCa.cert, 150)));
    await attackCacerts(() => pkcs7(body), "reply-malformed", /150 certificates/);
  });

  it("150 separate self-signed CAs: refused by their number, in a message of one short sentence", async () => {
    const roots = await Promise.all(Array.from({ length: 40 }, (_, n) => makeCa(`Root ${n}`)));
    // 150 distinct certificates: each root in up to four copies that differ in the serial number.
    const body = b64(certsOnlyPkcs7(Array.from({ length: 150 }, (_, n) => twins(roots[n % 40]!.cert, 150)[n]!)));
    await attackCacerts(() => pkcs7(body), "reply-malformed", /150 certificates/);
  });

  it("two CAs that issue one another, with no root: a loop, not 'no CA certificate'", async () => {
    const [a, b] = await Promise.all([keys(), keys()]);
    const loop = [await cert("CN=Loop A", a, "CN=Loop B", b), await cert("CN=Loop B", b, "CN=Loop A", a)];
    await attackCacerts(() => pkcs7(bag(loop)), "reply-malformed", /loop/);
  });

  it("an issuing CA under such a loop: refused too, not taken as a chain without a root", async () => {
    const [a, b, c] = await Promise.all([keys(), keys(), keys()]);
    const certs = [
      await cert("CN=Issuing", c, "CN=Loop A", a),
      await cert("CN=Loop A", a, "CN=Loop B", b),
      await cert("CN=Loop B", b, "CN=Loop A", a),
    ];
    await attackCacerts(() => pkcs7(bag(certs)), "reply-malformed", /loop/);
  });

  it("only certificates that are no CA: a server certificate, and a CA:TRUE one whose key usage forbids signing certificates", async () => {
    const k = await keys();
    const leaf = await cert("CN=est.example", await keys(), "CN=Hostile EST CA", estCa.keys, { ca: false });
    const noCertSign = await cert("CN=Not A Signer", k, "CN=Not A Signer", k, {
      usages: x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.cRLSign,
    });
    await attackCacerts(() => pkcs7(bag([leaf])), "reply-malformed", /no CA certificate/);
    await attackCacerts(() => pkcs7(bag([noCertSign])), "reply-malformed", /no CA certificate/);
  });

  it("a 10 MB body, with a Content-Length and without one: read up to 1 MiB, then dropped", async () => {
    const huge = Buffer.alloc(10 * 1024 * 1024, "A");
    await attackCacerts(() => pkcs7(huge), "reply-malformed", /larger than 1048576 bytes/);
    await attackCacerts(
      () => (res) => {
        res.writeHead(200, { "content-type": "application/pkcs7-mime", "transfer-encoding": "chunked" });
        for (let i = 0; i < 10; i++) res.write(huge.subarray(0, 1024 * 1024));
        res.end();
      },
      "reply-malformed",
      /larger than 1048576 bytes/,
    );
  });
});

/** Hostile base64 and PKCS#7 bodies, each with what its refusal says. */
function hostileBodies(): [string, string | Buffer, RegExp][] {
  const good = Buffer.from(certsOnlyPkcs7([new Uint8Array(estCa.cert.rawData)]));
  const tlv = (tag: number, body: Buffer) =>
    Buffer.concat([Buffer.from([tag, 0x82, body.length >> 8, body.length & 255]), body]);
  const signedDataOid = Buffer.from("06092a864886f70d010702", "hex");
  // 10,000 SEQUENCEs inside the SignedData's [0], in indefinite lengths.
  const deep = Buffer.concat([
    Buffer.alloc(20_000, Buffer.from([0x30, 0x80])),
    Buffer.from([5, 0]),
    Buffer.alloc(20_000),
  ]);
  // The outer SEQUENCE in an indefinite length whose end-of-contents never comes.
  const noEnd = Buffer.concat([Buffer.from([0x30, 0x80]), good.subarray(good[1]! < 128 ? 2 : 2 + (good[1]! & 0x7f))]);
  // The certificate's basicConstraints value is broken: the PKCS#7 parses, the certificate does not.
  const brokenCert = Buffer.from(new Uint8Array(estCa.cert.rawData));
  const bc = brokenCert.indexOf(Buffer.from("0603551d13", "hex"));
  brokenCert[bc + 12] = 0x04;
  // The certificate's outer length in long form (BER, not DER): its fingerprint would name other bytes.
  const der = Buffer.from(new Uint8Array(estCa.cert.rawData));
  const berCert = Buffer.concat([Buffer.from([0x30, 0x83, 0, der[2]!, der[3]!]), der.subarray(4)]);
  return [
    ["not base64", "this is not base64 !!", /in base64/],
    ["padding in the middle", `${b64(good).slice(0, 40)}==${b64(good).slice(40)}`, /in base64/],
    ["a NUL in the base64", `${b64(good).slice(0, 40)}\u0000${b64(good).slice(40)}`, /in base64/],
    ["700 KB of zeros in base64", b64(Buffer.alloc(700_000)), /certs-only PKCS#7/],
    ["an HTML page", "<html><title>Login</title></html>", /in base64/],
    ["a PKCS#7 cut in half", b64(good.subarray(0, good.length >> 1)), /certs-only PKCS#7/],
    ["an indefinite length without its end", b64(noEnd), /certs-only PKCS#7/],
    ["SEQUENCEs nested 10,000 deep", b64(tlv(0x30, Buffer.concat([signedDataOid, tlv(0xa0, deep)]))), /nesting depth/],
    ["a certificate inside that does not parse", b64(certsOnlyPkcs7([new Uint8Array(brokenCert)])), /BasicConstraints/],
    ["a certificate inside in BER", b64(swapCert(good, der, berCert)), /certs-only PKCS#7/],
  ];
}

/** `p7` with `from` replaced by `to`, every length around it grown to match (SEQUENCE, [0], SignedData, SET: long forms). */
function swapCert(p7: Buffer, from: Buffer, to: Buffer): Buffer {
  const grow = to.length - from.length;
  const out = Buffer.from(p7.toString("hex").replace(from.toString("hex"), to.toString("hex")), "hex");
  // Each enclosing length before the certificate is in long form (0x82 hi lo): add `grow` to it.
  const at = p7.indexOf(from);
  for (let i = 0; i + 3 < at; i++) {
    if (out[i + 1] === 0x82 && [0x30, 0xa0, 0x31].includes(out[i]!)) {
      const n = out.readUInt16BE(i + 2);
      if (i + 4 + n >= at + from.length) out.writeUInt16BE(n + grow, i + 2);
    }
  }
  return out;
}

describe("hostile base64 and PKCS#7: one sentence (reply-malformed) within the deadline, nothing written", () => {
  it.each([
    "not base64",
    "padding in the middle",
    "a NUL in the base64",
    "700 KB of zeros in base64",
    "an HTML page",
    "a PKCS#7 cut in half",
    "an indefinite length without its end",
    "SEQUENCEs nested 10,000 deep",
    "a certificate inside that does not parse",
    "a certificate inside in BER",
  ])("%s: at /cacerts (before the password), and as the issued certificate", async (name) => {
    const [, body, says] = hostileBodies().find(([n]) => n === name)!;
    await attackCacerts(() => pkcs7(body), "reply-malformed", says);
    const server = await hostile({
      cacerts: () => pkcs7(bag([estCa.cert])),
      csrattrs: () => ({ status: 204 }),
      simpleenroll: () => pkcs7(body),
    });
    expectRefused(await enrollAgainst(server.url), "submit-csr", "reply-malformed", says);
  });

  it("the same PKCS#7 in BER's indefinite lengths (as BouncyCastle writes it) is read: it is the malformed one that is refused", async () => {
    const good = Buffer.from(certsOnlyPkcs7([new Uint8Array(estCa.cert.rawData)]));
    const skip = (b: Buffer, at: number) => (b[at + 1]! < 128 ? at + 2 : at + 2 + (b[at + 1]! & 0x7f));
    const inner = skip(good, skip(good, skip(good, 0) + 11));
    const ber = Buffer.concat([
      Buffer.from([0x30, 0x80]),
      good.subarray(skip(good, 0), skip(good, 0) + 11),
      Buffer.from([0xa0, 0x80, 0x30, 0x80]),
      good.subarray(inner),
      Buffer.alloc(6),
    ]);
    const server = await hostile({ cacerts: () => pkcs7(b64(ber)), csrattrs: () => ({ status: 204 }) });
    // /cacerts is taken; the run goes on to the enrollment, which the server refuses (500).
    const o = await enrollAgainst(server.url);
    expect(o.error.step).toBe("submit-csr");
    expect(o.written).toEqual([]);
  });
});

describe("Retry-After on a 202: no tight loop, no wait past the deadline, one sentence", () => {
  /** Enrollment answered 202 with `retryAfter` each time; the submissions and how the run ended. */
  async function pending(retryAfter: string): Promise<{ o: Outcome; posts: Seen[] }> {
    const server = await hostile({
      cacerts: () => pkcs7(bag([estCa.cert])),
      csrattrs: () => ({ status: 204 }),
      simpleenroll: () => ({ status: 202, headers: { "retry-after": retryAfter } }),
    });
    const o = await enrollAgainst(server.url);
    expectRefused(o, "submit-csr", "deadline", /not yet approved/);
    return { o, posts: server.seen.filter((s) => s.path === "simpleenroll") };
  }

  /** At least a second between two submissions (each carries the password). */
  function expectPaced(posts: Seen[]): void {
    expect(posts.length).toBeGreaterThanOrEqual(1);
    expect(posts.length).toBeLessThanOrEqual(Math.ceil(DEADLINE_MS / 1000) + 1);
    for (let i = 1; i < posts.length; i++) expect(posts[i]!.at - posts[i - 1]!.at).toBeGreaterThanOrEqual(950);
  }

  it("0: a second between submissions, until the deadline", async () => {
    expectPaced((await pending("0")).posts);
  });

  it("an HTTP date in the past: as 0", async () => {
    expectPaced((await pending("Thu, 01 Jan 1970 00:00:00 GMT")).posts);
  });

  it.each(["-1", "-5", "5.5", "soon"])(
    "%s (no delay-seconds, no HTTP date): no instruction, the default minute, past the deadline: one submission, at once",
    async (value) => {
      const { o, posts } = await pending(value);
      expect(posts).toHaveLength(1);
      expect(o.ms).toBeLessThan(DEADLINE_MS / 2);
      expect(o.error.message).toMatch(/next try in 60 s/);
    },
  );

  it.each(["1000000000000", "9".repeat(400)])(
    "%s seconds: past the deadline, one submission, at once, a wait said in days",
    async (value) => {
      const { o, posts } = await pending(value);
      expect(posts).toHaveLength(1);
      expect(o.ms).toBeLessThan(DEADLINE_MS / 2);
      expect(o.error.message).toMatch(/next try in \d+ days/);
    },
  );
});
