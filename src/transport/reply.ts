/**
 * A reply as the protocols read it, and what a server said in it, in a few words fit for a message,
 * with anything shaped like a token redacted. The transport knows no platform's error shapes.
 */
/** A reply: status, content type and the body as text (bounded: see `RequestInit.maxBytes`). */
export interface HttpReply {
  status: number;
  contentType: string;
  text: string;
  /** The Retry-After header, if any. */
  retryAfter?: string;
  /** The Location header of a redirect, if any (redirects are returned, never followed). */
  location?: string;
  /** The ETag and Last-Modified headers, if any: what a conditional request names the body by. */
  etag?: string;
  lastModified?: string;
  /** What was asked, e.g. `POST http://gw:8000/auth`, for messages. */
  request?: string;
}

/** What a body fetched before is named by (its ETag, its Last-Modified), to ask for it again only if it changed. */
export interface Validators {
  etag?: string;
  lastModified?: string;
}

/** A reply's validators, to keep beside its body. */
export function validatorsOf(reply: HttpReply): Validators {
  return {
    ...(reply.etag ? { etag: reply.etag } : {}),
    ...(reply.lastModified ? { lastModified: reply.lastModified } : {}),
  };
}

/** The headers that ask for a body only if it changed since `known` (RFC 9110, 13.1.2 and 13.1.3). */
export function conditionalHeaders(known: Validators | undefined): Record<string, string> {
  return {
    ...(known?.etag ? { "if-none-match": known.etag } : {}),
    ...(known?.lastModified ? { "if-modified-since": known.lastModified } : {}),
  };
}

/** The reply parsed as a JSON object, or undefined if it is not one. */
export function jsonObject(reply: HttpReply): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(reply.text);
    return value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A reply's body in a few words, whatever the server: a JSON object's `message` or `error` (the
 * usual place of an API's own words), an HTML page's title, plain text, or what it is when it is
 * none of those. What one platform's error bodies mean is its protocol's to say.
 */
export function bodySummary(reply: HttpReply): string {
  const obj = jsonObject(reply);
  if (obj) {
    for (const key of ["message", "error"] as const) {
      const value = obj[key];
      if (typeof value === "string" && value.trim()) return oneLine(value);
    }
    return oneLine(reply.text);
  }
  if (/^\s*</.test(reply.text) || reply.contentType.includes("html")) {
    const title = /<title>([^<]*)<\/title>/i.exec(reply.text)?.[1]?.trim();
    return title ? `an HTML page titled "${oneLine(title)}"` : "an HTML page";
  }
  if (!reply.text.trim()) return "an empty body";
  return printable(reply.text) ? oneLine(reply.text) : `${reply.text.length} bytes that are not text`;
}

/** The plain facts of a reply, for an error: its status and what the server said. */
export function replyFacts(reply: HttpReply): { status: number; platformMessage: string } {
  return { status: reply.status, platformMessage: bodySummary(reply) };
}

function printable(text: string): boolean {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it looks for
  return !/[\u0000-\u0008\u000e-\u001f\ufffd]/.test(text);
}

/** Runs of token characters long enough to hold a JWT (one character class: linear to match). */
const TOKEN_RUN = /[A-Za-z0-9_\-+/=.]{40,}/g;

/** Whether a run holds a JWT: two consecutive dot-separated parts of 16 or more base64url characters. */
function holdsToken(run: string): boolean {
  const parts = run.split(".");
  const b64url = /^[\w-]{16}$/; // fixed-length tests: no backtracking on long parts
  for (let i = 0; i + 1 < parts.length; i++) {
    if (b64url.test(parts[i]!.slice(-16)) && b64url.test(parts[i + 1]!.slice(0, 16))) return true;
  }
  return false;
}

/** Replaces anything shaped like a JWT with `<token>`: nothing quoted from a reply may carry one. */
function redactTokens(text: string): string {
  return text.replace(TOKEN_RUN, (run) => (holdsToken(run) ? "<token>" : run));
}

/** Text from a reply on one line of at most 300 characters, anything shaped like a JWT redacted. */
export function oneLine(text: string): string {
  const flat = redactTokens(text).replace(/\s+/g, " ").trim();
  return flat.length > 300 ? `${flat.slice(0, 297)}...` : flat;
}
