import { readFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { createServer, type TLSSocket } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueServerCertificate, loadOrCreateCa } from "../../lab/src/ca.js";
import { softwareCrypto } from "../../src/keys/provider.js";
import { startMoscaBroker } from "../helpers/aedes.js";
import { runCli } from "../helpers/cli.js";
import { enrollCli } from "../helpers/enroll.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { startBroker } from "../helpers/mosquitto.js";
import { haveTool } from "../helpers/tools.js";

/** MQTT control packet types (MQTT 5 section 2.1.2, the same numbers in 3.1.1). */
const TYPES: Record<number, string> = { 1: "CONNECT", 3: "PUBLISH", 8: "SUBSCRIBE", 12: "PINGREQ", 14: "DISCONNECT" };

/** A broker that accepts every connection and then never answers: the packets each connection brought, in order, once it has ended. */
interface SilentBroker {
  url: string;
  /** Resolves with the packet types of the next connection to end (each handed out once, oldest first). */
  ended(): Promise<string[]>;
  stop(): Promise<void>;
}

/**
 * Just enough of a broker, over TLS with a server certificate for 127.0.0.1 from the lab CA, to
 * answer CONNECT with CONNACK 0 (MQTT 5 or 3.1.1, as asked) and, with `suback`, SUBSCRIBE with
 * QoS 1 granted; a PUBLISH (and without `suback` a SUBSCRIBE) is never answered, as from a broker
 * that hangs or an ACL that drops packets. It reads whole packets, so a DISCONNECT is told apart
 * from a payload byte.
 */
