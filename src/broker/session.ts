import type { TLSSocket } from "node:tls";
import type { MqttClient } from "mqtt";
import { BrokerClosed, NoAnswer, type ProtocolLevel, publishError, undeliveredError } from "./errors.js";

/** One MQTT connection over a TLS socket that `verify` opened. */
export interface Session {
  client: MqttClient;
  level: ProtocolLevel;
  tls: TLSSocket;
  /** The first error on the socket: under TLS 1.3 a refused certificate arrives as one after the handshake. */
  socketError(): unknown;
}

/** What a publish proved: MQTT 5 PUBACK success, our own message back on a 3.1.1 subscription, or nothing beyond a 3.1.1 PUBACK. */
export type Delivery = "accepted" | "delivered" | "unconfirmed";

/** How a 3.1.1 publish went, and why delivery is unconfirmed when it is. */
export interface Watched {
  delivery: Delivery;
  /** Why delivery could not be watched for. */
  unwatched?: "suback-refused" | "closed-on-subscribe";
  /** The session that carried the publish: a new one if the broker closed the first on SUBSCRIBE. */
  session: Session;
}

/**
 * Sends CONNECT at `level` and waits up to `timeoutMs` for CONNACK 0; rejects with the broker's
 * refusal, the socket's error, {@link BrokerClosed} or {@link NoAnswer}.
 */
export async function openSession(
  tls: TLSSocket,
  level: ProtocolLevel,
  clientId: string,
  timeoutMs: number,
): Promise<Session> {
  let socketError: unknown;
  let onSocketError: (err: unknown) => void = () => undefined;
  tls.on("error", (err) => {
    socketError ??= err;
    onSocketError(err);
  });
  const { MqttClient } = await import("mqtt");
  const client = new MqttClient(() => tls as never, {
    protocolVersion: level,
    clientId,
    reconnectPeriod: 0,
    connectTimeout: timeoutMs * 2, // ours, below, comes first: mqtt.js's own would close the socket and look like the broker's close
    clean: true,
  });
  const session: Session = { client, level, tls, socketError: () => socketError };
  try {
    await withTimeout(timeoutMs, "CONNACK", (resolve, reject) => {
      client.once("connect", () => resolve(undefined));
      client.once("error", reject);
      onSocketError = reject;
      if (socketError) reject(socketError);
      client.once("close", () => reject(new BrokerClosed("CONNACK")));
      return () => undefined;
    });
  } catch (err) {
    client.end(true);
    tls.destroy();
    throw socketError ?? err;
  }
  client.on("error", () => undefined); // later errors surface through the waits below
  return session;
}

/** The JSON that `verify` publishes: recognisable, and unique enough to know our own message when it comes back. */
function verifyPayload(): string {
  return JSON.stringify({ "cert-retriever": "verify", at: new Date().toISOString() });
}

/** Publishes one QoS 1 message and waits for PUBACK; a refusal (MQTT 5 reason code, or the broker closing) rejects. */
export async function publish(
  session: Session,
  topic: string,
  timeoutMs: number,
  payload = verifyPayload(),
): Promise<void> {
  const { client, level } = session;
  await withTimeout(timeoutMs, "PUBACK", (resolve, reject) => {
    client.publish(topic, payload, { qos: 1 }, (err, packet) => {
      const code =
        (packet as { reasonCode?: number } | undefined)?.reasonCode ?? (err as { code?: number } | undefined)?.code;
      if (typeof code === "number" && code >= 0x80)
        reject(Object.assign(new Error(`reason ${code}`), { reasonCode: code }));
      else if (err) reject(err);
      else resolve(undefined);
    });
    client.once("close", () => reject(new BrokerClosed("PUBACK")));
    return () => undefined;
  }).catch((err: unknown) => {
    throw publishError(session.socketError() ?? err, level, topic);
  });
}

