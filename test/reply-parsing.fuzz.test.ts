import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CertRetrieverError } from "../src/errors.js";
import { ExitCode } from "../src/exit-codes.js";
import { parseCertificate } from "../src/pipeline/certificate.js";
import { parseAuthReply, parseCaReply, parseSignReply } from "../src/platform/dojot-legacy.js";
import { platformSays, type HttpReply } from "../src/platform/http.js";

/** Replies a platform (or anything pretending to be one) could send. */
const text = fc.oneof(
  { arbitrary: fc.string(), weight: 10 },
  { arbitrary: fc.string({ unit: "binary" }), weight: 10 },
  { arbitrary: fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b).toString("latin1")), weight: 10 },
  { arbitrary: fc.uint8Array({ maxLength: 2000 }).map((b) => Buffer.from(b).toString("base64")), weight: 10 },
  { arbitrary: fc.constantFrom("<html><title>x</title></html>", "", "null", "[]", "{}", '"str"', "0"), weight: 10 },
  // Deep JSON and huge strings (up to the 1 MiB reply cap): rarer, since each costs milliseconds.
  { arbitrary: fc.integer({ min: 1, max: 100_000 }).map((n) => "[".repeat(n) + "]".repeat(n)), weight: 1 },
  { arbitrary: fc.integer({ min: 1, max: 20_000 }).map((n) => '{"a":'.repeat(n) + "1" + "}".repeat(n)), weight: 1 },
  { arbitrary: fc.integer({ min: 100_000, max: 1_048_576 }).map((n) => JSON.stringify({ certificate: "A".repeat(n) })), weight: 1 },
);
const value = fc.oneof(text, fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.array(fc.string(), { maxLength: 3 }), fc.object({ maxDepth: 3 }));
const shaped = fc.oneof(
  fc.record({ jwt: value }),
  fc.record({ jwt: fc.tuple(fc.base64String(), fc.base64String(), fc.base64String()).map((p) => p.join(".")) }),
  fc.record({ certificate: value }),
  fc.record({ certificate: fc.uint8Array({ maxLength: 1500 }).map((b) => Buffer.from(b).toString("base64")) }),
  fc.record({ status: fc.oneof(value, fc.record({ data: value, responseType: value })) }),
  fc.record({ status: fc.record({ data: fc.uint8Array({ maxLength: 1500 }).map((b) => Buffer.from([0x30, 0x82, ...b]).toString("base64")) }) }),
  fc.record({ message: value, status: value, error: value, detail: value }),
  fc.object({ maxDepth: 5 }),
).map((o) => JSON.stringify(o));
const reply: fc.Arbitrary<HttpReply> = fc.record({
  status: fc.oneof(fc.constantFrom(200, 201, 400, 401, 403, 404, 429, 500, 502, 503), fc.integer({ min: 100, max: 599 })),
  contentType: fc.constantFrom("application/json", "text/html", "", "application/octet-stream", "application/json; charset=utf-8"),
  text: fc.oneof(text, shaped),
});

/** A parse either succeeds or fails with one clear sentence of our own; any other throw is a crash. */
function outcome(parse: () => unknown): void {
  try {
    parse();
  } catch (err) {
    if (!(err instanceof CertRetrieverError)) throw err;
    expect(err.message).not.toMatch(/\n/);
    expect(err.message.length).toBeLessThan(1000);
    expect(Object.values(ExitCode)).toContain(err.exitCode);
  }
}

describe("reply parsing holds against generated replies: no crash, no unhandled rejection, one sentence each", () => {
  it("10,000 replies through the /auth, /ca and /sign parsers and the certificate parser", () => {
    let count = 0;
    fc.assert(
      fc.property(reply, (r) => {
        count++;
        expect(typeof platformSays(r)).toBe("string");
        outcome(() => parseAuthReply(r, "admin"));
        outcome(() => parseCertificate(parseCaReply(r, "IOTmidCA").der, "the CA", "fetch-ca", ExitCode.CA));
        outcome(() => parseCertificate(parseSignReply(r, "dev").der, "the certificate", "validate", ExitCode.VALIDATION));
      }),
      { numRuns: 10_000 },
    );
    expect(count).toBe(10_000);
  });
});
