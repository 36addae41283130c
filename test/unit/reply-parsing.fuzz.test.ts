import { createHash } from "node:crypto";
import * as asn1js from "asn1js";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { certsOnlyPkcs7, encodeCsrAttrs } from "../../lab/src/pkcs7.js";
import { ExitCode } from "../../src/cli/exit-codes.js";
import { exitCodeOf } from "../../src/cli/hints.js";
import { CertRetrieverError, REASONS } from "../../src/errors.js";
import { parseCertificate } from "../../src/flows/certificate.js";
import { decodeBase64 } from "../../src/keys/base64.js";
import { KEY_TYPES, toPem } from "../../src/keys/key-types.js";
import { type CsrAttr, certsFromPkcs7, decodeCsrAttrs, OIDS } from "../../src/keys/pkcs7.js";
import { formatPkcs11Uri, type Pkcs11Uri, parsePkcs11Uri } from "../../src/keys/pkcs11-uri.js";
import * as x509 from "../../src/keys/x509.js";
import { platformSays } from "../../src/protocols/dojot/says.js";
import { noRoute, whichApi } from "../../src/protocols/dojot-auto/client.js";
import { parseAuthReply, parseCaReply, parseSignReply } from "../../src/protocols/ejbca-rest/client.js";
import { readCsrAttrs } from "../../src/protocols/est/csrattrs.js";
import { pkcs7Reply } from "../../src/protocols/est/replies.js";
import {
  generationOf,
  parseX509CaReply,
  parseX509CertificateReply,
} from "../../src/protocols/x509-identity-mgmt/client.js";
import { bodySummary, type HttpReply } from "../../src/transport/http.js";
import { makeCa } from "../helpers/pki.js";

/** A real certificate, so that generated replies also hold well-formed ones, with right and wrong fingerprints. */
const real = (await makeCa("Fuzz CA")).cert;
const realPem = toPem(real.rawData, "CERTIFICATE").trimEnd();
const realFp = createHash("sha256")
  .update(new Uint8Array(real.rawData))
  .digest("hex")
  .toUpperCase()
  .match(/../g)!
  .join(":");
const realDer = Buffer.from(real.rawData);