/**
 * MQTT 3.1.1, where a broker acknowledges even a publish it drops: subscribes to the topic first,
 * publishes, and waits for our own message to come back. If the broker refuses the subscription
 * (SUBACK 0x80, as Mosca does for any topic but /config) or closes the connection on it (aedes
 * when authorizeSubscribe errs), the publish goes ahead on a new session and stays unconfirmed.
 */
export async function publishAndWatch(
  session: Session,
  topic: string,
  timeoutMs: number,
  reopen: () => Promise<Session>,
): Promise<Watched> {
  const subscribed = await withTimeout<boolean | "closed">(timeoutMs, "SUBACK", (resolve, reject) => {
    session.client.subscribe(topic, { qos: 1 }, (err, _subs, suback) => {
      if (suback?.granted.some((g) => typeof g === "number" && g >= 0x80)) resolve(false);
      else if (err) reject(err);
      else resolve(true);
    });
    session.client.once("close", () => (session.socketError() ? reject(session.socketError()) : resolve("closed")));
    return () => undefined;
  }).catch((err: unknown) => {
    throw publishError(session.socketError() ?? err, session.level, topic);
  });
  if (subscribed === "closed") {
    const again = await reopen();
    await publish(again, topic, timeoutMs).catch(async (err: unknown) => {
      await closeSession(again); // the caller closes only the session it is handed back
      throw err;
    });
    return { delivery: "unconfirmed", unwatched: "closed-on-subscribe", session: again };
  }
  if (!subscribed) {
    await publish(session, topic, timeoutMs);
    return { delivery: "unconfirmed", unwatched: "suback-refused", session };
  }
  const payload = verifyPayload();
  let cameBack: () => void = () => undefined;
  let seen = false;
  session.client.on("message", (t, body) => {
    if (t === topic && body.toString() === payload) {
      seen = true;
      cameBack();
    }
  });
  await publish(session, topic, timeoutMs, payload);
  await withTimeout(timeoutMs, "own message", (resolve, reject) => {
    cameBack = () => resolve(undefined);
    if (seen) resolve(undefined);
    session.client.once("close", () => reject(new BrokerClosed("PUBACK")));
    return () => undefined;
  }).catch((err: unknown) => {
    throw err instanceof BrokerClosed ? publishError(err, session.level, topic) : undeliveredError(topic, timeoutMs);
  });
  return { delivery: "delivered", session };
}

/**
 * Ends a session that is up with DISCONNECT (so the broker logs a clean close, not an unexpected
 * EOF), after a failure too, and drops a broken one.
 */
export async function closeSession(session: Session): Promise<void> {
  const { client, tls } = session;
  if (!session.socketError() && !tls.destroyed && client.connected) {
    // end(false) sends DISCONNECT only once nothing is in flight: a PUBLISH or SUBSCRIBE whose wait
    // timed out (the broker never answered) would hold it back until we destroyed the socket, so
    // drop those first; their callbacks get "Message removed", after their waits have settled.
    for (const id of Object.keys(client.outgoing)) client.removeOutgoingMessage(Number(id));
    const ended = new Promise<void>((resolve) => client.end(false, {}, () => resolve()));
    // end()'s callback comes when the broker closes after our DISCONNECT; one that never does must not hold us.
    await Promise.race([ended, new Promise((r) => setTimeout(r, 1000).unref())]);
  }
  tls.destroy();
}

/** Runs `body` and rejects with "no WHAT within N s" if it has not settled in `ms`. */
export function withTimeout<T>(
  ms: number,
  what: string,
  body: (resolve: (v: T) => void, reject: (e: unknown) => void) => () => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let cleanup: () => void = () => undefined;
    const timer = setTimeout(() => {
      cleanup();
      reject(new NoAnswer(what, ms));
    }, ms);
    try {
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
    } catch (err) {
      // tls.connect throws at once when a key engine fails
      clearTimeout(timer);
      reject(err);
    }
  });
}
