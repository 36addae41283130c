/**
 * The one HTTP client of cert-retriever, for every protocol and for CRL distribution points: verified
 * TLS (system CAs plus any given), HTTP(S)_PROXY and NO_PROXY, timeouts on connect, headers and body,
 * a bound on every reply's size, and retries of temporary failures within the run's deadline. It
 * speaks HTTP and knows no platform: the protocols word what they know better.
 */
import { isIP, type LookupFunction } from "node:net";
import { CertRetrieverError, type Step } from "../errors.js";
import { readBounded } from "./bounded-body.js";
import {
  closedUnderTls,
  hostNotFound,
  networkFailure,
  oversizedReply,
  temporaryError,
  tlsFailure,
} from "./failures.js";
import { bareHost } from "./loopback.js";
import { NodeHttpClient } from "./node-http.js";
import { openProxySender, proxyNamedFor } from "./proxy.js";
import type { HttpReply } from "./reply.js";
import {
  isTemporaryStatus,
  type OnWait,
  parseRetryAfter,
  type RetryPolicy,
  Temporary,
  type WaitInfo,
  withRetries,
} from "./retry.js";
import type { HttpTimeouts, RawReply, Sender } from "./sender.js";
import { probeTlsAlert } from "./tls-probe.js";
import { type TlsSettings, tlsOptionsOf } from "./trust-anchors.js";

export {
  bodySummary,
  conditionalHeaders,
  type HttpReply,
  jsonObject,
  oneLine,
  replyFacts,
  type Validators,
  validatorsOf,
} from "./reply.js";
export { type OnWait, parseRetryAfter, type RetryInfo, type WaitInfo } from "./retry.js";
export type { HttpTimeouts } from "./sender.js";
export type { TlsSettings } from "./trust-anchors.js";

/** The most a reply may hold unless the request says otherwise; a platform's replies are a few kilobytes. */
const MAX_REPLY_BYTES = 1024 * 1024;

/** A request: JSON (`body`) or a text body of another type (`text`, with `contentType`). */
export interface RequestInit {
  method: "GET" | "POST" | "PATCH" | "DELETE";
  headers?: Record<string, string>;
  body?: unknown;
  text?: string;
  /** A binary body (CMP's and SCEP's DER messages), sent as `contentType`. */
  bytes?: Uint8Array;
  contentType?: string;
  /** Not idempotent (a signing request): repeated only when it certainly did not reach the server. */
  once?: boolean;
  /** The most the reply may hold, in bytes (default {@link MAX_REPLY_BYTES}). */
  maxBytes?: number;
  /** An earlier deadline for this request and its retries (epoch ms); the client's own still holds. */
  deadline?: number;
  /** How messages name the server (default "the platform"). */
  peer?: string;
}

/** How the client talks to servers: timeouts, TLS, the interrupt, and the retry policy. */
export interface HttpSettings extends RetryPolicy {
  timeouts: HttpTimeouts;
  tls?: TlsSettings;
  /** Aborts everything (an interrupt). */
  signal?: AbortSignal;
  /** Where HTTP_PROXY, HTTPS_PROXY and NO_PROXY are read; default this process's environment. */
  environment?: NodeJS.ProcessEnv;
  /** How a direct connection resolves host names; default the system's resolver (`dns.lookup`, getaddrinfo). */
  lookup?: LookupFunction;
  /** Told of each request while it waits for its reply, and of what a protocol waits for between requests. */
  onWait?: OnWait;
}

/** Defaults for a gateway on a LAN or the internet. */
export const DEFAULT_TIMEOUTS: HttpTimeouts = { connect: 10_000, headers: 30_000, body: 30_000 };

/** A reply whose body is kept as bytes (a CRL): what {@link HttpClient.request} resolves with. */
export interface HttpBytesReply extends Omit<HttpReply, "text"> {
  body: Buffer;
}

/**
 * The HTTP client: a direct connection on Node's own client (node-http.ts), or undici's through the
 * proxy the environment names (proxy.ts, loaded only then). It also learns the server's clock from
 * the `Date` header.
 */
export class HttpClient {
  /** Server time minus local time, from the last reply that carried a `Date` header. */
  clockSkewMs: number | undefined;
  private direct: Sender | undefined;
  private proxied: Promise<Sender> | undefined;
  private readonly derived: HttpClient[] = [];

