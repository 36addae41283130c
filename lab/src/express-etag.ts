/**
 * How x509-identity-mgmt's `res.json` answers, since it runs on Express 4 ("express": "^4.17.1"):
 * through dojot-microservice-sdk-js v0.1.11 `lib/webUtils/framework/createExpress.js` (dojot
 * v0.7.0/v0.8.0, `src/DIContainer.js`) or `src/app.js` (v0.5.0/v0.6.0). Neither sets Express's
 * `etag` setting, so its default holds: every body sent gets a weak ETag (`W/"<length hex>-<SHA-1,
 * base64, 27 characters>"`), and a GET whose If-None-Match names it (or is `*`) is answered 304 with
 * no body, Content-Type or Content-Length, unless the request says `Cache-Control: no-cache`. No
 * Last-Modified is sent, so an If-Modified-Since is never answered 304. (Its compression middleware
 * changes nothing for a client that sends no Accept-Encoding, as cert-retriever does not.)
 */
import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";

/** The weak ETag Express gives a body. */
function expressEtag(body: Buffer): string {
  const hash = createHash("sha1").update(body).digest("base64").slice(0, 27);
  return `W/"${body.length.toString(16)}-${hash}"`;
}

/** Whether the request's validators match the reply's ETag, as Express's `req.fresh` decides for a GET or HEAD. */
function fresh(req: IncomingMessage, status: number, etag: string): boolean {
  if (req.method !== "GET" && req.method !== "HEAD") return false;
  if (!((status >= 200 && status < 300) || status === 304)) return false;
  const noneMatch = req.headers["if-none-match"];
  const modifiedSince = req.headers["if-modified-since"];
  if (!noneMatch && !modifiedSince) return false;
  if (/(?:^|,)\s*no-cache\s*(?:,|$)/.test(req.headers["cache-control"] ?? "")) return false;
  if (noneMatch && noneMatch !== "*") {
    const bare = (tag: string) => tag.replace(/^W\//, "");
    const tags = noneMatch.split(",").map((t) => t.trim());
    if (!tags.some((t) => bare(t) === bare(etag))) return false;
  }
  // No Last-Modified on the reply: an If-Modified-Since cannot be satisfied.
  return !modifiedSince;
}

/** Answers JSON as Express's `res.status(status).json(body)` does: with its ETag, or 304 when the client's matches. */
export function sendExpressJson(req: IncomingMessage, res: ServerResponse, status: number, body: unknown): void {
  const bytes = Buffer.from(JSON.stringify(body));
  const etag = expressEtag(bytes);
  if (fresh(req, status, etag)) {
    res.writeHead(304, { etag }).end();
    return;
  }
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": bytes.length, etag });
  res.end(bytes);
}
