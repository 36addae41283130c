import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { connect, type IClientOptions } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MoscaBroker, startMoscaBroker } from "../helpers/aedes.js";
import { runCli } from "../helpers/cli.js";
import { enrollCli } from "../helpers/enroll.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";

// aedes 0.51 speaks MQTT 3.1.1 only, as Mosca (dojot <= v0.4) and amqtt 0.11 do; it runs in this
// process with Mosca's rules from iotagent-mosca v0.4.3, so no system broker is needed.
describe("verify against an MQTT 3.1.1-only broker (aedes 0.51 with Mosca's rules from dojot <= v0.4)", () => {
  let lab: TestLab;
  let broker: MoscaBroker;
  beforeAll(async () => {
    lab = await startTestLab({ certProfile: "open", autoRegister: true });
    broker = await startMoscaBroker(lab.dir);
  });
  afterAll(async () => {
    await broker?.stop();
    await lab?.stop();
  });

  /** Enrolls `id` with the dojot-mosca profile and returns its credentials directory. */
  const enrolled = async (id: string, extra: string[] = []) => {
    const out = join(await tempDir(), "certs");
    const run = await enrollCli(lab.url, lab, id, out, ["--key-type", "ec-p256", "--profile", "dojot-mosca", ...extra]);
    expect(run.code, run.stderr).toBe(0);
    return { out, run };
  };
  /** `verify` of `id` from `out` against `url`. */
  const verify = (url: string, id: string, out: string, ...extra: string[]) =>
    runCli(["verify", "--broker", url, "--device-id", id, "--out", out, "--broker-timeout", "5s", ...extra]);

  it("aedes 0.51 refuses MQTT 5 (CONNACK return code 1, then it closes) and takes the same credentials over 3.1.1", async () => {
    const { out } = await enrolled("proto1");
    const tls: IClientOptions = {
      clientId: "admin:proto1",
      reconnectPeriod: 0,
      ca: await readFile(join(out, "IOTmidCA.crt"), "utf8"),
      cert: await readFile(join(out, "proto1.crt"), "utf8"),
      key: await readFile(join(out, "proto1.key"), "utf8"),
      rejectUnauthorized: true,
    };
    const attempt = (protocolVersion: 4 | 5) =>
      new Promise<{ answer: unknown; closed: Promise<void> }>((resolve) => {
        const client = connect(broker.url, { ...tls, protocolVersion });
        const closed = new Promise<void>((r) => client.once("close", () => r()));
        client.once("error", (err) => resolve({ answer: err, closed }));
        client.once("connect", () =>
          resolve({ answer: "CONNACK 0", closed: new Promise((r) => client.end(false, {}, () => r())) }),
        );
      });
    const v5 = await attempt(5);
    expect(v5.answer).toMatchObject({ code: 1, message: expect.stringMatching(/Unacceptable protocol version/) });
    await v5.closed; // the broker does not keep the connection
    const v311 = await attempt(4);
    expect(v311.answer).toBe("CONNACK 0");
    await v311.closed;
  });

  it("enroll --profile dojot-mosca --verify-broker: MQTT 3.1.1, PUBACK without a claim of delivery, and a clean DISCONNECT", async () => {
    const { run } = await enrolled("mosca1", ["--verify-broker", broker.url, "--json"]);
    expect(run.stderr).toContain("verify connack: accepted as client 'admin:mosca1' (MQTT 3.1.1)");
    expect(run.stderr).toContain(
      "verify puback: PUBACK received for '/admin/mosca1/attrs' (MQTT 3.1.1 brokers acknowledge even a publish they drop); delivery not proven: the broker did not let us subscribe to the topic to watch for it",
    );
    expect(run.stderr).not.toMatch(/published|accepted.*attrs/);
    const stages = JSON.parse(run.stdout).verify as Array<{ stage: string; mqttVersion?: string; delivery?: string }>;
    expect(stages.map((s) => s.stage)).toEqual(["tcp", "tls", "connack", "puback"]);
    expect(stages[3]).toMatchObject({ mqttVersion: "3.1.1", delivery: "unconfirmed" });
    expect(broker.published).toContain("/admin/mosca1/attrs");
    expect(await broker.ended("admin:mosca1")).toEqual({ clientId: "admin:mosca1", disconnected: true });
  });

  it("--mqtt-version auto tries MQTT 5, falls back to 3.1.1 and says so (through enroll --verify-broker too)", async () => {
    const { out, run } = await enrolled("auto1", ["--verify-broker", broker.url, "--mqtt-version", "auto"]);
    expect(run.stderr).toContain(
      "verify connack: accepted as client 'admin:auto1' (MQTT 3.1.1, after the broker refused MQTT 5)",
    );
    const again = await verify(broker.url, "auto1", out, "--mqtt-version", "auto", "--json");
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain(
      "verify connack: accepted as client 'admin:auto1' (MQTT 3.1.1, after the broker refused MQTT 5)",
    );
    expect(again.stderr.match(/verify tcp:/g)).toHaveLength(1); // the second connection is not a new stage
    expect(JSON.parse(again.stdout).stages[2]).toMatchObject({ stage: "connack", mqttVersion: "3.1.1" });
  });

  it("--mqtt-version 5 against it: exit 24, the broker does not speak MQTT 5, with the hint to use 3.1.1 or auto", async () => {
    const { out } = await enrolled("five1");
    const run = await verify(broker.url, "five1", out, "--mqtt-version", "5");
    expect(run.stderr).toMatch(
      /verify failed: the broker did not accept an MQTT 5 connection: it answered Unacceptable protocol version \(MQTT 3\.1\.1 return code 1\)/,
    );
    expect(run.stderr).toMatch(/pass --mqtt-version 3\.1\.1 or auto/);
    expect(run.stderr).not.toMatch(/--client-id/);
    expect(run.code).toBe(24);
  });

  it("a publish outside /<tenant>/<device>/attrs: the broker closes the connection, exit 25, nothing claimed as published", async () => {
    const { out } = await enrolled("acl1");
    const run = await verify(broker.url, "acl1", out, "--topic", "/admin/acl2/attrs");
    expect(run.stderr).toMatch(
      /verify failed: the broker closed the connection after our publish to '\/admin\/acl2\/attrs', which is how an MQTT 3\.1\.1 broker refuses a publish/,
    );
    expect(run.stderr).not.toMatch(/verify puback|published/);
    expect(run.code).toBe(25);
    expect(broker.published).not.toContain("/admin/acl2/attrs");
  });

  it("a client id whose device is not the certificate's CN: CONNACK Not authorized (return code 5), exit 24", async () => {
    const { out } = await enrolled("cn1");
    const run = await verify(broker.url, "cn1", out, "--client-id", "admin:cn2");
    expect(run.stderr).toMatch(
      /verify failed: the broker did not accept the connection of client 'admin:cn2': Not authorized \(MQTT 3\.1\.1 return code 5\)/,
    );
    expect(run.stderr).toMatch(/check --profile and --client-id/);
    expect(run.code).toBe(24);
    const noTenant = await verify(broker.url, "cn1", out, "--client-id", "cn1");
    expect([noTenant.code, noTenant.stderr]).toEqual([
      24,
      expect.stringMatching(/client 'cn1': Not authorized \(MQTT 3\.1\.1 return code 5\)/),
    ]);
  });

  describe("other 3.1.1 brokers' answers to the subscription that watches for our publish", () => {
    it("a broker that lets the device read its topic: 'published', with delivery proven by our own message", async () => {
      const reader = await startMoscaBroker(lab.dir, { readOwnAttrs: true });
      try {
        const { out } = await enrolled("read1");
        const run = await verify(reader.url, "read1", out, "--json");
        expect(run.code, run.stderr).toBe(0);
        expect(run.stderr).toContain(
          "verify puback: published to '/admin/read1/attrs' with QoS 1 (MQTT 3.1.1): delivery proven, the message came back on our subscription to the topic",
        );
        expect(JSON.parse(run.stdout).stages[3]).toMatchObject({ delivery: "delivered" });
      } finally {
        await reader.stop();
      }
    });

    it("a broker that acknowledges the publish and never delivers it: exit 25 once the wait is over", async () => {
      const dropper = await startMoscaBroker(lab.dir, { readOwnAttrs: true, deliverNothing: true });
      try {
        const { out } = await enrolled("drop1");
        const run = await verify(dropper.url, "drop1", out, "--broker-timeout", "1s");
        expect(run.stderr).toMatch(
          /verify failed: the broker acknowledged our publish to '\/admin\/drop1\/attrs' but did not deliver it to our own subscription to that topic within 1 s/,
        );
        expect(run.stderr).not.toMatch(/verify puback|published/);
        expect(run.code).toBe(25);
      } finally {
        await dropper.stop();
      }
    });

    it("a broker that closes the connection on the SUBSCRIBE: the publish goes on a new connection, delivery not proven", async () => {
      const closer = await startMoscaBroker(lab.dir, { closeOnRefusedSubscribe: true });
      try {
        const { out } = await enrolled("sub1");
        const run = await verify(closer.url, "sub1", out);
        expect(run.code, run.stderr).toBe(0);
        expect(run.stderr).toContain(
          "delivery not proven: the broker closed the connection when we subscribed to the topic to watch for it",
        );
        expect(await closer.ended("admin:sub1")).toMatchObject({ disconnected: false });
        expect(await closer.ended("admin:sub1")).toMatchObject({ disconnected: true });
      } finally {
        await closer.stop();
      }
    });
  });
});
