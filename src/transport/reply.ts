/**
 * A reply as the protocols read it, and what a server said in it, in a few words fit for a message:
 * whatever the shape of its error body, with anything shaped like a token redacted.
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
  /** What was asked, e.g. `POST http://gw:8000/auth`, for messages. */
  request?: string;
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
 * What the platform said, in a few words, whatever the shape of its error body: dojot's
 * `{message}`/`{status, message}`, Kong's `{message}`, x509-identity-mgmt's `{error, detail}`,
 * an HTML page, or nothing.
 */
export function platformSays(reply: HttpReply): string {
  const obj = jsonObject(reply);
  if (obj) {
    const schema = schemaErrorText(obj);
    for (const key of ["message", "error"] as const) {
      const value = obj[key];
      if (typeof value === "string" && value.trim()) {
        const detail = typeof obj.detail === "string" ? `: ${obj.detail}` : schema ? `: ${schema}` : "";
        return oneLine(value + detail);
      }
    }
    return oneLine(schema ? `Input data schema validation failure: ${schema}` : reply.text);
  }
  if (/^\s*</.test(reply.text) || reply.contentType.includes("html")) {
    const title = /<title>([^<]*)<\/title>/i.exec(reply.text)?.[1]?.trim();
    return title ? `an HTML page titled "${oneLine(title)}"` : "an HTML page";
  }
  if (!reply.text.trim()) return "an empty body";
  return printable(reply.text) ? oneLine(reply.text) : `${reply.text.length} bytes that are not text`;
}

/** The plain facts of a reply, for an error: its status and what the platform said. */
export function replyFacts(reply: HttpReply): { status: number; platformMessage: string } {
  return { status: reply.status, platformMessage: platformSays(reply) };
}

/**
 * The first schema error of x509-identity-mgmt, in either generation's shape: v0.5
 * `{"schema$id", schemaErrors: [...]}`, v0.7+ `{error, detail: {schemaId, schemaErrors: [...]}}`.
 */
function schemaErrorText(obj: Record<string, unknown>): string | undefined {
  const detail = obj.detail && typeof obj.detail === "object" ? (obj.detail as Record<string, unknown>) : undefined;
  const errors = Array.isArray(obj.schemaErrors) ? obj.schemaErrors : Array.isArray(detail?.schemaErrors) ? detail.schemaErrors : undefined;
  const first = errors?.[0] as Record<string, unknown> | undefined;
  if (!first || typeof first !== "object") return undefined;
  const where = [first.instancePath, first.dataPath].find((p) => typeof p === "string" && p) as string | undefined;
  const what = typeof first.message === "string" ? first.message : JSON.stringify(first);
  return `${where ? `${where} ` : ""}${what}${errors!.length > 1 ? ` (and ${errors!.length - 1} more)` : ""}`;
}

function printable(text: string): boolean {
  // eslint-disable-next-line no-control-regex
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

function oneLine(text: string): string {
  const flat = redactTokens(text).replace(/\s+/g, " ").trim();
  return flat.length > 300 ? `${flat.slice(0, 297)}...` : flat;
}