/** Replies a platform (or anything pretending to be one) could send. */
const text = fc.oneof(
  { arbitrary: fc.string(), weight: 10 },
  { arbitrary: fc.string({ unit: "binary" }), weight: 10 },
  { arbitrary: fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b).toString("latin1")), weight: 10 },
  { arbitrary: fc.uint8Array({ maxLength: 2000 }).map((b) => Buffer.from(b).toString("base64")), weight: 10 },
  { arbitrary: fc.constantFrom("<html><title>x</title></html>", "", "null", "[]", "{}", '"str"', "0"), weight: 10 },
  // Deep JSON and huge strings (up to the 1 MiB reply cap): rarer, since each costs milliseconds.
  { arbitrary: fc.integer({ min: 1, max: 100_000 }).map((n) => "[".repeat(n) + "]".repeat(n)), weight: 1 },
  { arbitrary: fc.integer({ min: 1, max: 20_000 }).map((n) => `${'{"a":'.repeat(n)}1${"}".repeat(n)}`), weight: 1 },
  {
    arbitrary: fc.integer({ min: 100_000, max: 1_048_576 }).map((n) => JSON.stringify({ certificate: "A".repeat(n) })),
    weight: 1,
  },
);
const value = fc.oneof(
  text,
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.object({ maxDepth: 3 }),
);
const shaped = fc
  .oneof(
    fc.record({ jwt: value }),
    fc.record({ jwt: fc.tuple(fc.base64String(), fc.base64String(), fc.base64String()).map((p) => p.join(".")) }),
    fc.record({ certificate: value }),
    fc.record({ certificate: fc.uint8Array({ maxLength: 1500 }).map((b) => Buffer.from(b).toString("base64")) }),
    fc.record({ status: fc.oneof(value, fc.record({ data: value, responseType: value })) }),
    fc.record({
      status: fc.record({
        data: fc.uint8Array({ maxLength: 1500 }).map((b) => Buffer.from([0x30, 0x82, ...b]).toString("base64")),
      }),
    }),
    fc.record({ message: value, status: value, error: value, detail: value }),
    fc.object({ maxDepth: 5 }),
    // x509-identity-mgmt's shapes, with the real certificate, its fingerprint right or wrong, and its refusals.
    fc.record({
      caPem: fc.constantFrom(realPem, `${realPem}\n`, realPem.replace(/\n/g, "\r\n"), realPem.slice(0, -40)),
      certificateFingerprint: fc.constantFrom(
        realFp,
        realFp.replace(/:/g, ""),
        realFp.toLowerCase(),
        `00${realFp.slice(2)}`,
        "",
      ),
    }),
    fc.record({
      certificatePem: fc.oneof(fc.constant(realPem), value),
      certificateFingerprint: fc.constantFrom(realFp, `FF${realFp.slice(2)}`),
    }),
    fc.record({ certificate: fc.constantFrom(realDer.toString("base64"), `${realDer.toString("base64")}AAAA`) }),
    fc.record({
      error: fc.constantFrom(
        "Not Found",
        "No records found for the following parameters: {}",
        "Input data schema validation failure.",
      ),
    }),
    fc.record({
      message: fc.constantFrom(
        "Not Found",
        "no route and no API found with those values",
        "no Route matched with those values",
        "No records found …",
      ),
    }),
    fc.record({
      schema$id: fc.string(),
      schemaErrors: fc.array(fc.object({ maxDepth: 1, values: [fc.string(), fc.integer()] }), { maxLength: 3 }),
    }),
  )
  .map((o) => JSON.stringify(o));
const reply: fc.Arbitrary<HttpReply> = fc.record({
  status: fc.oneof(
    fc.constantFrom(200, 201, 400, 401, 403, 404, 429, 500, 502, 503),
    fc.integer({ min: 100, max: 599 }),
  ),
  contentType: fc.constantFrom(
    "application/json",
    "text/html",
    "",
    "application/octet-stream",
    "application/json; charset=utf-8",
  ),
  text: fc.oneof(text, shaped),
});

/** A JSON reply. */
function good(status: number, body: unknown): HttpReply {
  return { status, contentType: "application/json", text: JSON.stringify(body) };
}

/** A parse either succeeds or fails with one clear sentence of our own; any other throw is a crash. */
function outcome(parse: () => unknown): void {
  try {
    parse();
  } catch (err) {
    if (!(err instanceof CertRetrieverError)) throw err;
    expect(err.message).not.toMatch(/\n/);
    expect(err.message.length).toBeLessThan(1000);
    expect(Object.keys(REASONS)).toContain(err.reason);
    expect(Object.values(ExitCode)).toContain(exitCodeOf(err));
  }
}

