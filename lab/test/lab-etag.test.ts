import { createHash } from "node:crypto";
import { type IncomingHttpHeaders, request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LabWithJwt, startLabWithJwt } from "../../test/helpers/lab.js";

// x509-identity-mgmt answers through Express 4's res.json, which names each body by a weak ETag
// and answers a matching If-None-Match with 304 (see lab/src/express-etag.ts for the code it follows).
let lab: LabWithJwt;
beforeAll(async () => {
  lab = await startLabWithJwt("etag-secret");
});
afterAll(() => lab?.close());

/** A GET by Node's own client (fetch would add `Cache-Control: no-cache` to a conditional request, as the Fetch standard says). */
function get(path: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
    const req = request(`${lab.url}${path}`, { headers: { authorization: `Bearer ${lab.jwt}`, ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("GET /x509/v1/ca and /x509/v1/ca/crl answer conditional requests as Express does", () => {
  it.each(["/x509/v1/ca", "/x509/v1/ca/crl"])(
    "%s: a weak ETag of the body's length and SHA-1; 304 with no body to a matching If-None-Match (or *); 200 otherwise",
    async (path) => {
      const first = await get(path);
      expect(first.status).toBe(200);
      const sha1 = createHash("sha1").update(first.body).digest("base64").slice(0, 27);
      const etag = `W/"${first.body.length.toString(16)}-${sha1}"`;
      expect(first.headers.etag).toBe(etag);
      expect(first.headers["content-type"]).toBe("application/json; charset=utf-8");
      expect(first.headers["last-modified"]).toBeUndefined();
      for (const match of [etag, etag.slice(2), `"other", ${etag}`, "*"]) {
        const again = await get(path, { "if-none-match": match });
        expect([again.status, again.body.length, again.headers.etag]).toEqual([304, 0, etag]);
        expect(again.headers["content-type"]).toBeUndefined();
        expect(again.headers["content-length"]).toBeUndefined();
      }
      // Another tag, a request that asks for no cache, or If-Modified-Since (no Last-Modified is sent): the body again.
      const others: Record<string, string>[] = [
        { "if-none-match": 'W/"0-other"' },
        { "if-none-match": etag, "cache-control": "no-cache" },
        { "if-modified-since": new Date(Date.now() + 86_400_000).toUTCString() },
        { "if-none-match": etag, "if-modified-since": new Date().toUTCString() },
      ];
      for (const headers of others) {
        const whole = await get(path, headers);
        expect([whole.status, whole.body.equals(first.body)]).toEqual([200, true]);
      }
    },
  );
});
