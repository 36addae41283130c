import { connect as netConnect, type Socket } from "node:net";
import {
  type ConnectionOptions,
  createSecureContext,
  type SecureContext,
  type TLSSocket,
  connect as tlsConnect,
} from "node:tls";
import { CertRetrieverError, describeCause, type Reason } from "../errors.js";
import { bareHost } from "../transport/loopback.js";
import { probeTlsAlert } from "../transport/tls-probe.js";
import {
  closedAfterCertificate,
  closedUnannounced,
  connectError,
  type ProtocolLevel,
  refusedMqtt5,
  tlsError,
  unansweredConnect,
  VERSION_NAME,
  verifyError,
} from "./errors.js";
import type { MqttVersion } from "./profiles.js";
import {
  closeSession,
  type Delivery,
  openSession,
  publish,
  publishAndWatch,
  type Session,
  type Watched,
  withTimeout,
} from "./session.js";

/** What `verify` connects with. */
export interface BrokerCheck {
  /** mqtts://host:port */
  broker: URL;
  caPem: string;
  /** The device's certificate and key (absent only to show what a broker does without one). */
  certPem?: string;
  keyPem?: string;
  /**
   * Instead of `keyPem`, a key in a token reached through an OpenSSL engine (pkcs11): the engine's
   * id and the key's URI. The key is loaded once, into one TLS context that every connection of the
   * check uses; `loaded` is called right after (the CLI then removes the PIN file the URI names).
   */
  keyEngine?: { engine: string; identifier: string; loaded?: () => Promise<void> };
  clientId: string;
  /** Publish one QoS 1 message here: MQTT 5 reports a refusal in the PUBACK; over 3.1.1 delivery is watched for. */
  topic?: string;
  /** SNI and the name the broker's certificate must carry (default: the URL's host). */
  servername?: string;
  /** Extra TLS settings a profile asks for (AirVantage: TLS 1.2 and its cipher suites). */
  tls?: Pick<ConnectionOptions, "minVersion" | "maxVersion" | "ciphers">;
  /** The MQTT version to speak (default auto: 5, then 3.1.1 if the broker refuses 5 or leaves it unanswered). */
  mqttVersion?: MqttVersion;
  timeoutMs: number;
  /** With `auto`: how long an MQTT 5 CONNECT waits for CONNACK before 3.1.1 is tried (default {@link MQTT5_ANSWER_MS}, at most `timeoutMs`). */
  mqtt5AnswerMs?: number;
}

/**
 * With `auto`, how long an MQTT 5 CONNECT waits for an answer before the check asks again in MQTT
 * 3.1.1: Mosca 2.8.3 neither answers nor closes on a protocol level it cannot parse, and a broker
 * that speaks MQTT 5 answers a CONNECT on a live connection well within it.
 */
export const MQTT5_ANSWER_MS = 3000;

/** Why `auto` spoke MQTT 3.1.1: the broker refused MQTT 5, or did not answer it. */
type Mqtt5Fallback = "refused" | "unanswered";

/** A stage that passed. */
export interface StageReport {
  stage: "tcp" | "tls" | "connack" | "puback";
  ms: number;
  detail: string;
  /** connack and puback: the MQTT version spoken. */
  mqttVersion?: "5" | "3.1.1";
  /** puback: what the broker's answer proves (over 3.1.1 a PUBACK alone proves nothing). */
  delivery?: Delivery;
  /** connack: why `auto` fell back to MQTT 3.1.1 (absent when it did not). */
  mqtt5Fallback?: Mqtt5Fallback;
}

/** Where to connect, from the check's URL and server name. */
interface Endpoint {
  host: string;
  port: number;
  servername?: string;
}

/**
 * Connects to the broker as the device (mutual TLS, MQTT 5 or 3.1.1) and reports each stage: TCP,
 * TLS handshake, CONNACK and, with a topic, PUBACK. Each failure has its own reason (broker-…).
 */
export async function checkBroker(check: BrokerCheck, onStage: (s: StageReport) => void): Promise<StageReport[]> {
  const stages: StageReport[] = [];
  const report = (s: StageReport) => {
    stages.push(s);
    onStage(s);
  };
  const at = endpointOf(check);
  // The client's key: the PEM, or a token key loaded once, through the engine, into one TLS context.
  const key: ClientKey = check.keyEngine
    ? { secureContext: await engineContext(check, check.keyEngine, at.host) }
    : { key: check.keyPem };
  const elapsed = stopwatch();
  const connect = connector(check, at, key, (tls) =>
    report({ stage: "tls", ms: elapsed(), detail: tlsDetail(tls, at) }),
  );
  const connect311 = () =>
    connect(4).catch((err: unknown) => {
      throw connectError(err, 4, check.clientId);
    });
  const opened = await firstSession(check, connect, connect311, () =>
    report({ stage: "tcp", ms: elapsed(), detail: `connected to ${at.host}:${at.port}` }),
  );
  let session = opened.session;
  const version = session.level === 5 ? "5" : "3.1.1";
  try {
    report({
      stage: "connack",
      ms: elapsed(),
      detail: `accepted as client '${check.clientId}' (${VERSION_NAME[session.level]}${fallbackNote(opened.fellBack, opened.waitedMs)})`,
      mqttVersion: version,
      ...(opened.fellBack ? { mqtt5Fallback: opened.fellBack } : {}),
    });
    if (check.topic) {
      session = await publishStage(session, check.topic, check.timeoutMs, connect311, (detail, delivery) =>
        report({ stage: "puback", ms: elapsed(), detail, mqttVersion: version, delivery }),
      );
    }
  } finally {
    await closeSession(session);
  }
  return stages;
}

