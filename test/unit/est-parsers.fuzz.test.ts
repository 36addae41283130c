import * as asn1js from "asn1js";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { certsOnlyPkcs7, encodeCsrAttrs } from "../../lab/src/pkcs7.js";
import { CertRetrieverError } from "../../src/errors.js";
import { decodeBase64 } from "../../src/keys/base64.js";
import { KEY_TYPES } from "../../src/keys/key-types.js";
import { type CsrAttr, certsFromPkcs7, decodeCsrAttrs, OIDS } from "../../src/keys/pkcs7.js";
import { formatPkcs11Uri, type Pkcs11Uri, parsePkcs11Uri } from "../../src/keys/pkcs11-uri.js";
import * as x509 from "../../src/keys/x509.js";
import { readCsrAttrs } from "../../src/protocols/est/csrattrs.js";
import { pkcs7Reply } from "../../src/protocols/est/replies.js";
import type { HttpReply } from "../../src/transport/http.js";
import { fuzzRuns } from "../helpers/fuzz.js";
import { makeCa } from "../helpers/pki.js";

/** A real certificate, so that generated replies also hold well-formed ones, with right and wrong fingerprints. */
const real = (await makeCa("Fuzz CA")).cert;

const runs = fuzzRuns("EST and PKCS#11 properties");

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