  constructor(
    private readonly settings: HttpSettings,
    private readonly parent?: HttpClient,
  ) {}

  /**
   * A client with the same settings but other TLS material: more trusted CAs, another client
   * certificate, or (`verify: false`) none of the server's checked. Closed with this one; the
   * server's clock it learns is this one's too.
   */
  withTls(tls: TlsSettings): HttpClient {
    const base = this.settings.tls ?? {};
    const client = new HttpClient(
      { ...this.settings, tls: { ...base, ...tls, ca: [...(base.ca ?? []), ...(tls.ca ?? [])] } },
      this,
    );
    this.derived.push(client);
    return client;
  }

  /** The run's deadline, as epoch milliseconds. */
  get deadline(): number {
    return this.settings.deadline;
  }

  /** Tells the run's observer what it waits for (a protocol's wait between requests); returns what ends the wait. */
  waiting(wait: WaitInfo): () => void {
    return this.settings.onWait?.(wait) ?? (() => {});
  }

  private learnSkew(ms: number): void {
    this.clockSkewMs = ms;
    this.parent?.learnSkew(ms);
  }

  /**
   * One request at `step`, its reply's body as text, retried while the failure is temporary; non-2xx
   * replies are returned, and so are redirects (never followed). A request that is not idempotent
   * (`once`: a signing request, which a CA may honour a single time) is retried only when it cannot
   * have reached the server: connection refused or not established, a name server that did not
   * answer, or the gateway's own 429/503 before any upstream.
   */
  async json(step: Step, url: URL, init: RequestInit): Promise<HttpReply> {
    return textOf(await this.request(step, url, init));
  }

  /** As {@link json}, the reply's body kept as bytes (a CRL, anything not text). */
  request(step: Step, url: URL, init: RequestInit): Promise<HttpBytesReply> {
    const peer = init.peer ?? "the platform";
    return withRetries(
      { ...this.settings, deadline: this.deadlineOf(init) },
      {
        step,
        attempt: () => this.attempt(step, url, init),
        repeatable: (err) => !init.once || err.notSent,
        giveUp: (err, attempts, why) => temporaryError(step, url, err, attempts, why, peer),
        signal: this.settings.signal,
        interrupted: () => this.throwIfAborted(step),
      },
    );
  }

  /** One attempt; a status that means "try again later" is a temporary failure. */
  private async attempt(step: Step, url: URL, init: RequestInit): Promise<HttpBytesReply> {
    const reply = await this.once(step, url, init);
    if (!isTemporaryStatus(reply.status)) return reply;
    // A gateway answers 429 (rate limit) and 503 (no upstream) itself, before the service sees anything.
    const notSent = reply.status === 429 || reply.status === 503;
    throw new Temporary(`HTTP ${reply.status}`, parseRetryAfter(reply.retryAfter), textOf(reply), notSent);
  }

  private deadlineOf(init: RequestInit): number {
    return Math.min(this.settings.deadline, init.deadline ?? Number.POSITIVE_INFINITY);
  }

  /** Throws the interrupt's reason; for a request that may have reached the server (`maybeSent`), says so. */
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

  /** One request, bounded by the timeouts, the deadline and the interrupt; its reply read within `maxBytes`. */
  private async once(step: Step, url: URL, init: RequestInit): Promise<HttpBytesReply> {
    const { timeouts } = this.settings;
    const deadline = this.deadlineOf(init);
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new Temporary("the deadline passed", undefined, undefined, true); // nothing was sent
    const timeout = AbortSignal.timeout(Math.min(remaining, timeouts.connect + timeouts.headers + timeouts.body));
    const signal = this.settings.signal ? AbortSignal.any([this.settings.signal, timeout]) : timeout;
    const waited = this.waiting({
      step,
      what: `${init.peer ?? "the platform"} to answer ${init.method} ${url.pathname}`,
    });
    try {
      const sender = await this.senderFor(url);
      const raw = await sender.request({ url, method: init.method, ...onTheWire(init), signal, timeouts });
      const date = header(raw, "date");
      if (date !== undefined && !Number.isNaN(Date.parse(date))) this.learnSkew(Date.parse(date) - Date.now());
      return await this.read(step, url, init, raw);
    } catch (err) {
      throw await this.failure(
        step,
        url,
        init,
        err,
        timeout.aborted && Date.now() >= deadline ? "deadline" : timeout.aborted,
      );
    } finally {
      waited();
    }
  }

