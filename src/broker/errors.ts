import { CertRetrieverError, describeCause, errnoOf, type Reason } from "../errors.js";

/** The MQTT protocol level in CONNECT: 5, or 4 for MQTT 3.1.1. */
export type ProtocolLevel = 4 | 5;

/** The name a user knows a protocol level by. */
export const VERSION_NAME: Record<ProtocolLevel, string> = { 5: "MQTT 5", 4: "MQTT 3.1.1" };

/** MQTT 5 reason codes that matter here, in hex as the specification lists them (a Map: object keys would be decimal). */
const REASONS = new Map<number, string>([
  [0x80, "Unspecified error"],
  [0x83, "Implementation specific error"],
  [0x84, "Unsupported Protocol Version"],
  [0x85, "Client Identifier not valid"],
  [0x86, "Bad User Name or Password"],
  [0x87, "Not authorized"],
  [0x88, "Server unavailable"],
  [0x89, "Server busy"],
  [0x8a, "Banned"],
  [0x8c, "Bad authentication method"],
  [0x90, "Topic Name invalid"],
  [0x97, "Quota exceeded"],
  [0x99, "Payload format invalid"],
]);

/** MQTT 3.1.1 CONNACK return codes (section 3.2.2.3); a 3.1.1-only broker answers an MQTT 5 CONNECT with 1. */
const RETURN_CODES: Record<number, string> = {
  1: "Unacceptable protocol version",
  2: "Identifier rejected",
  3: "Server unavailable",
  4: "Bad user name or password",
  5: "Not authorized",
};

/** Raised when the broker closes the connection while we wait for its answer. */
export class BrokerClosed extends Error {
  constructor(readonly before: "CONNACK" | "PUBACK" | "SUBACK") {
    super(`the broker closed the connection before ${before}`);
  }
}

/** Raised when the broker sends no answer (CONNACK, PUBACK, ...) within the time allowed, and keeps the connection open. */
export class NoAnswer extends Error {
  constructor(
    readonly what: string,
    readonly ms: number,
  ) {
    super(`no ${what} within ${ms / 1000} s`);
  }
}

/**
 * Whether an MQTT 5 CONNECT went unanswered: Mosca 2.8.3 (lib/client.js `client.on("error", nop)`
 * until CONNECT completes) swallows the parse error of a protocol level it does not know, and
 * neither answers nor closes.
 */
export function unansweredConnect(err: unknown): boolean {
  return err instanceof NoAnswer && err.what === "CONNACK";
}

/** The numeric refusal the broker sent (CONNACK, PUBACK or SUBACK), if it sent one. */
function refusalCode(err: unknown): number | undefined {
  const e = err as { reasonCode?: unknown; code?: unknown };
  if (typeof e.reasonCode === "number") return e.reasonCode;
  return typeof e.code === "number" ? e.code : undefined;
}

/**
 * Whether an MQTT 5 CONNECT failed because the broker does not speak MQTT 5: CONNACK 0x84, a
 * 3.1.1-style CONNACK return code 1 (aedes 0.51, amqtt 0.11), or the connection closed unanswered.
 */
export function refusedMqtt5(err: unknown): boolean {
  const code = refusalCode(err);
  return code === 0x84 || code === 1 || (err instanceof BrokerClosed && err.before === "CONNACK");
}

/** The error for a refused or failed TLS handshake, by what the alert says. */
export function tlsError(err: unknown, host: string): CertRetrieverError {
  const code = String((err as NodeJS.ErrnoException).code ?? "");
  const text = describeCause(err).replace(/\s*\d+[0-9A-F]*:error:.*$/s, "");
  if (/ALERT_CERTIFICATE_REQUIRED|PEER_DID_NOT_RETURN_A_CERTIFICATE/.test(code)) {
    return verifyError(
      "broker-cert-required",
      `the broker requires a client certificate and did not get one (${code})`,
      err,
      host,
    );
  }
  const refused =
    /ALERT_(UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_EXPIRED|CERTIFICATE_REVOKED|CERTIFICATE_UNKNOWN|UNSUPPORTED_CERTIFICATE|DECRYPT_ERROR|ACCESS_DENIED)/.exec(
      code,
    );
  if (refused) {
    const why =
      {
        UNKNOWN_CA: "it does not trust our CA",
        CERTIFICATE_EXPIRED: "our certificate has expired",
        CERTIFICATE_REVOKED: "our certificate is revoked",
      }[refused[1] as "UNKNOWN_CA"] ?? refused[1]!.toLowerCase().replace(/_/g, " ");
    return verifyError("broker-refused-cert", `the broker refused our certificate: ${why} (${code})`, err, host);
  }
  if (/CERT|SELF_SIGNED|UNABLE_TO|ALTNAME|HOSTNAME/.test(code)) {
    return verifyError("broker-untrusted", `the broker's certificate is not trusted: ${text}`, err, host);
  }
  return verifyError("broker-unreachable", `the TLS handshake with the broker failed: ${text}`, err, host);
}

