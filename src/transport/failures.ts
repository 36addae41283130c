/**
 * What a failed request means, in the library's reasons: TLS refusals, network trouble worth another
 * attempt, the error that ends the attempts, and a reply too large to read. Neutral: the transport
 * knows the server only by its address; a protocol rewords what it knows better.
 */
import { CertRetrieverError, describeCause, errnoOf, type Reason, type Step } from "../errors.js";
import { bodySummary, replyFacts } from "./reply.js";
import { type GiveUp, Temporary } from "./retry.js";
import { type HttpTimeouts, TIMEOUT_CODES } from "./sender.js";

/** Whether a TLS error says the server wants a client certificate, or refused ours. */
function isClientCertRefusal(err: unknown): boolean {
  const code = String((err as NodeJS.ErrnoException | undefined)?.code ?? "");
  return /ALERT_(CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN|HANDSHAKE_FAILURE)/.test(code);
}

/** The reply to our ClientHello was not TLS: plain HTTP ("wrong version number"), or another protocol. */
function isTlsNotSpoken(err: unknown): boolean {
  const code = String(errnoOf(err) ?? "");
  return (
    /^ERR_SSL_(WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|HTTP_REQUEST|RECORD_LAYER_FAILURE|UNKNOWN_PROTOCOL)$/.test(
      code,
    ) || /wrong version number|packet length too long|http request/i.test(err instanceof Error ? err.message : "")
  );
}

/**
 * Whether a TLS error says the server's certificate is not to be trusted: any of OpenSSL's
 * verification codes as Node names them (a wrong purpose, such as a client's certificate, or a CA
 * that may not sign, as much as an unknown issuer), a name that does not match, or a TLS refusal.
 */
function isTlsTrustError(err: unknown): boolean {
  const code = String((err as NodeJS.ErrnoException | undefined)?.code ?? "");
  return (
    (/CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY|DECODE|DECRYPT)|ALTNAME|ERR_SSL_|ERR_TLS_/.test(code) ||
      /^(INVALID_(PURPOSE|CA)|PATH_LENGTH_EXCEEDED|HOSTNAME_MISMATCH|CRL_\w+|ERROR_IN_\w+)$/.test(code)) &&
    !/TIMEOUT/.test(code)
  );
}

/**
 * Whether an https connection was only closed (reset, "other side closed"): under TLS 1.3 a server
 * refuses a client certificate after the handshake, and a probe may read the alert (tls-probe.ts).
 */
export function closedUnderTls(url: URL, err: unknown): boolean {
  return url.protocol === "https:" && /^(UND_ERR_SOCKET|ECONNRESET)$/.test(String(errnoOf(err) ?? ""));
}

/** The error for a TLS failure (`alert`: what a probe read after a close), or undefined if `err` is none. */
export function tlsFailure(
  step: Step,
  url: URL,
  err: unknown,
  alert?: { code: string },
): CertRetrieverError | undefined {
  const facts = { host: url.host, errno: errnoOf(err) };
  if (isClientCertRefusal(err) || isClientCertRefusal(alert)) {
    const message = `${step} failed: the gateway at ${url.host} requires a client certificate or refused ours: ${describeCause(err)}`;
    return new CertRetrieverError(message, { step, reason: "client-cert-required", facts, cause: err });
  }
  if (isTlsNotSpoken(err)) {
    const message = `${step} failed: the server at ${url.host} does not speak TLS on that port: ${describeCause(err)}; is it plain HTTP?`;
    return new CertRetrieverError(message, { step, reason: "tls-not-spoken", facts, cause: err });
  }
  if (isTlsTrustError(err)) {
    const message = `${step} failed: the TLS certificate of ${url.host} is not trusted: ${describeCause(err)}`;
    return new CertRetrieverError(message, { step, reason: "tls-untrusted", facts, cause: err });
  }
  return undefined;
}

/**
 * A host name that does not exist (getaddrinfo's EAI_NONAME or EAI_NODATA, which Node calls
 * ENOTFOUND: the name server answered NXDOMAIN, or the name has no address) is a setting to fix,
 * not a failure to wait out: no retry makes the name exist. A name server that does not answer
 * (EAI_AGAIN) stays temporary. The name may be a proxy's, which the message then says.
 */
export function hostNotFound(step: Step, url: URL, err: unknown, peer: string): CertRetrieverError | undefined {
  if (errnoOf(err) !== "ENOTFOUND") return undefined;
  const name = (err as { hostname?: unknown }).hostname;
  const host = typeof name === "string" && name ? name : url.hostname;
  const whose = host === url.hostname ? "" : ` (the proxy's, on the way to ${url.host})`;
  return new CertRetrieverError(
    `${step} failed: ${peer} at ${url.origin} cannot be reached: the host name '${host}'${whose} does not exist (ENOTFOUND: the name server knows no address for it)`,
    { step, reason: "host-not-found", facts: { host, errno: "ENOTFOUND" }, cause: err },
  );
}

/**
 * A network failure as a {@link Temporary}: whether it certainly did not reach the server (refused,
 * not connected, the name server not answering) and, for the client's own timeouts, which limit it met.
 */
export function networkFailure(err: unknown, timeouts: HttpTimeouts): Temporary {
  const code = String(errnoOf(err) ?? "");
  const notSent = code === TIMEOUT_CODES.connect || /^(ECONNREFUSED|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH)$/.test(code);
  const timedOut = (Object.keys(TIMEOUT_CODES) as (keyof typeof TIMEOUT_CODES)[]).find(
    (k) => TIMEOUT_CODES[k] === code,
  );
  if (timedOut) {
    const what = timedOut === "connect" ? "connection" : "reply";
    return new Temporary(
      `the request timed out (no ${what} within ${timeouts[timedOut] / 1000} s)`,
      undefined,
      undefined,
      notSent,
    );
  }
  return new Temporary(describeCause(err), undefined, undefined, notSent);
}

/** The error that ends a request's attempts; `peer` names the server in it ("the platform"). */
export function temporaryError(
  step: Step,
  url: URL,
  err: Temporary,
  attempts: number,
  why: GiveUp,
  peer: string,
): CertRetrieverError {
  const tries = attempts === 1 ? "" : ` (${attempts} attempts)`;
  const what = err.reply
    ? `${peer} at ${url.origin} answered HTTP ${err.reply.status}: ${bodySummary(err.reply)}`
    : `${peer} at ${url.origin} could not be reached: ${err.message}`;
  const note = why === "not-repeatable" ? `; the request may have reached ${peer}, so it is not repeated` : "";
  const cut = why === "deadline" ? "; the deadline leaves no time to try again" : "";
  const reason: Reason = note
    ? "maybe-sent"
    : cut || err.message === "the deadline passed"
      ? "deadline"
      : err.reply
        ? "overloaded"
        : "unreachable";
  return new CertRetrieverError(`${step} failed: ${what}${tries}${cut}${note}`, {
    step,
    reason,
    facts: {
      host: url.host,
      ...(err.reply ? replyFacts(err.reply) : {}),
      ...(note ? { maybeSent: true } : {}),
      ...(cut || err.message === "the deadline passed" ? { deadlinePassed: true } : {}),
    },
    cause: err,
  });
}

/** A reply larger than the request allows: malformed whatever the protocol (which may say more). */
export function oversizedReply(step: Step, url: URL, status: number, maxBytes: number): CertRetrieverError {
  return new CertRetrieverError(`${step} failed: the reply from ${url.host} is larger than ${maxBytes} bytes`, {
    step,
    reason: "reply-malformed",
    facts: { status, host: url.host },
  });
}
