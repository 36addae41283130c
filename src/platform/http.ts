import { request } from "undici";
import { CertRetrieverError, describeCause, type Step } from "../errors.js";
import { ExitCode } from "../exit-codes.js";

/** The most a platform reply may hold; dojot's replies are a few kilobytes. */
export const MAX_REPLY_BYTES = 1024 * 1024;

/** Timeouts of one request, in milliseconds. */
export interface HttpTimeouts {
  connect: number;
  headers: number;
  body: number;
}

/** Defaults suited to a gateway on a LAN or the internet. */
export const DEFAULT_TIMEOUTS: HttpTimeouts = { connect: 10_000, headers: 30_000, body: 30_000 };

/** A reply: status, content type and the body as text (at most {@link MAX_REPLY_BYTES}). */
export interface HttpReply {
  status: number;
  contentType: string;
  text: string;
}

/** One HTTP request, the body JSON-encoded. Network failures become a temporary error (exit 75) of `step`. */
export async function httpJson(
  step: Step,
  url: URL,
  init: { method: "GET" | "POST"; headers?: Record<string, string>; body?: unknown; timeouts?: HttpTimeouts },
): Promise<HttpReply> {
  const timeouts = init.timeouts ?? DEFAULT_TIMEOUTS;
  const headers: Record<string, string> = { accept: "application/json", ...init.headers };
  let body: string | undefined;
  if (init.body !== undefined) {
    body = JSON.stringify(init.body);
    headers["content-type"] = "application/json";
  }
  try {
    const res = await request(url, {
      method: init.method,
      headers,
      body,
      headersTimeout: timeouts.headers,
      bodyTimeout: timeouts.body,
      signal: AbortSignal.timeout(timeouts.connect + timeouts.headers + timeouts.body),
    });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > MAX_REPLY_BYTES) {
        res.body.destroy();
        throw new CertRetrieverError(
          `${step} failed: the platform's reply is larger than ${MAX_REPLY_BYTES} bytes, which no dojot reply is`,
          { step, exitCode: stepExitCode(step) },
        );
      }
      chunks.push(chunk as Buffer);
    }
    const contentType = String(res.headers["content-type"] ?? "");
    return { status: res.statusCode, contentType, text: Buffer.concat(chunks).toString("utf8") };
  } catch (err) {
    if (err instanceof CertRetrieverError) throw err;
    throw new CertRetrieverError(
      `${step} failed: the platform at ${url.origin} could not be reached: ${describeCause(err)}`,
      {
        step,
        exitCode: ExitCode.TEMPORARY,
        hint: "check --platform and the network; this is temporary, so run again later",
        cause: err,
      },
    );
  }
}

/** The exit code of a failure at `step` that is not temporary. */
export function stepExitCode(step: Step): ExitCode {
  switch (step) {
    case "authenticate":
      return ExitCode.AUTH;
    case "fetch-ca":
      return ExitCode.CA;
    case "submit-csr":
      return ExitCode.CSR;
    case "validate":
      return ExitCode.VALIDATION;
    case "store":
      return ExitCode.STORAGE;
    default:
      return ExitCode.UNEXPECTED;
  }
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
    for (const key of ["message", "error"] as const) {
      const value = obj[key];
      if (typeof value === "string" && value.trim()) {
        const detail = typeof obj.detail === "string" ? `: ${obj.detail}` : "";
        return oneLine(value + detail);
      }
    }
    return oneLine(reply.text);
  }
  if (/^\s*</.test(reply.text) || reply.contentType.includes("html")) {
    const title = /<title>([^<]*)<\/title>/i.exec(reply.text)?.[1]?.trim();
    return title ? `an HTML page titled "${oneLine(title)}"` : "an HTML page";
  }
  return reply.text.trim() ? oneLine(reply.text) : "an empty body";
}

function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > 300 ? `${flat.slice(0, 297)}...` : flat;
}

/** Whether an HTTP status means "try again later": overload, gateway trouble, rate limiting. */
export function isTemporaryStatus(status: number): boolean {
  return status === 429 || status === 502 || status === 503 || status === 504;
}
