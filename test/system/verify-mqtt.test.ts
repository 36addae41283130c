import { spawnSync } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadOrCreateCa, RSA_SHA256 } from "../../lab/src/ca.js";
import { startLab } from "../../lab/src/server.js";
import { checkBroker } from "../../src/broker/broker.js";
import { privateKeyPem, toPem } from "../../src/keys/key-types.js";
import { softwareCrypto } from "../../src/keys/provider.js";
import * as x509 from "../../src/keys/x509.js";
import { runCli } from "../helpers/cli.js";
import { enrollCli } from "../helpers/enroll.js";
import { closedPort, startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { startBroker, type TestBroker } from "../helpers/mosquitto.js";
import { haveTool, openssl } from "../helpers/tools.js";

const ready = haveTool("mosquitto") && haveTool("mosquitto_pub");
const crypto = softwareCrypto();

describe.skipIf(!ready)("verify against a real mosquitto (mutual TLS, identity as username, per-identity ACL)", () => {
  let lab: TestLab;
  let other: TestLab;
  let broker: TestBroker;
  beforeAll(async () => {
    [lab, other] = await Promise.all([
      startTestLab({ certProfile: "open", autoRegister: true }),
      startTestLab({ caSet: "other", autoRegister: true }),
    ]);
    broker = await startBroker(lab.dir);
  });
  afterAll(async () => {
    await broker?.stop();
    await Promise.all([lab.stop(), other.stop()]);
  });

  /** `verify` for device `id` whose credentials are in `out`. */
  const verify = (id: string, out: string, ...extra: string[]) =>
    runCli(["verify", "--broker", broker.url, "--device-id", id, "--out", out, "--broker-timeout", "5s", ...extra]);

  it("enroll --verify-broker: TCP, TLS, CONNACK and PUBACK pass; mosquitto_pub takes the same files as in dojot's guide", async () => {
    const out = join(await tempDir(), "certs");
    const run = await enrollCli(lab.url, lab, "f60c28", out, [
      "--key-type",
      "rsa-2048",
      "--profile",
      "dojot-mosca",
      "--verify-broker",
      broker.url,
      "--json",
    ]);
    expect(run.code, run.stderr).toBe(0);
    for (const stage of [
      "tcp: connected to localhost",
      "tls: TLSv1.3",
      "connack: accepted as client 'admin:f60c28'",
      "puback: published to '/admin/f60c28/attrs' with QoS 1",
    ]) {
      expect(run.stderr).toContain(`verify ${stage}`);
    }
    // dojot-mosca speaks MQTT 3.1.1 (Mosca's only version); mosquitto lets the device read its own topic, so delivery is proven.
    expect(run.stderr).toContain(
      "verify puback: published to '/admin/f60c28/attrs' with QoS 1 (MQTT 3.1.1): delivery proven, the message came back on our subscription to the topic",
    );
    expect(JSON.parse(run.stdout).verify.map((s: { stage: string }) => s.stage)).toEqual([
      "tcp",
      "tls",
      "connack",
      "puback",
    ]);
    expect(openssl("x509", "-in", join(out, "f60c28.crt"), "-noout", "-subject").trim()).toBe("subject=CN = f60c28");
    expect(JSON.parse(await readFile(join(out, "f60c28.profile.json"), "utf8"))).toEqual({
      profile: "dojot-mosca",
      deviceId: "f60c28",
      tenant: "admin",
    });
    const pub = spawnSync(
      "mosquitto_pub",
      [
        "-h",
        "localhost",
        "-p",
        String(broker.port),
        "-t",
        "/admin/f60c28/attrs",
        "-i",
        "admin:f60c28",
        "-m",
        '{"temp": 10}',
        "-q",
        "1",
        "-V",
        "mqttv5",
        "--cafile",
        join(out, "IOTmidCA.crt"),
        "--cert",
        join(out, "f60c28.crt"),
        "--key",
        join(out, "f60c28.key"),
      ],
      { encoding: "utf8" },
    );
    expect(pub.status, pub.stderr).toBe(0);
  });

  it("publishing to another device's topic: exit 25 (PUBACK Not authorized), the credentials stay", async () => {
    const out = join(await tempDir(), "certs");
    expect((await enrollCli(lab.url, lab, "deva", out, ["--profile", "dojot-mosca"])).code).toBe(0);
    const run = await verify("deva", out, "--topic", "/admin/dev-b/attrs", "--mqtt-version", "5");
    expect(run.stderr).toMatch(
      /verify failed: the broker did not accept the publish to '\/admin\/dev-b\/attrs': Not authorized \(0x87\)/,
    );
    expect(run.code).toBe(25);
  });

  it("the same publish over MQTT 3.1.1, which mosquitto acknowledges and drops: exit 25, caught by our own subscription", async () => {
    const out = join(await tempDir(), "certs");
    expect((await enrollCli(lab.url, lab, "devc", out, ["--profile", "dojot-mosca"])).code).toBe(0);
    const run = await verify("devc", out, "--topic", "/admin/dev-d/attrs", "--broker-timeout", "1s");
    expect(run.stderr).toContain("verify connack: accepted as client 'admin:devc' (MQTT 3.1.1)");
    expect(run.stderr).toMatch(
      /verify failed: the broker acknowledged our publish to '\/admin\/dev-d\/attrs' but did not deliver it to our own subscription to that topic within 1 s/,
    );
    expect(run.stderr).not.toMatch(/published/);
    expect(run.code).toBe(25);
  });

  it("a certificate from another CA: exit 22 (the broker does not trust our CA)", async () => {
    const out = join(await tempDir(), "certs");
    expect((await enrollCli(other.url, other, "stranger", out)).code).toBe(0);
    // The broker's certificate comes from the first lab: trust it, so that only our certificate is in question.
    await writeFile(join(out, "IOTmidCA.crt"), await readFile(join(lab.dir, "ca.crt"), "utf8"));
    const run = await verify("stranger", out);
    expect(run.stderr).toMatch(/verify failed: the broker refused our certificate: it does not trust our CA/);
    expect(run.code).toBe(22);
  });

  it("an expired certificate: exit 22 (expired)", async () => {
    const out = await credentialsFromLabCa(lab.dir, "expired-dev", {
      notBefore: new Date(Date.now() - 400 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    });
    const run = await verify("expired-dev", out);
    expect(run.stderr).toMatch(/verify failed: the broker refused our certificate: our certificate has expired/);
    expect(run.code).toBe(22);
  });

  it("a revoked certificate: exit 22 (revoked), against a broker given the CA's CRL", async () => {
    const out = await credentialsFromLabCa(lab.dir, "revoked-dev", {});
    const serial = new x509.X509Certificate(await readFile(join(out, "revoked-dev.crt"), "utf8")).serialNumber;
    const ca = await loadOrCreateCa(lab.dir, crypto);
    const crl = await x509.X509CrlGenerator.create(
      {
        issuer: ca.cert.subjectName,
        thisUpdate: new Date(Date.now() - 60_000),
        nextUpdate: new Date(Date.now() + 86_400_000),
        entries: [
          {
            serialNumber: serial,
            revocationDate: new Date(Date.now() - 30_000),
            reason: x509.X509CrlReason.keyCompromise,
          },
        ],
        signingKey: ca.key,
        signingAlgorithm: RSA_SHA256,
      },
      crypto,
    );
    const strict = await startBroker(lab.dir, { crlPem: toPem(crl.rawData, "X509 CRL") });
    try {
      const run = await runCli([
        "verify",
        "--broker",
        strict.url,
        "--device-id",
        "revoked-dev",
        "--out",
        out,
        "--broker-timeout",
        "5s",
      ]);
      expect(run.stderr).toMatch(/verify failed: the broker refused our certificate: our certificate is revoked/);
      expect(run.code).toBe(22);
    } finally {
      await strict.stop();
    }
  });

  it("a certificate without an identity (no CN): exit 24 (CONNACK refused)", async () => {
    const out = await credentialsFromLabCa(lab.dir, "nocn", {}, [{ O: ["No CN"] }]);
    const run = await verify("nocn", out);
    expect(run.stderr).toMatch(
      /verify failed: the broker did not accept the connection of client 'nocn': Bad User Name or Password \(0x86\)/,
    );
    expect(run.code).toBe(24);
  });

  it("verify with no stored credentials contacts no broker and says so (exit 16, not 23)", async () => {
    const port = await closedPort();
    const run = await runCli([
      "verify",
      "--broker",
      `mqtts://127.0.0.1:${port}`,
      "--device-id",
      "never-enrolled",
      "--out",
      join(await tempDir(), "none"),
    ]);
    expect(run.stderr).toMatch(/verify failed: no complete credentials for 'never-enrolled'/);
    expect(run.stderr).toMatch(/hint: enroll first; no broker was contacted/);
    expect(run.code).toBe(16);
  });

  it("no certificate at all: exit 23 (certificate required)", async () => {
    const ca = await readFile(join(lab.dir, "ca.crt"), "utf8");
    await expect(
      checkBroker({ broker: new URL(broker.url), caPem: ca, clientId: "anon", timeoutMs: 5000 }, () => {}),
    ).rejects.toMatchObject({
      reason: "broker-cert-required",
      message: expect.stringMatching(/requires a client certificate/),
    });
  });

  it("a broker certificate that does not name the host: exit 21; an unreachable broker: exit 20", async () => {
    const out = join(await tempDir(), "certs");
    expect((await enrollCli(lab.url, lab, "sni", out)).code).toBe(0);
    const wrongName = await verify("sni", out, "--servername", "other.example");
    expect(wrongName.stderr).toMatch(/verify failed: the broker's certificate is not trusted: .*other\.example/);
    expect(wrongName.code).toBe(21);
    const port = await closedPort();
    const gone = await runCli(["verify", "--broker", `mqtts://127.0.0.1:${port}`, "--device-id", "sni", "--out", out]);
    expect(gone.stderr).toMatch(/verify failed: the broker at 127\.0\.0\.1:\d+ could not be reached: .*ECONNREFUSED/);
    expect(gone.code).toBe(20);
  });

  it("a broker check that fails after enrollment keeps the valid credentials and says so", async () => {
    const out = join(await tempDir(), "certs");
    const run = await enrollCli(lab.url, lab, "keeps", out, [
      "--profile",
      "dojot-mosca",
      "--verify-broker",
      broker.url,
      "--topic",
      "/admin/not-mine/attrs",
      "--mqtt-version",
      "5",
    ]);
    expect(run.code).toBe(25);
    expect(run.stderr).toMatch(/\(the new credentials are stored and valid; only the broker check failed\)/);
    expect(openssl("verify", "-CAfile", join(out, "IOTmidCA.crt"), join(out, "keeps.crt"))).toMatch(/: OK/);
  });

  describe("identity profiles", () => {
    it("dojot-vernemq against x509-identity-mgmt v0.5: CN <tenant>:<device>, topic <tenant>:<device>/attrs, recorded and used by verify", async () => {
      const x509Lab = await startLab({
        dir: lab.dir,
        host: "127.0.0.1",
        port: 0,
        crypto,
        certProfile: "open",
        autoRegister: true,
        adminPassword: lab.password,
        tokenLifetime: 420,
        api: "x509",
        x509Rules: "v0.5",
      });
      // dojot v0.5's broker has its certificate from the X509 Identity CA and trusts that CA for devices.
      const vernemq = await startBroker(lab.dir, { api: "x509" });
      try {
        const out = join(await tempDir(), "certs");
        const run = await enrollCli(x509Lab.url, lab, "a1998e", out, ["--profile", "dojot-vernemq"]);
        expect(run.code, run.stderr).toBe(0);
        expect(openssl("x509", "-in", join(out, "a1998e.crt"), "-noout", "-subject").trim()).toBe(
          "subject=O = dojot IoT Platform, CN = admin:a1998e",
        );
        expect(JSON.parse(await readFile(join(out, "a1998e.profile.json"), "utf8"))).toMatchObject({
          profile: "dojot-vernemq",
          tenant: "admin",
        });
        const ok = await runCli([
          "verify",
          "--broker",
          vernemq.url,
          "--device-id",
          "a1998e",
          "--out",
          out,
          "--broker-timeout",
          "5s",
        ]);
        expect(ok.code, ok.stderr).toBe(0);
        expect(ok.stderr).toContain("verify puback: published to 'admin:a1998e/attrs'");
      } finally {
        await Promise.all([x509Lab.close(), vernemq.stop()]);
      }
    });

    it("amqtt: the first URI SAN is spiffe://<domain>/device/<id>, DNS <id>.local; the client id is the device id", async () => {
      const out = join(await tempDir(), "certs");
      const run = await enrollCli(lab.url, lab, "myUniqueDeviceId", out, [
        "--key-type",
        "ec-p256",
        "--profile",
        "amqtt",
        "--uri-domain",
        "my.domain.name",
      ]);
      expect(run.code, run.stderr).toBe(0);
      const san = openssl("x509", "-in", join(out, "myUniqueDeviceId.crt"), "-noout", "-ext", "subjectAltName");
      expect(san).toMatch(/DNS:myUniqueDeviceId\.local, URI:spiffe:\/\/my\.domain\.name\/device\/myUniqueDeviceId/);
      const ok = await verify("myUniqueDeviceId", out);
      expect(ok.code, ok.stderr).toBe(0);
      expect(ok.stderr).toContain("verify connack: accepted as client 'myUniqueDeviceId'");
      const missing = await enrollCli(lab.url, lab, "nodomain", join(await tempDir(), "c"), ["--profile", "amqtt"]);
      expect([missing.code, missing.stderr]).toEqual([
        2,
        expect.stringMatching(/the amqtt profile needs the broker's uri_domain\n {2}hint: pass --uri-domain DOMAIN/),
      ]);
    });

    it("airvantage: CN is a valid IMEI, TLS 1.2 with AirVantage's cipher suites, SNI set; a bad check digit is refused", async () => {
      const imei = "490154203237518";
      const out = join(await tempDir(), "certs");
      const run = await enrollCli(lab.url, lab, imei, out, [
        "--profile",
        "airvantage",
        "--verify-broker",
        broker.url,
        "--servername",
        "localhost",
      ]);
      expect(run.code, run.stderr).toBe(0);
      expect(openssl("x509", "-in", join(out, `${imei}.crt`), "-noout", "-subject").trim()).toBe(
        `subject=CN = ${imei}`,
      );
      expect(run.stderr).toMatch(/verify tls: TLSv1\.2 ECDHE-(RSA|ECDSA)-AES(128|256)-GCM-SHA(256|384)/);
      expect(run.stderr).toContain(`verify puback: published to '${imei}/messages/json'`);
      const bad = await enrollCli(lab.url, lab, "490154203237519", join(await tempDir(), "c"), [
        "--profile",
        "airvantage",
      ]);
      expect([bad.code, bad.stderr]).toEqual([
        2,
        expect.stringMatching(
          /is not an AirVantage communication id: an IMEI \(15 digits with a valid Luhn check digit\)/,
        ),
      ]);
    });
  });
});

/** Key, certificate and CA files for `id`, the certificate signed directly with the lab CA's key. */
async function credentialsFromLabCa(
  labDir: string,
  id: string,
  validity: { notBefore?: Date; notAfter?: Date },
  subject: x509.JsonName = [{ CN: [id] }],
): Promise<string> {
  const ca = await loadOrCreateCa(labDir, crypto);
  const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create(
    {
      subject,
      issuer: ca.cert.subjectName,
      publicKey: keys.publicKey,
      signingKey: ca.key,
      signingAlgorithm: RSA_SHA256,
      notBefore: validity.notBefore ?? new Date(Date.now() - 60_000),
      notAfter: validity.notAfter ?? new Date(Date.now() + 86_400_000),
    },
    crypto,
  );
  const out = join(await tempDir(), "certs");
  await mkdir(out, { mode: 0o700 });
  await writeFile(join(out, `${id}.key`), await privateKeyPem(keys.privateKey, crypto), { mode: 0o600 });
  await writeFile(join(out, `${id}.crt`), toPem(cert.rawData, "CERTIFICATE"));
  await writeFile(join(out, "IOTmidCA.crt"), toPem(ca.cert.rawData, "CERTIFICATE"));
  return out;
}