describe("reply parsing holds against generated replies: no crash, no unhandled rejection, one sentence each", () => {
  it("10,000 replies through the /auth, /ca and /sign parsers, x509-identity-mgmt's, the certificate parser and API detection", () => {
    const accepted = { legacyCa: 0, x509Ca: 0, x509Cert: 0 };
    fc.assert(
      fc.property(reply, reply, (r, other) => {
        expect(typeof platformSays(r)).toBe("string");
        expect(typeof bodySummary(r)).toBe("string");
        outcome(() => parseAuthReply(r, "admin"));
        outcome(() => parseCertificate(parseCaReply(r, "IOTmidCA").der, "the CA", "fetch-ca", "reply-malformed"));
        outcome(() => parseCertificate(parseSignReply(r, "dev").der, "the certificate", "validate", "cert-invalid"));
        // What the x509 parsers accept is exactly what the platform vouched for: the SHA-256 it named.
        outcome(() => {
          const { der } = parseX509CaReply(r);
          expect(createHash("sha256").update(der).digest("hex").toUpperCase()).toBe(
            String(JSON.parse(r.text).certificateFingerprint).replace(/:/g, "").toUpperCase(),
          );
          parseCertificate(der, "the CA", "fetch-ca", "reply-malformed");
          accepted.x509Ca++;
        });
        outcome(() => {
          const issued = parseX509CertificateReply(r, "dev");
          expect(issued.fingerprint).toBe(JSON.parse(r.text).certificateFingerprint);
          accepted.x509Cert++;
        });
        outcome(() => {
          parseCertificate(parseCaReply(r, "IOTmidCA").der, "the CA", "fetch-ca", "reply-malformed");
          accepted.legacyCa++;
        });
        // Detection: "no route" only on a 404; a caPem always means x509-identity-mgmt; a release line only from a refusal.
        if (noRoute(r)) expect(r.status).toBe(404);
        const json = (() => {
          try {
            return JSON.parse(r.text) as unknown;
          } catch {
            return undefined;
          }
        })();
        const hasCaPem = Boolean(
          json && typeof json === "object" && typeof (json as Record<string, unknown>).caPem === "string",
        );
        expect(whichApi(r) === "x509").toBe(hasCaPem);
        const decided = whichApi(r, other);
        expect(["x509", "legacy", "neither"]).toContain(decided);
        if (decided === "neither") expect(noRoute(other)).toBe(true);
        if (generationOf(r) !== undefined) expect([400, 404]).toContain(r.status);
      }),
      // Well-formed replies first, so that the success paths are always taken (random ones reach them only now and then).
      {
        numRuns: 10_000,
        examples: [
          [good(200, { caPem: realPem, certificateFingerprint: realFp }), good(404, { message: "Not Found" })],
          [good(201, { certificatePem: realPem, certificateFingerprint: realFp }), good(404, { error: "Not Found" })],
          [
            good(200, { certificate: realDer.toString("base64") }),
            good(200, { certificate: realDer.toString("base64") }),
          ],
        ],
      },
    );
    // The success paths were taken (else the properties above would hold vacuously).
    expect(accepted.x509Ca).toBeGreaterThan(0);
    expect(accepted.x509Cert).toBeGreaterThan(0);
    expect(accepted.legacyCa).toBeGreaterThan(0);
    // 46-64 s on a loaded 2-core machine, on main as here: the default 60 s is not its bound.
  }, 180_000);
});

/**
 * The runs of the properties below: CERT_RETRIEVER_FUZZ_RUNS (default 1000, as CI runs them), from
 * the seed CERT_RETRIEVER_FUZZ_SEED, or a new one, printed so that a failure can be repeated.
 */
