import { readFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkBroker, MQTT5_ANSWER_MS, type StageReport } from "../../src/broker/broker.js";
import { type MoscaBroker, startMoscaBroker } from "../helpers/aedes.js";
import { runCli, runMain } from "../helpers/cli.js";
import { enrollCli } from "../helpers/enroll.js";
import { validate } from "../helpers/json-schema.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";

const schema = JSON.parse(
  readFileSync(join(import.meta.dirname, "..", "..", "docs", "cli-output.schema.json"), "utf8"),
);

// A broker as iotagent-mosca's is: Mosca 2.8.3 on Node 8.14 (OpenSSL 1.0.2), whose parser cannot
// read an MQTT 5 CONNECT and whose TLS server drops a client certificate it refuses without an
// alert; aedes 0.51 with Mosca's rules, made to do both (test/helpers/mosca-silent.ts cites the code).
describe("verify against a broker that behaves as Mosca 2.8.3 on Node 8", () => {
  let lab: TestLab;
  let other: TestLab;
  let broker: MoscaBroker;
  beforeAll(async () => {
    [lab, other] = await Promise.all([
      startTestLab({ certProfile: "open", autoRegister: true }),
      startTestLab({ caSet: "other", certProfile: "open", autoRegister: true }),
    ]);
    broker = await startMoscaBroker(lab.dir, { asMosca283: true });
  });
  afterAll(async () => {
    await broker?.stop();
    await Promise.all([lab?.stop(), other?.stop()]);
  });

  /** Enrolls `id` at `platform` and returns its credentials directory. */
  const enrolled = async (id: string, platform = lab) => {
    const out = join(await tempDir(), "certs");
    const run = await enrollCli(platform.url, platform, id, out, ["--key-type", "ec-p256"]);
    expect(run.code, run.stderr).toBe(0);
    return out;
  };
  const verifyArgs = (url: string, id: string, out: string, ...extra: string[]) => [
    "verify",
    "--broker",
    url,
    "--device-id",
    id,
    "--out",
    out,
    ...extra,
  ];

  it("--mqtt-version auto (the default): the MQTT 5 CONNECT goes unanswered, verify asks again in 3.1.1 and says so", async () => {
    const out = await enrolled("silent1");
    const before = broker.swallowed();
    const run = await runCli(verifyArgs(broker.url, "silent1", out, "--client-id", "admin:silent1", "--json"));
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain(
      `verify connack: accepted as client 'admin:silent1' (MQTT 3.1.1, after the broker left an MQTT 5 CONNECT unanswered for ${MQTT5_ANSWER_MS / 1000} s, as Mosca does)`,
    );
    const json = JSON.parse(run.stdout);
    expect(validate(schema, json), run.stdout).toEqual([]); // the field is in docs/cli-output.schema.json
    expect(json.stages[2]).toMatchObject({
      stage: "connack",
      mqttVersion: "3.1.1",
      mqtt5Fallback: "unanswered",
    });
    expect(broker.swallowed()).toBe(before + 1);
    expect(run.stderr).toMatch(/verify tls: TLSv1\.2 /);
  });

  it("the wait for an MQTT 5 answer is its own bound, shorter than --broker-timeout", async () => {
    const out = await enrolled("silent2");
    const pem = (name: string) => readFile(join(out, name), "utf8");
    const started = performance.now();
    const stages: StageReport[] = await checkBroker(
      {
        broker: new URL(broker.url),
        caPem: await pem("IOTmidCA.crt"),
        certPem: await pem("silent2.crt"),
        keyPem: await pem("silent2.key"),
        clientId: "admin:silent2",
        timeoutMs: 30_000,
        mqtt5AnswerMs: 300,
      },
      () => undefined,
    );
    expect(stages[2]).toMatchObject({ mqttVersion: "3.1.1", mqtt5Fallback: "unanswered" });
    expect(stages[2]!.detail).toMatch(/unanswered for 0\.3 s/);
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it("--mqtt-version 5: exit 24, the broker did not answer within --broker-timeout, with the hint to use 3.1.1 or auto", async () => {
    const out = await enrolled("silent3");
    const run = await runCli(
      verifyArgs(
        broker.url,
        "silent3",
        out,
        "--client-id",
        "admin:silent3",
        "--mqtt-version",
        "5",
        "--broker-timeout",
        "2s",
      ),
    );
    expect(run.stderr).toMatch(
      /verify failed: the broker did not accept an MQTT 5 connection: it did not answer our CONNECT within 2 s and kept the connection open/,
    );
    expect(run.stderr).toMatch(/pass --mqtt-version 3\.1\.1 or auto/);
    expect(run.stderr).not.toMatch(/closed the connection/);
    expect(run.code).toBe(24);
  });

  it("a certificate from another CA: the broker closes after it without an alert, and verify says it refused the certificate (exit 22)", async () => {
    const out = await enrolled("stranger", other);
    // The broker's certificate comes from the first lab: trust it, so that only our certificate is in question.
    await writeFile(join(out, "IOTmidCA.crt"), await readFile(join(lab.dir, "ca.crt"), "utf8"));
    const run = await runCli(verifyArgs(broker.url, "stranger", out, "--mqtt-version", "3.1.1"));
    expect(run.stderr).toMatch(
      /verify failed: the broker closed the connection right after our client certificate, without a TLS alert, as a TLS 1\.2 broker does when it refuses the certificate: it is likely from a CA the broker does not trust \(another platform's\), or expired/,
    );
    expect(run.stderr).not.toMatch(/mqtts:\/\/ listener/);
    expect(run.code).toBe(22);
  });

  it("a listener that is not TLS and closes on our ClientHello: still exit 20 (unreachable), not a refused certificate", async () => {
    const out = await enrolled("plain1");
    const plain: Server = createServer((socket) => socket.once("data", () => socket.destroy()));
    await new Promise<void>((resolve) => plain.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = plain.address() as { port: number };
      const run = await runCli(verifyArgs(`mqtts://127.0.0.1:${port}`, "plain1", out));
      expect(run.stderr).toMatch(/verify failed: the TLS handshake with the broker failed/);
      expect(run.stderr).toMatch(/is it an mqtts:\/\/ listener\?/);
      expect(run.code).toBe(20);
    } finally {
      await new Promise((resolve) => plain.close(resolve));
    }
  });

  it("a stored certificate that has expired: verify says so before it connects", async () => {
    const out = await enrolled("old1");
    const later = new Date(Date.now() + 3 * 366 * 86_400_000);
    const run = await runMain(
      verifyArgs(broker.url, "old1", out, "--client-id", "admin:old1", "--mqtt-version", "3.1.1"),
      {
        clock: () => later,
      },
    );
    expect(run.stderr).toMatch(
      /note: the stored certificate of 'old1' expired at \S+: the broker will refuse it; enroll again to renew it\n(.*\n)*verify tcp:/,
    );
    const now = await runCli(
      verifyArgs(broker.url, "old1", out, "--client-id", "admin:old1", "--mqtt-version", "3.1.1"),
    );
    expect([now.code, now.stderr]).toEqual([0, expect.not.stringMatching(/expired/)]);
  });
});
