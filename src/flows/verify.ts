/** Verify: do these credentials open the broker's door? Stages TCP, TLS, CONNACK and, with a topic, PUBACK. */
import type { StageReport } from "../broker/broker.js";
import type { MqttVersion, ProfileName, ProfileRecord } from "../broker/profiles.js";
import { CertRetrieverError, type SettingNamer, usageError } from "../errors.js";
import type { KeySettings } from "../keys/open.js";
import { isKeyUri } from "../keys/pkcs11-uri.js";
import type { CredentialPems, CredentialStore } from "../store/types.js";
import { parseCertificate } from "./certificate.js";
import type { BrokerEvent, NoteEvent } from "./steps.js";
import { completeCredentials } from "./stored.js";

/** The broker to check and how to speak to it (what a recorded profile does not say). */
export interface BrokerSettings {
  /** mqtts://host:port */
  url: URL;
  /** The identity profile; default: the one recorded with the credentials. */
  profile?: ProfileName;
  uriDomain?: string;
  clientId?: string;
  topic?: string;
  /** The TLS server name (SNI) and the name the broker's certificate must carry. */
  servername?: string;
  mqttVersion?: MqttVersion;
  /** Each stage's time limit. */
  timeoutMs: number;
  /** With MQTT version auto: how long an MQTT 5 CONNECT may go unanswered before 3.1.1 is tried (default 3 s). */
  mqtt5AnswerMs?: number;
}

/** What a broker check needs besides the credentials. */
export interface VerifyContext {
  deviceId: string;
  broker: BrokerSettings;
  /** How a token key is reached (its URI: the setting's, else the recorded one). */
  key: KeySettings;
  emit: (event: BrokerEvent | NoteEvent) => void;
  name: SettingNamer;
  /** The agent's clock (a stored certificate that has expired is named before connecting). */
  now?: () => Date;
}

/** The broker check with the stored credentials; a store whose write was interrupted, or that holds none, is refused before any connection. */
export async function verifyStored(ctx: VerifyContext, store: CredentialStore): Promise<StageReport[]> {
  const stored = await completeCredentials(store, ctx.deviceId, "verify");
  const cert = parseCertificate(stored.pems.certificatePem, `the certificate of '${ctx.deviceId}'`, "verify", "config");
  const now = ctx.now?.() ?? new Date();
  if (now >= cert.notAfter)
    // A broker on OpenSSL 1.0.2 (Mosca) refuses it by closing the connection, without saying why.
    ctx.emit({
      type: "note",
      message: `the stored certificate of '${ctx.deviceId}' expired at ${cert.notAfter.toISOString()}: the broker will refuse it; enroll again to renew it`,
    });
  return verifyCredentials(ctx, stored.pems, `'${ctx.deviceId}' in ${store.location}`);
}

/** The broker check with credentials in hand: stored ones, or (in a renewal) new ones not yet stored; `where` names them in messages. */
export async function verifyCredentials(
  ctx: VerifyContext,
  pems: CredentialPems,
  where: string,
): Promise<StageReport[]> {
  const identity = await identityOf(ctx, pems, where);
  const inToken = isKeyUri(pems.key);
  if (ctx.key.uri !== undefined && !inToken)
    throw usageError(`${ctx.name("key")} names a token key, but the key of ${where} is a key file`, "keyKind");
  const [{ checkBroker }, tokenKey] = await Promise.all([
    import("../broker/broker.js"),
    inToken ? import("../keys/token-tls.js").then((m) => m.tokenKeyForTls(ctx.key, pems.key)) : undefined,
  ]);
  try {
    return await checkBroker(
      {
        broker: ctx.broker.url,
        caPem: pems.caPem,
        certPem: pems.certificatePem,
        keyPem: inToken ? undefined : pems.key,
        keyEngine: tokenKey ? { ...tokenKey.engine, loaded: tokenKey.dispose } : undefined,
        clientId: ctx.broker.clientId ?? identity.clientId,
        topic: ctx.broker.topic ?? identity.topic,
        servername: ctx.broker.servername,
        tls: identity.tls,
        mqttVersion: ctx.broker.mqttVersion ?? identity.mqttVersion,
        timeoutMs: ctx.broker.timeoutMs,
        mqtt5AnswerMs: ctx.broker.mqtt5AnswerMs,
      },
      (s) => ctx.emit({ type: "broker", stage: s.stage, detail: s.detail, ms: s.ms }),
    );
  } finally {
    await tokenKey?.dispose();
  }
}

/** The MQTT identity: the settings' profile, else the one recorded with the credentials. */
async function identityOf(ctx: VerifyContext, pems: CredentialPems, where: string) {
  let recorded: ProfileRecord | undefined;
  try {
    recorded = pems.profileJson ? (JSON.parse(pems.profileJson) as ProfileRecord) : undefined;
  } catch {
    throw new CertRetrieverError(`verify failed: the recorded profile of ${where} is damaged`, {
      step: "verify",
      reason: "config",
    });
  }
  const record: ProfileRecord = {
    profile: ctx.broker.profile ?? recorded?.profile ?? "generic",
    deviceId: ctx.deviceId,
    tenant: recorded?.tenant,
    uriDomain: ctx.broker.uriDomain ?? recorded?.uriDomain,
  };
  const { mqttIdentity } = await import("../broker/profiles.js");
  return mqttIdentity(record);
}

/** A broker check's error with what became of the credentials added to its message (anything else as it is). */
export function withWhat(err: unknown, what: string): unknown {
  if (!(err instanceof CertRetrieverError)) return err;
  return new CertRetrieverError(`${err.message} (${what})`, {
    step: err.step,
    reason: err.reason,
    facts: err.facts,
    cause: err,
  });
}
