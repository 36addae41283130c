import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import * as tls from "node:tls";
import { probeTlsAlert } from "./tls-probe.js";
import { setTimeout as sleep } from "node:timers/promises";
import type { Dispatcher } from "./undici-core.js";
import { NodeHttpClient, TIMEOUT_CODES } from "./node-http.js";
import { bareHost, isLoopbackHost } from "./loopback.js";
import { CertRetrieverError, describeCause, errnoOf, type Reason, type Step } from "../errors.js";

/** The most a platform reply may hold; dojot's replies are a few kilobytes. */
export const MAX_REPLY_BYTES = 1024 * 1024;

/** Timeouts of one request, in milliseconds. */
export interface HttpTimeouts {
  connect: number;
  headers: number;
  body: number;
}

/** TLS material for the connection to the platform (PEM texts). */
export interface TlsSettings {
  /** Extra CA certificates trusted for the platform, beside the system's. */
  ca?: string[];
  /** Client certificate and key, for gateways that require one. */
  cert?: string;
  key?: string;
  /**
   * false: the server's certificate is not verified. Only for EST's provisional fetch of /cacerts
   * (RFC 7030 §4.1.1), whose answer is then checked against the pinned fingerprint before
   * anything else is sent.
   */
  verify?: boolean;
  /** false: only `ca` is trusted, not the system's CAs (EST's explicit trust anchors). */
  system?: boolean;
}

/** A request: JSON (`body`) or a text body of another type (`text`, with `contentType`). */
export interface RequestInit {
  method: "GET" | "POST" | "PATCH" | "DELETE";
  headers?: Record<string, string>;
  body?: unknown;
  text?: string;
  contentType?: string;
  once?: boolean;
}

/** A retry that is about to happen, for progress output and `--json`. */
export interface RetryInfo {
  step: Step;
  /** The attempt that failed, from 1. */
  attempt: number;
  attempts: number;
  reason: string;
  waitMs: number;
}

/** How the client talks to the platform. */
export interface HttpSettings {
  timeouts: HttpTimeouts;
  /** Attempts in all for a request that fails temporarily (1 = no retry). */
  attempts: number;
  /** The run's deadline, as epoch milliseconds. */
  deadline: number;
  tls?: TlsSettings;
  /** Aborts everything (an interrupt). */
  signal?: AbortSignal;
  onRetry?: (info: RetryInfo) => void;
  /** Exponential backoff with full jitter: the n-th wait is random in [0, min(cap, base * 2^(n-1))]. */
  backoffBaseMs?: number;
  backoffCapMs?: number;
}

/** Defaults for a gateway on a LAN or the internet. */
export const DEFAULT_TIMEOUTS: HttpTimeouts = { connect: 10_000, headers: 30_000, body: 30_000 };

/** A reply: status, content type and the body as text (at most {@link MAX_REPLY_BYTES}). */
export interface HttpReply {
  status: number;
  contentType: string;
  text: string;
  /** The Retry-After header, if any. */
  retryAfter?: string;
  /** What was asked, e.g. `POST http://gw:8000/auth`, for messages. */
  request?: string;
}

/** A failure that a later attempt may not meet (network trouble, overload). */
class Temporary extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
    readonly reply?: HttpReply,
    /** The request certainly did not reach the platform (safe to repeat even a signing request). */
    readonly notSent = false,
  ) {
    super(message);
  }
}

/**
 * The platform's HTTP client: verified TLS (system CAs plus any given), HTTP(S)_PROXY and NO_PROXY
 * honoured (through undici; a direct connection uses Node's own client, see node-http.ts),
 * timeouts on connect, headers and body, a cap on reply size, and retries of temporary failures
 * within the run's deadline. It also learns the platform's clock from the
 * `Date` header.
 */
export class HttpClient {
  /** Platform time minus local time, from the last reply that carried a `Date` header. */
  clockSkewMs: number | undefined;
  private proxied: Dispatcher | undefined;
  private direct: NodeHttpClient | undefined;
  private readonly derived: HttpClient[] = [];

  constructor(
    private readonly settings: HttpSettings,
    private readonly parent?: HttpClient,
  ) {}

  /**
   * A client with the same settings but other TLS material: more trusted CAs, another client
   * certificate, or (`verify: false`) none of the server's checked. Closed with this one; the
   * platform's clock it learns is this one's too.
   */
  withTls(tls: TlsSettings): HttpClient {
    const base = this.settings.tls ?? {};
    const client = new HttpClient({ ...this.settings, tls: { ...base, ...tls, ca: [...(base.ca ?? []), ...(tls.ca ?? [])] } }, this);
    this.derived.push(client);
    return client;
  }