const RUNS = Number(process.env.CERT_RETRIEVER_FUZZ_RUNS ?? 1000);
const SEED = Number(process.env.CERT_RETRIEVER_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
console.log(
  `EST and PKCS#11 properties: ${RUNS} runs each, seed ${SEED} (CERT_RETRIEVER_FUZZ_SEED=${SEED} repeats them)`,
);
const runs = { numRuns: RUNS, seed: SEED };

/** One sentence of ours: an error of the closed list, on one line, short. */
function expectOneSentence(err: unknown, reason?: string): void {
  expect(err).toBeInstanceOf(CertRetrieverError);
  const e = err as CertRetrieverError;
  if (reason) expect(e.reason).toBe(reason);
  expect(e.message).not.toMatch(/[\n\r\u2028\u2029]/);
  expect(e.message.length).toBeLessThan(1000);
}

const len = (n: number) =>
  n < 128 ? [n] : n < 256 ? [0x81, n] : n < 65_536 ? [0x82, n >> 8, n & 255] : [0x83, n >> 16, (n >> 8) & 255, n & 255];
const tlv = (tag: number, body: Uint8Array) => Buffer.concat([Buffer.from([tag, ...len(body.length)]), body]);
/** `depth` SEQUENCEs around NULL, in definite or indefinite lengths (built in one pass: 10,000 deep is common here). */
function nested(depth: number, indefinite: boolean): Buffer {
  if (indefinite)
    return Buffer.concat([
      Buffer.alloc(depth * 2, Buffer.from([0x30, 0x80])),
      Buffer.from([5, 0]),
      Buffer.alloc(depth * 2),
    ]);
  const heads: number[][] = [];
  for (let size = 2, i = 0; i < depth; i++) {
    heads.push([0x30, ...len(size)]);
    size += heads[i]!.length;
  }
  return Buffer.concat([Buffer.from(heads.reverse().flat()), Buffer.from([5, 0])]);
}
/** A certs-only PKCS#7 with the outer SEQUENCE, [0] and SignedData in BER's indefinite lengths (BouncyCastle writes them), with `eoc` of their six end-of-contents bytes. */
function indefinite(der: Uint8Array, eoc = 6): Buffer {
  const b = Buffer.from(der);
  const skip = (at: number) => (b[at + 1]! < 128 ? at + 2 : at + 2 + (b[at + 1]! & 0x7f));
  const oid = b.subarray(skip(0), skip(0) + 11);
  const body = b.subarray(skip(skip(skip(0) + 11)));
  return Buffer.concat([
    Buffer.from([0x30, 0x80]),
    oid,
    Buffer.from([0xa0, 0x80, 0x30, 0x80]),
    body,
    Buffer.alloc(eoc),
  ]);
}

const other = (await makeCa("Fuzz Other CA")).cert;
const goodCerts = [new Uint8Array(real.rawData), new Uint8Array(other.rawData)];
const goodP7 = Buffer.from(certsOnlyPkcs7(goodCerts));
const SIGNED_DATA_OID = Buffer.from("06092a864886f70d010702", "hex");

/** A PKCS#7 body and whether it is the good one unchanged (in DER or BER): bit flips, cuts, insertions, lengths, nesting, noise. */
const pkcs7Bytes: fc.Arbitrary<{ bytes: Buffer; intact: boolean }> = fc.oneof(
  fc.constant({ bytes: goodP7, intact: true }),
  fc.constant({ bytes: indefinite(goodP7), intact: true }),
  fc.integer({ min: 0, max: 5 }).map((eoc) => ({ bytes: indefinite(goodP7, eoc), intact: false })),
  fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }).map((flips) => {
    const bytes = Buffer.from(goodP7);
    for (const [at, x] of flips) bytes[at % bytes.length]! ^= x;
    return { bytes, intact: false };
  }),
  fc.nat().map((n) => ({ bytes: goodP7.subarray(0, n % goodP7.length), intact: false })),
  fc.tuple(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 40 })).map(([n, junk]) => {
    const at = n % goodP7.length;
    return { bytes: Buffer.concat([goodP7.subarray(0, at), junk, goodP7.subarray(at)]), intact: false };
  }),
  fc.tuple(fc.integer({ min: 1, max: 10_000 }), fc.boolean()).map(([depth, indef]) => ({
    bytes: tlv(0x30, Buffer.concat([SIGNED_DATA_OID, tlv(0xa0, nested(depth, indef))])),
    intact: false,
  })),
  fc.uint8Array({ maxLength: 3000 }).map((b) => ({ bytes: Buffer.from(b), intact: false })),
);

