import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from "node:tls";
import { CertRetrieverError, describeCause } from "../errors.js";
import { ExitCode } from "../exit-codes.js";
import { probeTlsAlert } from "../platform/tls-probe.js";

/** What `verify` connects with. */
export interface BrokerCheck {
  /** mqtts://host:port */
  broker: URL;
  caPem: string;
  /** The device's certificate and key (absent only to show what a broker does without one). */
  certPem?: string;
  keyPem?: string;
  clientId: string;
  /** Publish one QoS 1 message here, so that an ACL refusal comes back in the PUBACK. */
  topic?: string;
  /** SNI and the name the broker's certificate must carry (default: the URL's host). */
  servername?: string;
  /** Extra TLS settings a profile asks for (AirVantage: TLS 1.2 and its cipher suites). */
  tls?: Pick<ConnectionOptions, "minVersion" | "maxVersion" | "ciphers">;
  timeoutMs: number;
}

/** A stage that passed. */
export interface StageReport {
  stage: "tcp" | "tls" | "connack" | "puback";
  ms: number;
  detail: string;
}

/** MQTT 5 reason codes that matter here. */
const REASONS: Record<number, string> = {
  0x80: "Unspecified error",
  0x83: "Implementation specific error",
  0x84: "Unsupported Protocol Version",
  0x85: "Client Identifier not valid",
  0x86: "Bad User Name or Password",
  0x87: "Not authorized",
  0x88: "Server unavailable",
  0x89: "Server busy",
  0x8a: "Banned",
  0x8c: "Bad authentication method",
  0x90: "Topic Name invalid",
  0x97: "Quota exceeded",
  0x99: "Payload format invalid",
};

/**
 * Connects to the broker as the device (mutual TLS, MQTT 5) and reports each stage: TCP, TLS
 * handshake, CONNACK and, with a topic, PUBACK. Each failure is its own exit code (20-25).
 */
export async function checkBroker(check: BrokerCheck, onStage: (s: StageReport) => void): Promise<StageReport[]> {
  const stages: StageReport[] = [];
  const report = (s: StageReport) => {
    stages.push(s);
    onStage(s);
  };
  const host = check.broker.hostname.replace(/^\[|\]$/g, "");
  const port = Number(check.broker.port || 8883);
  const servername = check.servername ?? (/^[\d.]+$|:/.test(host) ? undefined : host);
  let start = performance.now();
  const elapsed = () => {
    const ms = Math.round(performance.now() - start);
    start = performance.now();
    return ms;
  };

  const tcp = await withTimeout<Socket>(check.timeoutMs, "TCP connection", (resolve, reject) => {
    const socket: Socket = netConnect({ host, port });
    socket.once("connect", () => resolve(socket));
    socket.once("error", reject);
    return () => socket.destroy();
  }).catch((err: unknown) => {
    throw verifyError(ExitCode.BROKER_UNREACHABLE, `the broker at ${host}:${port} could not be reached: ${describeCause(err)}`, "check --broker and that the broker listens there");
  });
  report({ stage: "tcp", ms: elapsed(), detail: `connected to ${host}:${port}` });

  const tls = await withTimeout<TLSSocket>(check.timeoutMs, "TLS handshake", (resolve, reject) => {
    const socket: TLSSocket = tlsConnect({
      socket: tcp,
      servername,
      host: check.servername ?? host,
      ca: check.caPem,
      cert: check.certPem,
      key: check.keyPem,
      rejectUnauthorized: true,
      ...check.tls,
    });
    socket.once("secureConnect", () => resolve(socket));
    socket.once("error", reject);
    return () => socket.destroy();
  }).catch((err: unknown) => {
    throw tlsError(err, host);
  });
  report({ stage: "tls", ms: elapsed(), detail: `${tls.getProtocol() ?? "TLS"} ${tls.getCipher()?.name ?? ""}, broker certificate trusted${servername ? ` for ${servername}` : ""}`.replace(/\s+,/, ",") });

  // Under TLS 1.3 a broker refuses our certificate after the handshake: the alert arrives as an
  // error on the socket while MQTT waits for CONNACK, and must win over a "connack timeout".
  let socketError: unknown;
  let onSocketError: (err: unknown) => void = () => undefined;
  tls.on("error", (err) => {
    socketError ??= err;
    onSocketError(err);
  });
  const { MqttClient } = await import("mqtt");
  const client = new MqttClient(() => tls as never, { protocolVersion: 5, clientId: check.clientId, reconnectPeriod: 0, connectTimeout: check.timeoutMs, clean: true });
  try {
    await withTimeout(check.timeoutMs, "CONNACK", (resolve, reject) => {
      client.once("connect", () => resolve(undefined));
      client.once("error", reject);
      onSocketError = reject;
      if (socketError) reject(socketError);
      client.once("close", () => reject(new Error("the broker closed the connection")));
      return () => undefined;
    }).catch(async (err: unknown) => {
      const seen = socketError ?? err;
      // A reset before CONNACK, right after a TLS 1.3 handshake: ask the broker again, writing nothing, to read its alert.
      if (/^(ECONNRESET|EPIPE)$/.test(String((seen as NodeJS.ErrnoException).code ?? ""))) {
        const alert = await probeTlsAlert({ host, port, servername, ca: check.caPem, cert: check.certPem, key: check.keyPem, ...check.tls });
        if (alert) throw tlsError(Object.assign(new Error(alert), { code: alert }), host);
      }
      throw mqttError(seen, "connect", check.clientId);
    });
    report({ stage: "connack", ms: elapsed(), detail: `accepted as client '${check.clientId}'` });
    if (check.topic) {
      const topic = check.topic;
      await withTimeout(check.timeoutMs, "PUBACK", (resolve, reject) => {
        client.publish(topic, JSON.stringify({ "cert-retriever": "verify", at: new Date().toISOString() }), { qos: 1 }, (err, packet) => {
          const code = (packet as { reasonCode?: number } | undefined)?.reasonCode ?? (err as { code?: number } | undefined)?.code;
          if (typeof code === "number" && code >= 0x80) reject(Object.assign(new Error(REASONS[code] ?? `reason ${code}`), { reasonCode: code }));
          else if (err) reject(err);
          else resolve(undefined);
        });
        client.once("close", () => reject(new Error("the broker closed the connection")));
        return () => undefined;
      }).catch((err: unknown) => {
        throw mqttError(socketError ?? err, "publish", topic);
      });
      report({ stage: "puback", ms: elapsed(), detail: `published to '${topic}' with QoS 1` });
    }
  } finally {
    // A clean DISCONNECT when the connection is up; a broken one is just dropped (end's callback may never come).
    const ended = new Promise<void>((resolve) => client.end(true, {}, () => resolve()));
    if (!socketError && !tls.destroyed) await Promise.race([ended, new Promise((r) => setTimeout(r, 1000).unref())]);
    tls.destroy();
  }
  return stages;
}

