import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ExitCode } from "../../src/cli/exit-codes.js";
import { exitCodeOf } from "../../src/cli/hints.js";
import { CertRetrieverError, REASONS } from "../../src/errors.js";
import { parseCertificate } from "../../src/flows/certificate.js";
import { toPem } from "../../src/keys/key-types.js";
import { platformSays } from "../../src/protocols/dojot/says.js";
import { noRoute, whichApi } from "../../src/protocols/dojot-auto/client.js";
import { parseAuthReply, parseCaReply, parseSignReply } from "../../src/protocols/ejbca-rest/client.js";
import {
  generationOf,
  parseX509CaReply,
  parseX509CertificateReply,
} from "../../src/protocols/x509-identity-mgmt/client.js";
import { bodySummary, type HttpReply } from "../../src/transport/http.js";
import { fuzzRuns } from "../helpers/fuzz.js";
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
        "no API found with those values",
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

const runs = fuzzRuns("reply parsing");

describe("reply parsing holds against generated replies: no crash, no unhandled rejection, one sentence each", () => {
  it("generated replies (10,000 in test:long) through the /auth, /ca and /sign parsers, x509-identity-mgmt's, the certificate parser and API detection", () => {
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
        ...runs,
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
    // 10,000 runs (npm run test:long) take 46-64 s on a loaded 2-core machine: the default 60 s is not their bound.
  }, 180_000);
});