  /** The run's deadline, as epoch milliseconds. */
  get deadline(): number {
    return this.settings.deadline;
  }

  private learnSkew(ms: number): void {
    this.clockSkewMs = ms;
    this.parent?.learnSkew(ms);
  }

  /**
   * One JSON request at `step`, retried while the failure is temporary; non-2xx replies are
   * returned. A request that is not idempotent (`once`: a signing request, which EJBCA honours a
   * single time) is retried only when it cannot have reached the platform: connection refused or
   * not established, DNS failure, or the gateway's own 429/503 before any upstream.
   */
  async json(step: Step, url: URL, init: RequestInit): Promise<HttpReply> {
    const { attempts } = this.settings;
    for (let attempt = 1; ; attempt++) {
      try {
        const reply = await this.once(step, url, init);
        if (isTemporaryStatus(reply.status)) {
          // Kong answers 429 (rate limit) and 503 (no upstream) itself, before the service sees anything.
          throw new Temporary(`HTTP ${reply.status}`, parseRetryAfter(reply.retryAfter), reply, reply.status === 429 || reply.status === 503);
        }
        return reply;
      } catch (err) {
        if (!(err instanceof Temporary)) throw err;
        const wait = this.waitBefore(attempt + 1, err.retryAfterMs);
        if (init.once && !err.notSent) {
          throw temporaryError(step, url, err, attempt, false, "the request may have reached the platform, so it is not repeated");
        }
        if (attempt >= attempts || wait === undefined) {
          throw temporaryError(step, url, err, attempt, wait === undefined && attempt < attempts);
        }
        this.settings.onRetry?.({ step, attempt, attempts, reason: err.message, waitMs: wait });
        await sleep(wait, undefined, { signal: this.settings.signal }).catch(() => this.throwIfAborted(step));
      }
    }
  }

  /** The wait before `attempt`, or undefined if it would end past the deadline. */
  private waitBefore(attempt: number, retryAfterMs: number | undefined): number | undefined {
    const base = this.settings.backoffBaseMs ?? 500;
    const cap = this.settings.backoffCapMs ?? 30_000;
    const wait = retryAfterMs ?? Math.floor(Math.random() * Math.min(cap, base * 2 ** (attempt - 2)));
    return Date.now() + wait < this.settings.deadline ? wait : undefined;
  }

  /** Throws the interrupt's reason; for a request that may have reached the platform (`maybeSent`), says so. */
  private throwIfAborted(step: Step, maybeSent = false): never {
    const reason: unknown = this.settings.signal?.reason;
    if (reason instanceof CertRetrieverError) {
      if (!maybeSent) throw reason;
      throw new CertRetrieverError(
        `${reason.message.split(";")[0]} during ${step}; nothing was written here, but the request may have reached the platform, which may have issued a certificate`,
        { step: reason.step, reason: reason.reason, facts: { ...reason.facts, maybeSent: true }, cause: reason },
      );
    }
    throw new CertRetrieverError(`${step} failed: interrupted`, { step, reason: "interrupted", facts: { maybeSent } });
  }