/** The body's text: base64 as RFC 8951 has it, wrapped as MIME does, or broken (noise, padding inside, stray characters). */
const pkcs7Text: fc.Arbitrary<{ text: string; bytes?: Buffer; intact: boolean }> = fc.oneof(
  { arbitrary: pkcs7Bytes.map(({ bytes, intact }) => ({ text: bytes.toString("base64"), bytes, intact })), weight: 6 },
  {
    arbitrary: pkcs7Bytes.map(({ bytes, intact }) => ({
      text: `${
        bytes
          .toString("base64")
          .match(/.{1,64}/g)
          ?.join("\r\n") ?? ""
      }\r\n`,
      bytes,
      intact,
    })),
    weight: 2,
  },
  {
    arbitrary: fc
      .tuple(fc.nat(), fc.constantFrom("=", "==", "!", "\u0000", "%", "-", "_", "é", " = "))
      .map(([n, junk]) => {
        const b64 = goodP7.toString("base64");
        const at = n % b64.length;
        return { text: b64.slice(0, at) + junk + b64.slice(at), intact: false };
      }),
    weight: 2,
  },
  { arbitrary: fc.string({ unit: "binary", maxLength: 400 }).map((text) => ({ text, intact: false })), weight: 1 },
);

describe("EST's PKCS#7 reader holds against generated bodies", () => {
  it("a body is refused in one sentence (reply-malformed), or gives certificates that are in it byte for byte, parse, and are the ones sent", () => {
    let intactSeen = 0;
    fc.assert(
      fc.property(pkcs7Text, ({ text, bytes, intact }) => {
        const reply: HttpReply = { status: 200, contentType: "application/pkcs7-mime", text };
        let certs: Uint8Array[];
        try {
          certs = pkcs7Reply("fetch-ca", reply, "the CA certificates");
        } catch (err) {
          expectOneSentence(err, "reply-malformed");
          expect(intact, "the good PKCS#7 (DER or BER) was refused").toBe(false);
          return;
        }
        const sent = bytes ?? Buffer.from(decodeBase64(text.replace(/[ \t]/g, "").trim()) ?? []);
        expect(certs.length).toBeGreaterThan(0);
        for (const der of certs) {
          expect(sent.indexOf(der), "a certificate not in the body as sent").toBeGreaterThanOrEqual(0);
          // Every part of it reads (@peculiar/x509 parses extensions only when asked: a broken one must be refused here).
          const cert = new x509.X509Certificate(new Uint8Array(der));
          void [cert.subject, cert.issuer, cert.notBefore, cert.notAfter, cert.extensions];
          expect(Buffer.from(cert.rawData)).toEqual(Buffer.from(der));
        }
        if (intact) {
          expect(certs.map((c) => Buffer.from(c))).toEqual(goodCerts.map((c) => Buffer.from(c)));
          intactSeen++;
        }
        // The reader is the same without the reply around it.
        expect(certsFromPkcs7(new Uint8Array(sent)).length).toBe(certs.length);
      }),
      runs,
    );
    expect(intactSeen).toBeGreaterThan(0);
  });
});

/** An OID: one the client reads, or any, up to thousands of arcs long now and then. */
const oid = fc.oneof(
  {
    arbitrary: fc.constantFrom(...Object.values(OIDS), "1.3.132.0.34", "1.2.840.10045.3.1.7", "1.3.132.0.35"),
    weight: 4,
  },
  {
    arbitrary: fc
      .tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 39 }), fc.array(fc.nat(), { maxLength: 8 }))
      .map(([a, b, rest]) => [a, b, ...rest].join(".")),
    weight: 4,
  },
  {
    arbitrary: fc
      .integer({ min: 100, max: 3000 })
      .map((n) => `1.2.${Array.from({ length: n }, (_, i) => i + 1).join(".")}`),
    weight: 1,
  },
);
const attrValue = fc.oneof(
  oid.map((o) => new Uint8Array(new asn1js.ObjectIdentifier({ value: o }).toBER())),
  fc.integer({ min: -1, max: 100_000 }).map((n) => new Uint8Array(new asn1js.Integer({ value: n }).toBER())),
  fc.string({ maxLength: 20 }).map((t) => new Uint8Array(new asn1js.Utf8String({ value: t }).toBER())),
);
const csrAttr: fc.Arbitrary<CsrAttr> = fc.oneof(
  oid.map((o) => ({ oid: o })),
  fc.record({ attribute: oid, values: fc.array(attrValue, { maxLength: 4 }) }),
);
const csrAttrs = fc.oneof(
  { arbitrary: fc.array(csrAttr, { maxLength: 8 }), weight: 9 },
  { arbitrary: fc.array(csrAttr, { minLength: 8, maxLength: 30 }), weight: 1 },
);
/** What a server's /csrattrs may hold: an encoding of attributes, cut or flipped, nested, or noise. */
const csrAttrsBytes = fc.oneof(
  csrAttrs.map((a) => Buffer.from(encodeCsrAttrs(a))),
  fc.tuple(csrAttrs, fc.nat(), fc.integer({ min: 1, max: 255 })).map(([a, at, x]) => {
    const b = Buffer.from(encodeCsrAttrs(a));
    if (b.length > 0) b[at % b.length]! ^= x;
    return b;
  }),
  fc.tuple(csrAttrs, fc.nat()).map(([a, n]) => {
    const b = Buffer.from(encodeCsrAttrs(a));
    return b.subarray(0, n % (b.length + 1));
  }),
  fc.tuple(fc.integer({ min: 1, max: 10_000 }), fc.boolean()).map(([d, indef]) => tlv(0x30, nested(d, indef))),
  fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)),
);