/** Whether a handshake ended with the connection closed or reset, and no TLS alert. */
export function closedUnannounced(err: unknown): boolean {
  return /^(ECONNRESET|EPIPE)$/.test(String((err as NodeJS.ErrnoException).code ?? ""));
}

/**
 * The error for a TLS 1.2 handshake the broker closed, without an alert, right after we sent our
 * certificate: how a broker on Node 8 and OpenSSL 1.0.2 (iotagent-mosca's Mosca) refuses a client
 * certificate it cannot verify (Node's TLS server destroys the socket when `rejectUnauthorized` fails).
 */
export function closedAfterCertificate(err: unknown, host: string): CertRetrieverError {
  return verifyError(
    "broker-refused-cert",
    "the broker closed the connection right after our client certificate, without a TLS alert, as a TLS 1.2 broker does when it refuses the certificate: it is likely from a CA the broker does not trust (another platform's), or expired",
    err,
    host,
  );
}

/** The error for a CONNECT that did not end in CONNACK 0. */
export function connectError(err: unknown, level: ProtocolLevel, clientId: string): CertRetrieverError {
  if (err instanceof CertRetrieverError) return err; // TCP or TLS, already named
  if (/ALERT_|CERT/.test(String((err as NodeJS.ErrnoException).code ?? ""))) return tlsError(err, ""); // TLS 1.3: a refused certificate surfaces after the handshake
  if (level === 5 && (refusedMqtt5(err) || unansweredConnect(err))) {
    const answer =
      err instanceof BrokerClosed
        ? "it closed the connection without a CONNACK"
        : err instanceof NoAnswer
          ? `it did not answer our CONNECT within ${err.ms / 1000} s and kept the connection open, as a broker that cannot parse MQTT 5 may (Mosca 2.8)`
          : `it answered ${named(err)}`;
    return verifyError("broker-connect-denied", `the broker did not accept an MQTT 5 connection: ${answer}`, err);
  }
  return verifyError(
    "broker-connect-denied",
    `the broker did not accept the connection of client '${clientId}': ${named(err)}`,
    err,
  );
}

/** The error for a publish the broker refused, closed the connection on, or left unanswered. */
export function publishError(err: unknown, level: ProtocolLevel, topic: string): CertRetrieverError {
  if (err instanceof CertRetrieverError) return err; // a new session's TCP, TLS or CONNACK, already named
  if (/ALERT_|CERT/.test(String((err as NodeJS.ErrnoException).code ?? ""))) return tlsError(err, "");
  if (level === 4 && err instanceof BrokerClosed && err.before === "PUBACK") {
    // Mosca (lib/client.js handleAuthorizePublish) and aedes 0.51 (an authorizePublish error closes the client) refuse a publish so.
    return verifyError(
      "broker-publish-denied",
      `the broker closed the connection after our publish to '${topic}', which is how an MQTT 3.1.1 broker refuses a publish`,
      err,
    );
  }
  return verifyError(
    "broker-publish-denied",
    `the broker did not accept the publish to '${topic}': ${named(err)}`,
    err,
  );
}

/** The error for a 3.1.1 publish that was acknowledged but never came back on our own subscription to its topic. */
export function undeliveredError(topic: string, timeoutMs: number): CertRetrieverError {
  return verifyError(
    "broker-publish-denied",
    `the broker acknowledged our publish to '${topic}' but did not deliver it to our own subscription to that topic within ${timeoutMs / 1000} s, as an MQTT 3.1.1 broker does with a publish it refuses`,
  );
}

/** A verify failure: why, in one sentence, and the broker's host if known. */
export function verifyError(reason: Reason, message: string, cause?: unknown, host?: string): CertRetrieverError {
  return new CertRetrieverError(`verify failed: ${message}`, {
    step: "verify",
    reason,
    facts: { ...(host ? { host } : {}), ...(errnoOf(cause) ? { errno: errnoOf(cause) } : {}) },
    cause,
  });
}

/** "Not authorized (0x87)" for MQTT 5, "Not authorized (MQTT 3.1.1 return code 5)", else the cause's text. */
function named(err: unknown): string {
  const code = refusalCode(err);
  if (code === undefined) return describeCause(err);
  // Below 0x80 a CONNACK code is a 3.1.1 return code: mqtt.js reads one that answers an MQTT 5 CONNECT as a reason code.
  if (code < 0x80) return `${RETURN_CODES[code] ?? "refused"} (MQTT 3.1.1 return code ${code})`;
  return `${REASONS.get(code) ?? "reason"} (0x${code.toString(16)})`;
}