/**
 * Opens a session at an MQTT level; `onTcp` is given for the first connection only, whose stages
 * are reported; `connackMs` bounds the wait for CONNACK (default: the check's timeout).
 */
type Connect = (level: ProtocolLevel, onTcp?: () => void, connackMs?: number) => Promise<Session>;

/** The CONNACK line's note on a fallback to MQTT 3.1.1. */
function fallbackNote(fellBack: Mqtt5Fallback | undefined, waitedMs: number): string {
  if (fellBack === "refused") return ", after the broker refused MQTT 5";
  if (fellBack === "unanswered")
    return `, after the broker left an MQTT 5 CONNECT unanswered for ${waitedMs / 1000} s, as Mosca does`;
  return "";
}

/** Where the check connects: the URL's host (bare) and port (default 8883), and the name the broker's certificate must carry. */
function endpointOf(check: BrokerCheck): Endpoint {
  const host = bareHost(check.broker.hostname);
  const servername = check.servername ?? (/^[\d.]+$|:/.test(host) ? undefined : host);
  return { host, port: Number(check.broker.port || 8883), servername };
}

/** Milliseconds since the last call (or since the stopwatch was made). */
function stopwatch(): () => number {
  let start = performance.now();
  return () => {
    const ms = Math.round(performance.now() - start);
    start = performance.now();
    return ms;
  };
}

/** The TLS stage's line: protocol, cipher, and the name the broker's certificate was trusted for. */
function tlsDetail(tls: TLSSocket, at: Endpoint): string {
  const name = at.servername ? ` for ${at.servername}` : "";
  return `${tls.getProtocol() ?? "TLS"} ${tls.getCipher()?.name ?? ""}, broker certificate trusted${name}`.replace(
    /\s+,/,
    ",",
  );
}

/** How the check connects: TCP and TLS (reported through `onTls` on the first connection), then MQTT's CONNECT. */
function connector(check: BrokerCheck, at: Endpoint, key: ClientKey, onTls: (tls: TLSSocket) => void): Connect {
  return async (level, onTcp, connackMs = check.timeoutMs) => {
    const tls = await openTls(check, at, key, onTcp);
    if (onTcp) onTls(tls);
    return openSession(tls, level, check.clientId, connackMs).catch(async (err: unknown) => {
      // A reset before CONNACK, right after a TLS 1.3 handshake: ask the broker again, writing nothing, to read its alert.
      if (/^(ECONNRESET|EPIPE)$/.test(String((err as NodeJS.ErrnoException).code ?? ""))) {
        const alert = await probeTlsAlert({
          host: at.host,
          port: at.port,
          servername: at.servername,
          ca: check.caPem,
          cert: check.certPem,
          ...key,
          ...check.tls,
        });
        if (alert) throw tlsError(Object.assign(new Error(alert), { code: alert }), at.host);
      }
      throw err;
    });
  };
}

/**
 * The first session: at the wanted level, or (auto) at 3.1.1 when the broker refuses MQTT 5 or
 * leaves its CONNECT unanswered for {@link MQTT5_ANSWER_MS}.
 */
async function firstSession(
  check: BrokerCheck,
  connect: Connect,
  connect311: () => Promise<Session>,
  onTcp: () => void,
): Promise<{ session: Session; fellBack?: Mqtt5Fallback; waitedMs: number }> {
  const wanted = check.mqttVersion ?? "auto";
  const first: ProtocolLevel = wanted === "3.1.1" ? 4 : 5;
  const waitedMs =
    wanted === "auto" ? Math.min(check.mqtt5AnswerMs ?? MQTT5_ANSWER_MS, check.timeoutMs) : check.timeoutMs;
  try {
    return { session: await connect(first, onTcp, waitedMs), waitedMs };
  } catch (err) {
    // A broker that speaks only 3.1.1 answers CONNECT with return code 1 (aedes 0.51, amqtt 0.11), closes, or stays silent (Mosca 2.8.3): ask again in 3.1.1.
    const fellBack = refusedMqtt5(err) ? "refused" : unansweredConnect(err) ? "unanswered" : undefined;
    if (wanted !== "auto" || !fellBack) throw connectError(err, first, check.clientId);
    return { session: await connect311(), fellBack, waitedMs };
  }
}

/**
 * The PUBACK stage: over MQTT 5 the PUBACK says whether the publish was accepted; over 3.1.1 the
 * message is watched for (a session reopened for that replaces `session`, which is returned).
 */