/** Attributes as text, compared fast: each OID, and each value's DER in hex. */
const flat = (attrs: CsrAttr[]) =>
  attrs.map((a) =>
    "oid" in a ? a.oid : `${a.attribute}: ${a.values.map((v) => Buffer.from(v).toString("hex")).join(", ")}`,
  );

/** What readCsrAttrs may say: a key type it can make, and at most five short notes. */
function expectBoundedReading(attrs: CsrAttr[]): void {
  const read = readCsrAttrs(attrs);
  if (read.keyType !== undefined) expect(Object.keys(KEY_TYPES)).toContain(read.keyType);
  expect(read.notes.length).toBeLessThanOrEqual(5);
  for (const note of read.notes) {
    expect(note).not.toMatch(/[\n\r]/);
    expect(note.length).toBeLessThanOrEqual(300);
  }
  const keyOids: string[] = [OIDS.rsaEncryption, OIDS.ecPublicKey, OIDS.ecdsaWithSHA256, OIDS.ecdsaWithSHA384];
  if (read.keyType !== undefined)
    expect(attrs.some((a) => keyOids.includes("oid" in a ? a.oid : a.attribute))).toBe(true);
}

describe("EST's /csrattrs parser holds against generated bodies", () => {
  it("what a server encodes is read back as it was, and read into at most five short notes", () => {
    fc.assert(
      fc.property(csrAttrs, (attrs) => {
        const decoded = decodeCsrAttrs(encodeCsrAttrs(attrs));
        expect(flat(decoded)).toEqual(flat(attrs));
        expectBoundedReading(decoded);
      }),
      runs,
    );
  });

  it("anything else is refused with a plain Error of one line, or read within the same bounds", () => {
    fc.assert(
      fc.property(csrAttrsBytes, (bytes) => {
        let attrs: CsrAttr[];
        try {
          attrs = decodeCsrAttrs(new Uint8Array(bytes));
        } catch (err) {
          expect(err).toBeInstanceOf(Error);
          expect((err as Error).message).not.toMatch(/\n/);
          return;
        }
        expectBoundedReading(attrs);
      }),
      runs,
    );
  });
});

