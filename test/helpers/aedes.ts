import { readFile } from "node:fs/promises";
import type { AddressInfo, Socket } from "node:net";
import { join } from "node:path";
import { createServer, type TLSSocket } from "node:tls";
import aedes from "aedes";
import { issueServerCertificate, loadOrCreateCa } from "../../lab/src/ca.js";
import { softwareCrypto } from "../../src/keys/provider.js";
import { swallowMqtt5 } from "./mosca-silent.js";

/** How a connection ended, as the broker saw it. */
interface ClientEnd {
  clientId: string;
  /** Whether the client sent DISCONNECT first (aedes lib/handlers/index.js sets `_disconnected` on it). */
  disconnected: boolean;
}

/** aedes 0.51 (MQTT 3.1.1 only) on 127.0.0.1 over TLS with client certificates, with Mosca's rules from dojot <= v0.4. */
export interface MoscaBroker {
  url: string;
  /** Topics the broker took a publish on (after authorizePublish), in order. */
  published: string[];
  /** How many MQTT 5 CONNECTs were left unanswered (with `asMosca283`). */
  swallowed(): number;
  /** Resolves when a connection of `clientId` has ended (each end is handed out once, oldest first). */
  ended(clientId: string): Promise<ClientEnd>;
  stop(): Promise<void>;
}

/** Departures from Mosca's rules, to show how `verify` reads other 3.1.1 brokers. */
export interface MoscaBrokerOptions {
  /** Answer a refused SUBSCRIBE by closing the connection (aedes when authorizeSubscribe errs), not with SUBACK 0x80 (Mosca). */
  closeOnRefusedSubscribe?: boolean;
  /** Also let a device subscribe to its own /attrs topic (Mosca allows only /config). */
  readOwnAttrs?: boolean;
  /** Deliver nothing to subscribers: a publish is acknowledged and goes nowhere, as a 3.1.1 ACL that drops it. */
  deliverNothing?: boolean;
  /**
   * Behave as Mosca 2.8.3 on Node 8.14 (OpenSSL 1.0.2) does where aedes differs: TLS 1.2 at most,
   * and an MQTT 5 CONNECT left unanswered with the connection open (see mosca-silent.ts).
   */
  asMosca283?: boolean;
}

/** Mosca's client id: `<tenant>:<device>` (iotagent-mosca v0.4.3 index.js, parseClientIdOrTopic). */
const CLIENT_ID = /^(\w+):(\w+)$/;

/**
 * Starts aedes with a server certificate for 127.0.0.1 from the lab CA in `labDir`, with the
 * rules of iotagent-mosca v0.4.3 (index.js): TLS with requestCert and rejectUnauthorized; the
 * client id must be `<tenant>:<device>` and the certificate's CN the device, else CONNACK 5 (Mosca
 * answers `callback(null, false)` so); publish only to `/<tenant>/<device>/attrs`, else the
 * connection is closed (Mosca lib/client.js handleAuthorizePublish, aedes when authorizePublish
 * errs); subscribe only to `/<tenant>/<device>/config`, else SUBACK 0x80 (Mosca handleSubscribe).
 * Mosca's third condition, that the device exists in dojot, is left out: the lab enrolled it.
 */
export async function startMoscaBroker(labDir: string, opts: MoscaBrokerOptions = {}): Promise<MoscaBroker> {
  const crypto = softwareCrypto();
  const issued = await issueServerCertificate(
    await loadOrCreateCa(labDir, crypto),
    [{ type: "ip", value: "127.0.0.1" }],
    crypto,
  );
  const ids = (client: { id: string } | null) => CLIENT_ID.exec(client?.id ?? "");
  // aedes.js: `module.exports = Aedes.createBroker = Aedes`, so the default import carries createBroker.
  const broker = aedes.createBroker({
    authenticate(client, _username, _password, done) {
      const id = ids(client);
      const cn = (client.conn as TLSSocket).getPeerCertificate().subject?.CN;
      done(null, Boolean(id && cn === id[2]));
    },
    authorizePublish(client, packet, done) {
      const id = ids(client);
      done(
        id && packet.topic === `/${id[1]}/${id[2]}/attrs`
          ? null
          : new Error(`publish to ${packet.topic} not authorized`),
      );
    },
    authorizeSubscribe(client, sub, done) {
      const id = ids(client);
      const allowed =
        id &&
        (sub.topic === `/${id[1]}/${id[2]}/config` || (opts.readOwnAttrs && sub.topic === `/${id[1]}/${id[2]}/attrs`));
      if (allowed) done(null, sub);
      else if (opts.closeOnRefusedSubscribe) done(new Error(`subscribe to ${sub.topic} not authorized`));
      else done(null, null);
    },
    authorizeForward: (_client, packet) => (opts.deliverNothing ? null : packet),
  });
  const published: string[] = [];
  broker.on("publish", (packet, client) => {
    if (client) published.push(packet.topic);
  });
  const ends: ClientEnd[] = [];
  const waiters: Array<() => void> = [];
  broker.on("clientDisconnect", (client) => {
    ends.push({
      clientId: client.id,
      disconnected: (client as unknown as { _disconnected?: boolean })._disconnected === true,
    });
    for (const wake of waiters.splice(0)) wake();
  });

  let swallowed = 0;
  const sockets = new Set<Socket>();
  const server = createServer(
    {
      key: issued.key,
      cert: issued.cert,
      ca: await readFile(join(labDir, "ca.crt"), "utf8"),
      requestCert: true,
      rejectUnauthorized: true,
      ...(opts.asMosca283 ? { maxVersion: "TLSv1.2" as const } : {}),
    },
    (socket) => {
      if (opts.asMosca283)
        swallowMqtt5(
          socket,
          (s) => broker.handle(s),
          () => swallowed++,
        );
      else broker.handle(socket);
    },
  );
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `mqtts://127.0.0.1:${port}`,
    published,
    swallowed: () => swallowed,
    ended: (clientId) =>
      new Promise((resolve) => {
        const look = () => {
          const at = ends.findIndex((e) => e.clientId === clientId);
          if (at >= 0) resolve(ends.splice(at, 1)[0]!);
          else waiters.push(look);
        };
        look();
      }),
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      await Promise.all([
        new Promise((resolve) => server.close(resolve)),
        new Promise<void>((resolve) => broker.close(() => resolve())),
      ]);
    },
  };
}