  private async once(step: Step, url: URL, init: RequestInit): Promise<HttpReply> {
    const { timeouts, deadline } = this.settings;
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new Temporary("the deadline passed", undefined, undefined, true); // nothing was sent
    const timeout = AbortSignal.timeout(Math.min(remaining, timeouts.connect + timeouts.headers + timeouts.body));
    const signal = this.settings.signal ? AbortSignal.any([this.settings.signal, timeout]) : timeout;
    const headers: Record<string, string> = { accept: "application/json", ...init.headers };
    let body: string | undefined;
    if (init.body !== undefined) {
      body = JSON.stringify(init.body);
      headers["content-type"] = "application/json";
    } else if (init.text !== undefined) {
      body = init.text;
      headers["content-type"] = init.contentType ?? "text/plain";
    }
    try {
      const proxied = await this.proxiedDispatcher(url);
      const res = proxied
        ? await proxied.request({ origin: url.origin, path: `${url.pathname}${url.search}`, method: init.method, headers, body, headersTimeout: timeouts.headers, bodyTimeout: timeouts.body, signal })
        : await (this.direct ??= new NodeHttpClient(() => this.tlsOptions())).request({ url, method: init.method, headers, body, signal, timeouts });
      const date = res.headers.date;
      if (typeof date === "string" && !Number.isNaN(Date.parse(date))) this.learnSkew(Date.parse(date) - Date.now());
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length;
        if (size > MAX_REPLY_BYTES) {
          res.body.destroy();
          throw new CertRetrieverError(`${step} failed: the platform's reply is larger than ${MAX_REPLY_BYTES} bytes, which no dojot reply is`, {
            step,
            reason: "not-a-dojot-platform",
            facts: { status: res.statusCode, host: url.host },
          });
        }
        chunks.push(chunk as Buffer);
      }
      const retryAfter = res.headers["retry-after"];
      return {
        status: res.statusCode,
        contentType: String(res.headers["content-type"] ?? ""),
        text: Buffer.concat(chunks).toString("utf8"),
        retryAfter: typeof retryAfter === "string" ? retryAfter : undefined,
        request: `${init.method} ${url.origin}${url.pathname}`,
      };
    } catch (err) {
      // undici rejects with the interrupt's own reason: it must be told apart from our errors first.
      if (this.settings.signal?.aborted) this.throwIfAborted(step, init.once);
      if (err instanceof CertRetrieverError) throw err;
      const socketClosed = /^(UND_ERR_SOCKET|ECONNRESET)$/.test(String((err as NodeJS.ErrnoException).code ?? ""));
      if (isClientCertRefusal(err) || (socketClosed && url.protocol === "https:" && isClientCertRefusal(await this.probeTls(url)))) {
        throw new CertRetrieverError(`${step} failed: the gateway at ${url.host} requires a client certificate or refused ours: ${describeCause(err)}`, {
          step,
          reason: "client-cert-required",
          facts: { host: url.host, errno: errnoOf(err) },
          cause: err,
        });
      }
      if (isTlsNotSpoken(err)) {
        throw new CertRetrieverError(`${step} failed: the server at ${url.host} does not speak TLS on that port: ${describeCause(err)}; is it plain HTTP?`, {
          step,
          reason: "tls-not-spoken",
          facts: { host: url.host, errno: errnoOf(err) },
          cause: err,
        });
      }
      if (isTlsTrustError(err)) {
        throw new CertRetrieverError(`${step} failed: the TLS certificate of ${url.host} is not trusted: ${describeCause(err)}`, {
          step,
          reason: "tls-untrusted",
          facts: { host: url.host, errno: errnoOf(err) },
          cause: err,
        });
      }
      if (timeout.aborted) throw new Temporary(Date.now() >= deadline ? "the deadline passed" : "the request timed out");
      const code = String((err as NodeJS.ErrnoException).code ?? "");
      const notSent = code === TIMEOUT_CODES.connect || /^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH)$/.test(code);
      const timedOut = (Object.keys(TIMEOUT_CODES) as (keyof typeof TIMEOUT_CODES)[]).find((k) => TIMEOUT_CODES[k] === code);
      if (timedOut) {
        throw new Temporary(`the request timed out (no ${timedOut === "connect" ? "connection" : "reply"} within ${timeouts[timedOut] / 1000} s)`, undefined, undefined, notSent);
      }
      throw new Temporary(describeCause(err), undefined, undefined, notSent);
    }
  }

  /** Trusted CAs and client certificate; read when a TLS connection is first made (plain http never reads the system's CA store, which costs some 50 ms on Node 24). */
  private tlsOptions() {
    return {
      ca: [...(this.settings.tls?.system === false ? [] : systemCaCertificates()), ...(this.settings.tls?.ca ?? [])],
      cert: this.settings.tls?.cert,
      key: this.settings.tls?.key,
      ...(this.settings.tls?.verify === false ? { rejectUnauthorized: false } : {}),
    };
  }

  /**
   * undici's dispatcher for HTTP(S)_PROXY and NO_PROXY, when the environment names a proxy for the
   * URL's scheme (https falls back to HTTP_PROXY, as undici does); otherwise undefined: a direct
   * connection. Never a proxy for this machine (as NO_PROXY conventions have it): a loopback
   * platform over plain http would otherwise hand the password and the token in clear to whatever
   * proxy the environment names.
   */
  private async proxiedDispatcher(url: URL): Promise<Dispatcher | undefined> {
    if (isLoopbackHost(url.hostname) || !proxyNamedFor(url.protocol)) return undefined;
    if (!this.proxied) {
      const { EnvHttpProxyAgent } = await import("./undici-core.js");
      const tlsOptions = { ...this.tlsOptions(), timeout: this.settings.timeouts.connect };
      this.proxied ??= new EnvHttpProxyAgent({ connect: tlsOptions, requestTls: tlsOptions });
    }
    return this.proxied;
  }

  /** The TLS alert a direct handshake meets, for a connection undici saw only closed (see tls-probe.ts). */
  private async probeTls(url: URL): Promise<{ code: string } | undefined> {
    const host = bareHost(url.hostname);
    const code = await probeTlsAlert({ ...this.tlsOptions(), host, port: Number(url.port || 443), servername: isIP(host) ? undefined : host });
    return code === undefined ? undefined : { code };
  }

  /** Closes idle connections so the process can exit. */
  async close(): Promise<void> {
    await Promise.all(this.derived.map((client) => client.close()));
    this.direct?.close();
    await this.proxied?.close();
  }
}