async function publishStage(
  session: Session,
  topic: string,
  timeoutMs: number,
  reopen: () => Promise<Session>,
  report: (detail: string, delivery: Delivery) => void,
): Promise<Session> {
  if (session.level === 5) {
    await publish(session, topic, timeoutMs);
    report(`published to '${topic}' with QoS 1`, "accepted");
    return session;
  }
  const watched: Watched = await publishAndWatch(session, topic, timeoutMs, reopen);
  report(delivery311(topic, watched), watched.delivery);
  return watched.session;
}

/** The PUBACK stage line over MQTT 3.1.1: "published" only when our own message came back. */
function delivery311(topic: string, watched: Watched): string {
  if (watched.delivery === "delivered")
    return `published to '${topic}' with QoS 1 (MQTT 3.1.1): delivery proven, the message came back on our subscription to the topic`;
  const why =
    watched.unwatched === "closed-on-subscribe"
      ? "the broker closed the connection when we subscribed to the topic to watch for it"
      : "the broker did not let us subscribe to the topic to watch for it";
  return `PUBACK received for '${topic}' (MQTT 3.1.1 brokers acknowledge even a publish they drop); delivery not proven: ${why}`;
}

/** TCP, then the TLS handshake with the broker's certificate checked against the stored CA; `onTcp` hears of the first. */
async function openTls(check: BrokerCheck, at: Endpoint, key: ClientKey, onTcp?: () => void): Promise<TLSSocket> {
  const { host, port, servername } = at;
  const tcp = await withTimeout<Socket>(check.timeoutMs, "TCP connection", (resolve, reject) => {
    const socket: Socket = netConnect({ host, port });
    socket.once("connect", () => resolve(socket));
    socket.once("error", reject);
    return () => socket.destroy();
  }).catch((err: unknown) => {
    throw verifyError(
      "broker-unreachable",
      `the broker at ${host}:${port} could not be reached: ${describeCause(err)}`,
      err,
      host,
    );
  });
  onTcp?.();
  let sentCertificate = false;
  return withTimeout<TLSSocket>(check.timeoutMs, "TLS handshake", (resolve, reject) => {
    const socket: TLSSocket = tlsConnect({
      socket: tcp,
      servername,
      host: check.servername ?? host,
      ca: check.caPem,
      cert: check.certPem,
      ...key,
      rejectUnauthorized: true,
      ...check.tls,
    });
    // Under TLS 1.2 OpenSSL logs CLIENT_RANDOM when it makes the master secret, as it sends our
    // certificate, key exchange and Finished: a close after that is the broker's answer to them.
    const onKeylog = (line: Buffer) => {
      if (line.subarray(0, 14).toString() === "CLIENT_RANDOM ") sentCertificate = Boolean(check.certPem);
    };
    socket.on("keylog", onKeylog);
    socket.once("secureConnect", () => socket.off("keylog", onKeylog));
    socket.once("secureConnect", () => resolve(socket));
    socket.once("error", reject);
    return () => socket.destroy();
  }).catch((err: unknown) => {
    if (sentCertificate && closedUnannounced(err)) throw closedAfterCertificate(err, host);
    throw (check.keyEngine && engineError(err)) || tlsError(err, host);
  });
}

/** A failure of the pkcs11 engine (loading it, or the token behind it) as the token failure it is. */
function engineError(err: unknown): CertRetrieverError | undefined {
  const code = String((err as NodeJS.ErrnoException).code ?? "");
  const message = describeCause(err);
  const reason: Reason | undefined =
    code === "ERR_OSSL_PIN_INCORRECT"
      ? "token-pin-refused"
      : code === "ERR_OSSL_OBJECT_NOT_FOUND" || /failed loading private key/.test(message)
        ? "token-key-missing"
        : /PKCS#11_MODULE|DSO support|no such engine|could not load the shared library/.test(`${code} ${message}`)
          ? "pkcs11-module-missing"
          : /PKCS#11|pkcs11|CRYPTOKI|engine routines/i.test(`${code} ${message}`)
            ? "token-error"
            : undefined;
  if (!reason) return undefined;
  const what =
    reason === "pkcs11-module-missing"
      ? `OpenSSL's pkcs11 engine or the PKCS#11 module could not be loaded (Debian: libengine-pkcs11-openssl; or set OPENSSL_ENGINES to its directory): ${message}`
      : `the token key could not be used for TLS through OpenSSL's pkcs11 engine: ${message}`;
  return new CertRetrieverError(`token failed: ${what}`, { step: "token", reason, cause: err });
}

/** The TLS options that give the client's key: the PEM, or a context that holds a token key. */
type ClientKey = Pick<ConnectionOptions, "key" | "secureContext">;

/** The one TLS context that holds the engine's key (CA and certificate with it). */
async function engineContext(
  check: BrokerCheck,
  engine: NonNullable<BrokerCheck["keyEngine"]>,
  host: string,
): Promise<SecureContext> {
  try {
    return createSecureContext({
      ca: check.caPem,
      cert: check.certPem,
      privateKeyEngine: engine.engine,
      privateKeyIdentifier: engine.identifier,
      ...check.tls,
    });
  } catch (err) {
    throw engineError(err) ?? tlsError(err, host);
  } finally {
    await engine.loaded?.();
  }
}