function withTimeout<T>(ms: number, what: string, body: (resolve: (v: T) => void, reject: (e: unknown) => void) => () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let cleanup: () => void = () => undefined;
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no ${what} within ${ms / 1000} s`));
    }, ms);
    cleanup = body(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

function tlsError(err: unknown, host: string): CertRetrieverError {
  const code = String((err as NodeJS.ErrnoException).code ?? "");
  const text = describeCause(err).replace(/\s*\d+[0-9A-F]*:error:.*$/s, "");
  if (/ALERT_CERTIFICATE_REQUIRED|PEER_DID_NOT_RETURN_A_CERTIFICATE/.test(code)) {
    return verifyError(ExitCode.CERT_REQUIRED, `the broker requires a client certificate and did not get one (${code})`, "enroll first, and check --out/--device-id");
  }
  const refused = /ALERT_(UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_EXPIRED|CERTIFICATE_REVOKED|CERTIFICATE_UNKNOWN|UNSUPPORTED_CERTIFICATE|DECRYPT_ERROR|ACCESS_DENIED)/.exec(code);
  if (refused) {
    const why = { UNKNOWN_CA: "it does not trust our CA", CERTIFICATE_EXPIRED: "our certificate has expired", CERTIFICATE_REVOKED: "our certificate is revoked" }[refused[1] as "UNKNOWN_CA"] ?? refused[1]!.toLowerCase().replace(/_/g, " ");
    return verifyError(ExitCode.CERT_REFUSED, `the broker refused our certificate: ${why} (${code})`, "enroll again, or check that the broker trusts the platform's CA");
  }
  if (/CERT|SELF_SIGNED|UNABLE_TO|ALTNAME|HOSTNAME/.test(code)) {
    return verifyError(ExitCode.BROKER_UNTRUSTED, `the broker's certificate is not trusted: ${text}`, `the stored CA must have signed the broker's certificate, and it must name ${host} (or pass --servername)`);
  }
  return verifyError(ExitCode.BROKER_UNREACHABLE, `the TLS handshake with the broker failed: ${text}`, "check --broker (is it an mqtts:// listener?)");
}

function mqttError(err: unknown, what: "connect" | "publish", subject: string): CertRetrieverError {
  const reason = (err as { reasonCode?: number; code?: unknown }).reasonCode ?? (typeof (err as { code?: unknown }).code === "number" ? ((err as { code: number }).code) : undefined);
  const code = String((err as NodeJS.ErrnoException).code ?? "");
  if (/ALERT_|CERT/.test(code)) return tlsError(err, ""); // TLS 1.3: a refused certificate surfaces after the handshake
  const named = reason === undefined ? describeCause(err) : `${REASONS[reason] ?? "reason"} (0x${reason.toString(16)})`;
  return what === "connect"
    ? verifyError(ExitCode.CONNECT_DENIED, `the broker did not accept the connection of client '${subject}': ${named}`, "the client id or the certificate's identity is not what the broker allows: check --profile and --client-id")
    : verifyError(ExitCode.PUBLISH_DENIED, `the broker did not accept the publish to '${subject}': ${named}`, "the broker's ACL does not let this identity publish there: check --profile and --topic");
}

function verifyError(exitCode: ExitCode, message: string, hint: string): CertRetrieverError {
  return new CertRetrieverError(`verify failed: ${message}`, { step: "verify", exitCode, hint });
}