/** Text for a URI's values: any Unicode, characters outside the BMP and controls included. */
const uriText = fc.string({ unit: "binary", maxLength: 12 });
const pkcs11Uri: fc.Arbitrary<Pkcs11Uri> = fc.record(
  {
    token: uriText,
    serial: uriText,
    manufacturer: uriText,
    model: uriText,
    slotId: fc.nat(),
    object: uriText.filter((t) => t !== ""),
    id: fc.uint8Array({ maxLength: 20 }),
    type: fc.constantFrom("private", "public", "cert"),
    modulePath: uriText,
    moduleName: uriText,
    pinSource: uriText,
  },
  { requiredKeys: [] },
);
const PIN = "7391-secret-pin";
/** Attribute names: RFC 7512's, vendor ones, ones that are no attribute (an object's own property names among them). */
const attrName = fc.oneof(
  fc.constantFrom("token", "serial", "manufacturer", "model", "slot-id", "object", "id", "type", "library-version"),
  fc.constantFrom("module-path", "module-name", "pin-source", "pin-value", "x-vendor", "TOKEN", "Slot-Id"),
  fc.constantFrom("constructor", "__proto__", "toString", "hasOwnProperty", "valueOf"),
  fc.string({ unit: "binary", maxLength: 8 }),
);
const attrValueText = fc.oneof(
  uriText,
  fc.constantFrom("%", "%2", "%zz", "%41", "", "0x10", "1e3", "-0", " 5", "007", "99999999999999999999", "a\nb"),
);
const pkcs11Text = fc.oneof(
  pkcs11Uri.map((u) => formatPkcs11Uri(u)),
  fc
    .tuple(
      fc.array(fc.tuple(attrName, attrValueText), { maxLength: 5 }),
      fc.array(fc.tuple(attrName, attrValueText), { maxLength: 4 }),
      fc.boolean(),
    )
    .map(
      ([path, query, withPin]) =>
        `pkcs11:${path.map(([n, v]) => `${n}=${v}`).join(";")}${query.length || withPin ? "?" : ""}${[...query, ...(withPin ? [["pin-value", PIN]] : [])].map(([n, v]) => `${n}=${v}`).join("&")}`,
    ),
  fc.string({ unit: "binary", maxLength: 200 }).map((t) => `pkcs11:${t}`),
  fc.string({ unit: "binary", maxLength: 60 }),
);
const FIELDS = new Set([
  "token",
  "serial",
  "manufacturer",
  "model",
  "slotId",
  "object",
  "id",
  "type",
  "modulePath",
  "moduleName",
  "pinSource",
  "pinValue",
]);

describe("the PKCS#11 URI parser holds against generated URIs", () => {
  it("what it writes it reads back as it was", () => {
    fc.assert(
      fc.property(pkcs11Uri, (uri) => {
        expect(parsePkcs11Uri(formatPkcs11Uri(uri))).toEqual(uri);
      }),
      runs,
    );
  });

  it("a value written without %-escapes, any Unicode, is read as written", () => {
    fc.assert(
      fc.property(
        uriText.filter((t) => !/[;?&%]/.test(t)),
        (value) => {
          expect(parsePkcs11Uri(`pkcs11:token=${value};object=k`).token).toBe(value);
        },
      ),
      runs,
    );
  });

  it("anything else is a URI of known fields (slot-id a decimal number), or refused in one sentence (usage) that never shows the PIN", () => {
    fc.assert(
      fc.property(pkcs11Text, (text) => {
        let uri: Pkcs11Uri;
        try {
          uri = parsePkcs11Uri(text);
        } catch (err) {
          expectOneSentence(err, "usage");
          expect((err as Error).message.length).toBeLessThan(400);
          expect((err as Error).message).not.toContain(PIN);
          return;
        }
        for (const key of Object.keys(uri)) expect(FIELDS.has(key), `field '${key}'`).toBe(true);
        if (uri.slotId !== undefined) {
          const raw = /slot-id=([^;?]*)/i.exec(text)?.[1] ?? "";
          expect(raw).toMatch(/^\d+$/);
          expect(Number(raw)).toBe(uri.slotId);
        }
        // What it read, written and read again, is the same (the PIN is never written).
        const { pinValue: _, ...kept } = uri;
        expect(parsePkcs11Uri(formatPkcs11Uri(kept))).toEqual(kept);
      }),
      runs,
    );
  });
});