/** Whether the environment names a proxy for `protocol`, read as undici's EnvHttpProxyAgent reads it. */
function proxyNamedFor(protocol: string): boolean {
  const http = process.env.http_proxy ?? process.env.HTTP_PROXY;
  const https = process.env.https_proxy ?? process.env.HTTPS_PROXY;
  return Boolean(protocol === "https:" ? https || http : http);
}

let systemCas: string[] | undefined;

/** The system's trusted CAs (the OS store where Node can read it, else Debian's bundle) plus Node's own. */
export function systemCaCertificates(): string[] {
  if (!systemCas) {
    const getCa = (tls as unknown as { getCACertificates?: (kind: string) => string[] }).getCACertificates;
    let system: string[] = [];
    if (getCa) {
      system = getCa("system");
    } else {
      for (const bundle of ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"]) {
        try {
          system = [readFileSync(bundle, "utf8")];
          break;
        } catch {
          // try the next location
        }
      }
    }
    systemCas = [...tls.rootCertificates, ...system];
  }
  return systemCas;
}

function isClientCertRefusal(err: unknown): boolean {
  const code = String((err as NodeJS.ErrnoException | undefined)?.code ?? "");
  return /ALERT_(CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN|HANDSHAKE_FAILURE)/.test(code);
}

/** The reply to our ClientHello was not TLS: plain HTTP ("wrong version number"), or another protocol. */
function isTlsNotSpoken(err: unknown): boolean {
  const code = String(errnoOf(err) ?? "");
  return /^ERR_SSL_(WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|HTTP_REQUEST|RECORD_LAYER_FAILURE|UNKNOWN_PROTOCOL)$/.test(code) || /wrong version number|packet length too long|http request/i.test(err instanceof Error ? err.message : "");
}

function isTlsTrustError(err: unknown): boolean {
  const code = String((err as NodeJS.ErrnoException | undefined)?.code ?? "");
  return /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ALTNAME|ERR_SSL_|ERR_TLS_/.test(code) && !/TIMEOUT/.test(code);
}

function temporaryError(step: Step, url: URL, err: Temporary, attempts: number, deadlineCut: boolean, note?: string): CertRetrieverError {
  const tries = attempts === 1 ? "" : ` (${attempts} attempts)`;
  const what = err.reply
    ? `the platform at ${url.origin} answered HTTP ${err.reply.status}: ${platformSays(err.reply)}`
    : `the platform at ${url.origin} could not be reached: ${err.message}`;
  const deadline = deadlineCut || err.message === "the deadline passed";
  const reason: Reason = note ? "maybe-sent" : deadline ? "deadline" : err.reply ? "overloaded" : "unreachable";
  return new CertRetrieverError(`${step} failed: ${what}${tries}${deadlineCut ? "; the deadline leaves no time to try again" : ""}${note ? `; ${note}` : ""}`, {
    step,
    reason,
    facts: {
      host: url.host,
      ...(err.reply ? replyFacts(err.reply) : {}),
      ...(note ? { maybeSent: true } : {}),
    },
    cause: err,
  });
}

/** Milliseconds from a Retry-After header (seconds or an HTTP date), or undefined. */
export function parseRetryAfter(value: string | undefined): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number.parseInt(value, 10) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
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
export function redactTokens(text: string): string {
  return text.replace(TOKEN_RUN, (run) => (holdsToken(run) ? "<token>" : run));
}

function oneLine(text: string): string {
  const flat = redactTokens(text).replace(/\s+/g, " ").trim();
  return flat.length > 300 ? `${flat.slice(0, 297)}...` : flat;
}

/** Whether an HTTP status means "try again later": overload, gateway trouble, rate limiting. */
export function isTemporaryStatus(status: number): boolean {
  return status === 429 || status === 502 || status === 503 || status === 504;
}