  /** The reply with its body, refused past the request's bound. */
  private async read(step: Step, url: URL, init: RequestInit, raw: RawReply): Promise<HttpBytesReply> {
    const maxBytes = init.maxBytes ?? MAX_REPLY_BYTES;
    const body = await readBounded(raw.body, maxBytes);
    if (!body) throw oversizedReply(step, url, raw.statusCode, maxBytes);
    return {
      status: raw.statusCode,
      contentType: header(raw, "content-type") ?? "",
      body,
      retryAfter: header(raw, "retry-after"),
      location: header(raw, "location"),
      etag: header(raw, "etag"),
      lastModified: header(raw, "last-modified"),
      request: `${init.method} ${url.origin}${url.pathname}`,
    };
  }

  /** What a failed request means: the interrupt, a TLS refusal, or a temporary failure (`timedOut`: which of our limits cut it). */
  private async failure(
    step: Step,
    url: URL,
    init: RequestInit,
    err: unknown,
    timedOut: boolean | "deadline",
  ): Promise<Error> {
    // undici rejects with the interrupt's own reason: it must be told apart from our errors first.
    if (this.settings.signal?.aborted) this.throwIfAborted(step, init.once);
    if (err instanceof CertRetrieverError) return err;
    const tls = tlsFailure(step, url, err, closedUnderTls(url, err) ? await this.probeTls(url) : undefined);
    if (tls) return tls;
    const unknown = hostNotFound(step, url, err, init.peer ?? "the platform");
    if (unknown) return unknown;
    if (timedOut) return new Temporary(timedOut === "deadline" ? "the deadline passed" : "the request timed out");
    return networkFailure(err, this.settings.timeouts);
  }

  /** Node's client for a direct connection; undici's through the proxy the environment names for the URL. */
  private async senderFor(url: URL): Promise<Sender> {
    if (!proxyNamedFor(url, this.settings.environment)) {
      this.direct ??= new NodeHttpClient(() => tlsOptionsOf(this.settings.tls), this.settings.lookup);
      return this.direct;
    }
    this.proxied ??= openProxySender(
      tlsOptionsOf(this.settings.tls),
      this.settings.timeouts.connect,
      this.settings.environment,
    );
    return this.proxied;
  }

  /** The TLS alert a direct handshake meets, for a connection that was only closed (see tls-probe.ts). */
  private async probeTls(url: URL): Promise<{ code: string } | undefined> {
    const host = bareHost(url.hostname);
    const code = await probeTlsAlert({
      ...tlsOptionsOf(this.settings.tls),
      host,
      port: Number(url.port || 443),
      servername: isIP(host) ? undefined : host,
    });
    return code === undefined ? undefined : { code };
  }

  /** Closes idle connections so the process can exit. */
  async close(): Promise<void> {
    await Promise.all(this.derived.map((client) => client.close()));
    await this.direct?.close();
    await (await this.proxied?.catch(() => undefined))?.close();
  }
}

/** The request's headers and body as they go on the wire. */
function onTheWire(init: RequestInit): { headers: Record<string, string>; body?: string | Uint8Array } {
  const headers: Record<string, string> = { accept: "application/json", ...init.headers };
  if (init.body !== undefined)
    return { headers: { ...headers, "content-type": "application/json" }, body: JSON.stringify(init.body) };
  if (init.text !== undefined)
    return { headers: { ...headers, "content-type": init.contentType ?? "text/plain" }, body: init.text };
  if (init.bytes !== undefined)
    return {
      headers: { ...headers, "content-type": init.contentType ?? "application/octet-stream" },
      body: init.bytes,
    };
  return { headers };
}

/** A header's value when it is a single one. */
function header(raw: RawReply, name: string): string | undefined {
  const value = raw.headers[name];
  return typeof value === "string" ? value : undefined;
}

/** The reply with its body as text. */
function textOf(reply: HttpBytesReply): HttpReply {
  const { body, ...rest } = reply;
  return { ...rest, text: body.toString("utf8") };
}