async function startSilentBroker(labDir: string, opts: { suback?: boolean } = {}): Promise<SilentBroker> {
  const crypto = softwareCrypto();
  const issued = await issueServerCertificate(
    await loadOrCreateCa(labDir, crypto),
    [{ type: "ip", value: "127.0.0.1" }],
    crypto,
  );
  const ends: string[][] = [];
  const waiters: Array<() => void> = [];
  const sockets = new Set<TLSSocket>();
  const server = createServer({ key: issued.key, cert: issued.cert }, (socket) => {
    sockets.add(socket);
    const seen: string[] = [];
    let level = 4;
    let buf = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        // The fixed header: the type in the first byte's high 4 bits, then the remaining length in 1 to 4 bytes of 7 bits.
        let length = 0;
        let at = 1;
        let complete = false;
        while (!complete && at < buf.length && at <= 4) {
          const byte = buf[at]!;
          length += (byte & 0x7f) * 128 ** (at - 1);
          complete = (byte & 0x80) === 0;
          at++;
        }
        if (!complete || buf.length < at + length) break;
        const type = buf[0]! >> 4;
        const body = buf.subarray(at, at + length);
        buf = buf.subarray(at + length);
        seen.push(TYPES[type] ?? `type ${type}`);
        if (type === 1) {
          level = body[6]!; // after the protocol name "MQTT" and its 2-byte length
          socket.write(Buffer.from(level === 5 ? [0x20, 3, 0, 0, 0] : [0x20, 2, 0, 0]));
        } else if (type === 8 && opts.suback) {
          socket.write(
            Buffer.from(level === 5 ? [0x90, 4, body[0]!, body[1]!, 0, 1] : [0x90, 3, body[0]!, body[1]!, 1]),
          );
        }
      }
    });
    socket.on("error", () => undefined);
    socket.once("close", () => {
      sockets.delete(socket);
      ends.push(seen);
      for (const wake of waiters.splice(0)) wake();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `mqtts://127.0.0.1:${(server.address() as AddressInfo).port}`,
    ended: () =>
      new Promise((resolve) => {
        const look = () => (ends.length > 0 ? resolve(ends.shift()!) : waiters.push(look));
        look();
      }),
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

// Issue 12: `verify` must end its connection with DISCONNECT (MQTT 5 and 3.1.1), on success and
// on a failure after CONNACK while the connection is still up, so the broker logs a clean close
// and not an unexpected EOF ("closed its connection", "socket error").
describe("verify ends its MQTT connection with DISCONNECT", () => {
  let lab: TestLab;
  beforeAll(async () => {
    lab = await startTestLab({ certProfile: "open", autoRegister: true });
  });
  afterAll(async () => {
    await lab?.stop();
  });

  /** Enrolls `id` with the dojot-mosca profile (client id admin:<id>, topic /admin/<id>/attrs) and returns its credentials directory. */
  const enrolled = async (id: string) => {
    const out = join(await tempDir(), "certs");
    const run = await enrollCli(lab.url, lab, id, out, ["--key-type", "ec-p256", "--profile", "dojot-mosca"]);
    expect(run.code, run.stderr).toBe(0);
    return out;
  };
  /** `verify` of `id` from `out` against `url`. */
  const verify = (url: string, id: string, out: string, ...extra: string[]) =>
    runCli(["verify", "--broker", url, "--device-id", id, "--out", out, "--broker-timeout", "5s", ...extra]);

  describe.skipIf(!haveTool("mosquitto"))(
    "mosquitto's log: 'Client X disconnected.', not 'closed its connection.' or 'socket error'",
    () => {
      /** What mosquitto logged about `clientId` ending its connection: one line per connection. */
      const ends = (log: string, clientId: string) =>
        log
          .split("\n")
          .filter(
            (line) =>
              line.includes(`Client ${clientId} `) &&
              /disconnected|closed its connection|socket error|has exceeded timeout/.test(line),
          )
          .map((line) => line.replace(/^\d+: /, ""));

      it("MQTT 5 and 3.1.1, a publish that passes and one the broker refuses: each connection ends with DISCONNECT", async () => {
        const [ok5, no5, ok4, no4] = ["ok5", "no5", "ok4", "no4"];
        const outs = await Promise.all([ok5, no5, ok4, no4].map(enrolled));
        const broker = await startBroker(lab.dir);
        let log: string;
        try {
          const runs = [
            await verify(broker.url, ok5, outs[0]!, "--mqtt-version", "5"),
            await verify(broker.url, no5, outs[1]!, "--mqtt-version", "5", "--topic", "/admin/other/attrs"),
            await verify(broker.url, ok4, outs[2]!, "--mqtt-version", "3.1.1"),
            await verify(
              broker.url,
              no4,
              outs[3]!,
              "--mqtt-version",
              "3.1.1",
              "--topic",
              "/admin/other/attrs",
              "--broker-timeout",
              "1s",
            ),
          ];
          expect(runs.map((r) => r.code)).toEqual([0, 25, 0, 25]);
          expect(runs[1]!.stderr).toMatch(/Not authorized \(0x87\)/);
          expect(runs[3]!.stderr).toMatch(/did not deliver it to our own subscription/);
        } finally {
          await broker.stop();
          log = await readFile(join(broker.dir, "log"), "utf8");
        }
        for (const id of [ok5, no5, ok4, no4])
          expect(ends(log, `admin:${id}`), log).toEqual([`Client admin:${id} disconnected.`]);
      });
    },
  );

  describe("aedes 0.51 (MQTT 3.1.1 only): 'clientDisconnect' after a DISCONNECT packet", () => {
    it("a publish that came back, and one that never did (the broker drops it): DISCONNECT both times", async () => {
      const broker = await startMoscaBroker(lab.dir, { readOwnAttrs: true });
      const dropper = await startMoscaBroker(lab.dir, { readOwnAttrs: true, deliverNothing: true });
      try {
        const out = await enrolled("aedes1");
        const ok = await verify(broker.url, "aedes1", out);
        expect(ok.code, ok.stderr).toBe(0);
        expect(await broker.ended("admin:aedes1")).toEqual({ clientId: "admin:aedes1", disconnected: true });
        const dropped = await verify(dropper.url, "aedes1", out, "--broker-timeout", "1s");
        expect(dropped.code, dropped.stderr).toBe(25);
        expect(await dropper.ended("admin:aedes1")).toEqual({ clientId: "admin:aedes1", disconnected: true });
      } finally {
        await broker.stop();
        await dropper.stop();
      }
    });
  });

  describe("a broker that never answers our PUBLISH or SUBSCRIBE: after the wait, DISCONNECT still goes out before we close", () => {
    /** verify against a broker that leaves `unanswered` out: exit 25 naming it, and the packets the broker saw end in DISCONNECT. */
    async function expectDisconnectAfterSilence(
      broker: { url: string; ended(): Promise<string[]> },
      id: string,
      out: string,
      version: string,
      unanswered: string,
      packets: string[],
    ): Promise<void> {
      const run = await verify(broker.url, id, out, "--mqtt-version", version, "--broker-timeout", "1s");
      expect(run.stderr).toMatch(new RegExp(`verify failed: .*no ${unanswered} within 1 s`));
      expect(run.code).toBe(25);
      expect(await broker.ended()).toEqual(packets);
    }

    it("MQTT 5: no PUBACK within --broker-timeout, exit 25, and the broker gets DISCONNECT", async () => {
      const broker = await startSilentBroker(lab.dir);
      try {
        const out = await enrolled("mute5");
        await expectDisconnectAfterSilence(broker, "mute5", out, "5", "PUBACK", ["CONNECT", "PUBLISH", "DISCONNECT"]);
      } finally {
        await broker.stop();
      }
    });

    it("MQTT 3.1.1: no SUBACK, then (another broker) no PUBACK: exit 25 both times, and DISCONNECT both times", async () => {
      const noSuback = await startSilentBroker(lab.dir);
      const noPuback = await startSilentBroker(lab.dir, { suback: true });
      try {
        const out = await enrolled("mute4");
        await expectDisconnectAfterSilence(noSuback, "mute4", out, "3.1.1", "SUBACK", [
          "CONNECT",
          "SUBSCRIBE",
          "DISCONNECT",
        ]);
        await expectDisconnectAfterSilence(noPuback, "mute4", out, "3.1.1", "PUBACK", [
          "CONNECT",
          "SUBSCRIBE",
          "PUBLISH",
          "DISCONNECT",
        ]);
      } finally {
        await noSuback.stop();
        await noPuback.stop();
      }
    });
  });
});
