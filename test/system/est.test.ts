import { spawnSync } from "node:child_process";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueServerCertificate } from "../../lab/src/ca.js";
import type { LabFault } from "../../lab/src/faults.js";
import { type EstLabOptions, type RunningLab, readEstIssued, startLab } from "../../lab/src/server.js";
import { sha256Fingerprint } from "../../src/flows/certificate.js";
import { softwareCrypto } from "../../src/keys/provider.js";
import * as x509 from "../../src/keys/x509.js";
import { type CliRun, runCli, SECRETS } from "../helpers/cli.js";
import { listFiles, modeOf, snapshot } from "../helpers/enroll.js";
import { labDir, tempDir } from "../helpers/lab.js";
import { startBroker } from "../helpers/mosquitto.js";
import { issueLeaf, makeCa } from "../helpers/pki.js";
import { haveTool, openssl } from "../helpers/tools.js";

/**
 * cert-retriever as an EST client (RFC 7030) against the lab's EST server, over real TLS on
 * 127.0.0.1: bootstrap by password or by a factory certificate, re-enrollment by the current
 * certificate, CSR attributes, manual approval (202), and every refusal with its exit code and
 * nothing written.
 */

const DEVICE = "est-device-1";

interface EstLab extends RunningLab {
  dir: string;
  password: string;
  estUrl: string;
  /** The EST root's PEM (for --platform-ca) and its pin. */
  rootPem: string;
  pin: string;
  stop(): Promise<void>;
}

async function estLab(est: EstLabOptions = {}, faults: LabFault[] = []): Promise<EstLab> {
  const dir = await labDir("cr-est-lab-");
  const password = `est-${Math.random().toString(36).slice(2)}-secret`;
  SECRETS.add(password);
  const lab = await startLab({
    dir,
    host: "127.0.0.1",
    port: 0,
    crypto: softwareCrypto(),
    certProfile: "open",
    autoRegister: false,
    adminPassword: password,
    tokenLifetime: 420,
    api: "est",
    est,
    faults,
  });
  const root = lab.estCa!.root.cert;
  const rootPem = root.toString("pem");
  return {
    ...lab,
    dir,
    password,
    estUrl: lab.estUrl!,
    rootPem,
    pin: `sha256:${sha256Fingerprint(root)}`,
    stop: async () => {
      await lab.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A device's directory and the password file beside it. */
async function device(lab: EstLab): Promise<{ out: string; pw: string }> {
  const base = await tempDir("cr-est-");
  const pw = join(base, "password");
  await writeFile(pw, lab.password, { mode: 0o600 });
  return { out: join(base, "certs"), pw };
}

/** `cert-retriever enroll --api est` for DEVICE into `out`, plus `args`. */
function enrollEst(lab: EstLab, out: string, args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  return runCli(
    [
      "enroll",
      "--api",
      "est",
      "--platform",
      lab.estUrl,
      "--device-id",
      DEVICE,
      "--out",
      out,
      "--non-interactive",
      ...args,
    ],
    { env, timeoutMs: 30_000 },
  );
}

const certPath = (out: string) => join(out, `${DEVICE}.crt`);
const chainPath = (out: string) => join(out, "IOTmidCA.crt");

/** The PEM blocks of a file. */
async function pemBlocks(path: string): Promise<string[]> {
  return (await readFile(path, "utf8")).match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n/g) ?? [];
}

describe("EST bootstrap: the first enrollment", () => {
  let lab: EstLab;
  beforeAll(async () => {
    lab = await estLab();
  });
  afterAll(async () => lab?.stop());

  it("with a password and the CA pinned: /cacerts fetched provisionally, then the server verified by that chain; the chain stored in order, openssl verifies it", async () => {
    const { out, pw } = await device(lab);
    const run = await enrollEst(lab, out, [
      "--username",
      "admin",
      "--password-file",
      pw,
      "--ca-fingerprint",
      lab.pin,
      "--json",
    ]);
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout);
    expect(result.status).toBe("enrolled");
    expect(result.issuer).toContain("Lab EST Issuing CA");
    expect((await readEstIssued(lab.dir)).find((r) => r.serial === result.serialNumber)?.auth).toBe("basic:admin");
    expect(run.stderr).toMatch(/under .*Lab EST Root CA.*matches the pin/);
    // <ca-name>.crt: the issuing CA, then the root.
    const chain = await pemBlocks(chainPath(out));
    expect(chain).toHaveLength(2);
    expect(new x509.X509Certificate(chain[0]!).subject).toContain("Lab EST Issuing CA");
    expect(new x509.X509Certificate(chain[1]!).subject).toContain("Lab EST Root CA");
    const rootFile = join(out, "..", "root.pem");
    await writeFile(rootFile, chain[1]!);
    expect(openssl("verify", "-CAfile", rootFile, "-untrusted", chainPath(out), certPath(out))).toContain(": OK");
    expect(openssl("x509", "-in", certPath(out), "-noout", "-subject")).toContain(`CN = ${DEVICE}`);
    expect(await modeOf(join(out, `${DEVICE}.key`))).toBe(0o600);
    expect(await modeOf(out)).toBe(0o700);
    // The key matches the certificate.
    const pub = (args: string[]) => openssl(...args, "-pubkey", "-noout");
    expect(openssl("pkey", "-in", join(out, `${DEVICE}.key`), "-pubout")).toBe(pub(["x509", "-in", certPath(out)]));
  });

  it("with --platform-ca (the root) instead of a pin", async () => {
    const { out, pw } = await device(lab);
    const ca = join(out, "..", "est-root.pem");
    await writeFile(ca, lab.rootPem);
    const run = await enrollEst(lab, out, ["--username", "admin", "--password-file", pw, "--platform-ca", ca]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain("(the platform's CA certificates vouched for the server)");
  });

  it("without a pin or --platform-ca: refused before any request (no trust on first use), exit 2", async () => {
    const { out, pw } = await device(lab);
    const run = await enrollEst(lab, out, ["--username", "admin", "--password-file", pw]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/explicit trust anchor \(RFC 7030 §4\.1\.1\)/);
    expect(await listFiles(out)).toEqual([]);
  });

  it("a pin the chain does not contain: exit 11 before any key is made, nothing written", async () => {
    const { out, pw } = await device(lab);
    const run = await enrollEst(lab, out, [
      "--username",
      "admin",
      "--password-file",
      pw,
      "--ca-fingerprint",
      `sha256:${"AB".repeat(32)}`,
      "--json",
    ]);
    expect(run.code).toBe(11);
    expect(JSON.parse(run.stdout).error).toMatchObject({ step: "fetch-ca", reason: "pin-mismatch" });
    expect(await listFiles(out)).toEqual([]);
  });

  it("a wrong password: 401, exit 10, nothing written", async () => {
    const { out } = await device(lab);
    const bad = join(out, "..", "bad");
    await writeFile(bad, "not-the-password", { mode: 0o600 });
    const run = await enrollEst(lab, out, [
      "--username",
      "admin",
      "--password-file",
      bad,
      "--ca-fingerprint",
      lab.pin,
      "--json",
    ]);
    expect(run.code).toBe(10);
    expect(JSON.parse(run.stdout).error).toMatchObject({ step: "submit-csr", reason: "auth-refused" });
    expect(run.stderr).toContain("HTTP 401");
    expect(await listFiles(out)).toEqual([]);
  });

  it("plain http and a path that is not /.well-known/est: refused as usage (exit 2)", async () => {
    const { out } = await device(lab);
    const http = await runCli([
      "enroll",
      "--api",
      "est",
      "--platform",
      lab.estUrl.replace("https:", "http:"),
      "--device-id",
      DEVICE,
      "--out",
      out,
      "--ca-fingerprint",
      lab.pin,
      "--non-interactive",
    ]);
    expect(http.code).toBe(2);
    expect(http.stderr).toContain("EST runs over TLS only");
    const path = await runCli([
      "enroll",
      "--api",
      "est",
      "--platform",
      new URL("/est", lab.estUrl).href,
      "--device-id",
      DEVICE,
      "--out",
      out,
      "--ca-fingerprint",
      lab.pin,
      "--non-interactive",
    ]);
    expect(path.code).toBe(2);
    expect(path.stderr).toContain("/.well-known/est");
  });
});

describe("EST bootstrap by a factory certificate (TLS client authentication)", () => {
  let lab: EstLab;
  let factory: Awaited<ReturnType<typeof makeCa>>;
  beforeAll(async () => {
    factory = await makeCa("Factory Bootstrap CA");
    lab = await estLab({ bootstrapCas: [factory.cert.toString("pem")] });
  });
  afterAll(async () => lab?.stop());

  it("a certificate from the factory CA enrolls without any password", async () => {
    const { out } = await device(lab);
    const boot = await issueLeaf(factory, DEVICE, [], "client");
    await writeFile(join(out, "..", "boot.crt"), boot.cert);
    await writeFile(join(out, "..", "boot.key"), boot.key, { mode: 0o600 });
    const run = await enrollEst(lab, out, [
      "--client-cert",
      join(out, "..", "boot.crt"),
      "--client-key",
      join(out, "..", "boot.key"),
      "--ca-fingerprint",
      lab.pin,
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain("the client certificate");
    const issued = new x509.X509Certificate(await readFile(certPath(out), "utf8"));
    expect((await readEstIssued(lab.dir)).find((r) => r.serial === issued.serialNumber)?.auth).toBe(
      `client-cert:${new x509.X509Certificate(boot.cert).serialNumber}`,
    );
  });

  it("a certificate of the EST CA that may not authenticate a client (a broker's, serverAuth only): 401, exit 10", async () => {
    const { out } = await device(lab);
    const broker = await issueServerCertificate(
      lab.estCa!.issuing,
      [{ type: "dns", value: "broker.example" }],
      softwareCrypto(),
    );
    await writeFile(join(out, "..", "broker.crt"), broker.cert);
    await writeFile(join(out, "..", "broker.key"), broker.key, { mode: 0o600 });
    const run = await enrollEst(lab, out, [
      "--client-cert",
      join(out, "..", "broker.crt"),
      "--client-key",
      join(out, "..", "broker.key"),
      "--ca-fingerprint",
      lab.pin,
    ]);
    expect(run.code).toBe(10);
    expect(run.stderr).toContain("extendedKeyUsage lacks clientAuth");
    expect(await listFiles(out)).toEqual([]);
  });

  it("a certificate from a CA the server does not know: 401, exit 10, nothing written", async () => {
    const { out } = await device(lab);
    const stranger = await makeCa("Stranger CA");
    const boot = await issueLeaf(stranger, DEVICE, [], "client");
    await writeFile(join(out, "..", "boot.crt"), boot.cert);
    await writeFile(join(out, "..", "boot.key"), boot.key, { mode: 0o600 });
    const run = await enrollEst(lab, out, [
      "--client-cert",
      join(out, "..", "boot.crt"),
      "--client-key",
      join(out, "..", "boot.key"),
      "--ca-fingerprint",
      lab.pin,
      "--json",
    ]);
    expect(run.code).toBe(10);
    expect(JSON.parse(run.stdout).error).toMatchObject({ step: "submit-csr", reason: "client-cert-required" });
    expect(JSON.parse(run.stdout).error.hint).toContain("did not take the client certificate");
    expect(await listFiles(out)).toEqual([]);
  });
});

describe("EST renewal: re-enrollment authenticated by the current certificate", () => {
  let lab: EstLab;
  beforeAll(async () => {
    lab = await estLab();
  });
  afterAll(async () => lab?.stop());

  it("inside the renewal window, with no password anywhere: /simplereenroll over mutual TLS, a new key, the stored chain as the trust anchor; check agrees before and after", async () => {
    const { out, pw } = await device(lab);
    expect(
      (await enrollEst(lab, out, ["--username", "admin", "--password-file", pw, "--ca-fingerprint", lab.pin])).code,
    ).toBe(0);
    const firstCert = await readFile(certPath(out), "utf8");
    const firstKey = await readFile(join(out, `${DEVICE}.key`), "utf8");
    const check = (window: string) =>
      runCli([
        "check",
        "--api",
        "est",
        "--platform",
        lab.estUrl,
        "--device-id",
        DEVICE,
        "--out",
        out,
        "--renew-before",
        window,
        "--json",
      ]);
    const due = await check("400d");
    expect(due.code, due.stderr).toBe(0);
    // No user, no password, no pin: the stored chain vouches for the server, the certificate for the device.
    const run = await enrollEst(lab, out, ["--renew-before", "400d", "--json"]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain("(the stored CA chain vouched for the server)");
    const result = JSON.parse(run.stdout);
    expect(result.previous).toMatchObject({
      serialNumber: new x509.X509Certificate(firstCert).serialNumber,
      revoked: "kept",
    });
    expect(result.previous.why).toContain("EST (RFC 7030) has no revocation");
    expect(await readFile(join(out, `${DEVICE}.key`), "utf8")).not.toBe(firstKey);
    const renewed = new x509.X509Certificate(await readFile(certPath(out), "utf8"));
    expect(renewed.subject).toBe(new x509.X509Certificate(firstCert).subject);
    // The server saw the current certificate, not a password.
    const issued = await readEstIssued(lab.dir);
    expect(issued.find((r) => r.serial === renewed.serialNumber)?.auth).toBe(
      `reenroll:${new x509.X509Certificate(firstCert).serialNumber}`,
    );
    const after = await check("30d");
    expect(after.code, after.stderr).toBe(1);
    expect(JSON.parse(after.stdout)).toMatchObject({ needed: false });
    expect(after.stderr).toContain("EST (RFC 7030) serves no CRL");
  });

  it("credentials the stored CA did not issue cannot authenticate a renewal: the bootstrap path (/simpleenroll, HTTP Basic) replaces them", async () => {
    const { out, pw } = await device(lab);
    expect(
      (await enrollEst(lab, out, ["--username", "admin", "--password-file", pw, "--ca-fingerprint", lab.pin])).code,
    ).toBe(0);
    // Same issuer name, another key: the stored chain does not verify it, so it is replaced, not renewed.
    const other = await makeCa("Lab EST Issuing CA, O=cert-retriever lab");
    const leaf = await issueLeaf(other, DEVICE, [], "client");
    await writeFile(certPath(out), leaf.cert);
    await writeFile(join(out, `${DEVICE}.key`), leaf.key, { mode: 0o600 });
    const run = await enrollEst(lab, out, ["--username", "admin", "--password-file", pw, "--json"]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain("existing credentials will be replaced");
    const now = new x509.X509Certificate(await readFile(certPath(out), "utf8"));
    expect((await readEstIssued(lab.dir)).find((r) => r.serial === now.serialNumber)?.auth).toBe("basic:admin");
  });

  it("without the password, such credentials are refused at the server (exit 10) and the files stay as they were", async () => {
    const { out, pw } = await device(lab);
    expect(
      (await enrollEst(lab, out, ["--username", "admin", "--password-file", pw, "--ca-fingerprint", lab.pin])).code,
    ).toBe(0);
    const other = await makeCa("Stranger CA");
    const leaf = await issueLeaf(other, DEVICE, [], "client");
    await writeFile(certPath(out), leaf.cert);
    await writeFile(join(out, `${DEVICE}.key`), leaf.key, { mode: 0o600 });
    const before = await snapshot(out);
    const bad = join(out, "..", "bad");
    await writeFile(bad, "wrong", { mode: 0o600 });
    const run = await enrollEst(lab, out, ["--username", "admin", "--password-file", bad, "--json"]);
    expect(run.code).toBe(10);
    expect(await snapshot(out)).toEqual(before);
  });
});

describe("EST server behaviour the client honours", () => {
  it("csrattrs asking for P-384: the key is P-384, and what cannot be honoured is a note", async () => {
    const lab = await estLab({ csrAttrs: "ec-p384" });
    try {
      const { out, pw } = await device(lab);
      const run = await enrollEst(lab, out, [
        "--username",
        "admin",
        "--password-file",
        pw,
        "--ca-fingerprint",
        lab.pin,
      ]);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toContain("as the platform's CSR attributes ask");
      expect(run.stderr).toMatch(/asks for the extension 1\.3\.6\.1\.1\.1\.1\.22/);
      expect(openssl("x509", "-in", certPath(out), "-noout", "-text")).toContain("NIST CURVE: P-384");
    } finally {
      await lab.stop();
    }
  });

  it("csrattrs asking for RSA 3072 in RFC 9908's form (the size as the attribute's value): the key is RSA 3072", async () => {
    const lab = await estLab({ csrAttrs: "rsa-3072" });
    try {
      const { out, pw } = await device(lab);
      const run = await enrollEst(lab, out, [
        "--username",
        "admin",
        "--password-file",
        pw,
        "--ca-fingerprint",
        lab.pin,
      ]);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toContain("rsa-3072 key");
      expect(openssl("x509", "-in", certPath(out), "-noout", "-text")).toContain("Public-Key: (3072 bit)");
    } finally {
      await lab.stop();
    }
  });

  it("a certificate the server spoils after a 202 is caught when it comes: exit 14, nothing written", async () => {
    const lab = await estLab({ pending: 1, retryAfter: 1 }, [{ route: "est-enroll", kind: "expired", times: 1 }]);
    try {
      const { out, pw } = await device(lab);
      const run = await enrollEst(lab, out, [
        "--username",
        "admin",
        "--password-file",
        pw,
        "--ca-fingerprint",
        lab.pin,
        "--json",
      ]);
      expect(run.code, run.stderr).toBe(14);
      expect(JSON.parse(run.stdout).error).toMatchObject({ step: "validate", reason: "cert-out-of-date" });
      expect(await listFiles(out)).toEqual([]);
    } finally {
      await lab.stop();
    }
  });

  it("202 Accepted with Retry-After: the same request again after the wait, then stored", async () => {
    const lab = await estLab({ pending: 1, retryAfter: 1 });
    try {
      const { out, pw } = await device(lab);
      const run = await enrollEst(lab, out, [
        "--username",
        "admin",
        "--password-file",
        pw,
        "--ca-fingerprint",
        lab.pin,
      ]);
      expect(run.code, run.stderr).toBe(0);
      expect(await pemBlocks(certPath(out))).toHaveLength(1);
    } finally {
      await lab.stop();
    }
  });

  it("202 for ever: the deadline ends the wait, exit 75, nothing written", async () => {
    const lab = await estLab({ pending: "forever", retryAfter: 1 });
    try {
      const { out, pw } = await device(lab);
      const run = await enrollEst(lab, out, [
        "--username",
        "admin",
        "--password-file",
        pw,
        "--ca-fingerprint",
        lab.pin,
        "--deadline",
        "3s",
        "--json",
      ]);
      expect(run.code).toBe(75);
      expect(JSON.parse(run.stdout).error).toMatchObject({ step: "submit-csr", reason: "deadline" });
      expect(run.stderr).toContain("not yet approved");
      expect(JSON.parse(run.stdout).error.hint).toContain("holds the request for approval");
      expect(await listFiles(out)).toEqual([]);
    } finally {
      await lab.stop();
    }
  });
});

describe("EST replies in the forms RFC 8951 allows", () => {
  it("base64 in 64-column CRLF lines (cacerts and the issued certificate): read as well", async () => {
    const lab = await estLab({}, [
      { route: "est-cacerts", kind: "wrapped-base64" },
      { route: "est-enroll", kind: "wrapped-base64" },
    ]);
    try {
      const { out, pw } = await device(lab);
      const run = await enrollEst(lab, out, [
        "--username",
        "admin",
        "--password-file",
        pw,
        "--ca-fingerprint",
        lab.pin,
      ]);
      expect(run.code, run.stderr).toBe(0);
      expect(await pemBlocks(chainPath(out))).toHaveLength(2);
    } finally {
      await lab.stop();
    }
  });
});

describe("EST replies that must not be trusted", () => {
  const cases: { name: string; faults: LabFault[]; code: number; step: string; reason: string }[] = [
    {
      name: "/cacerts not a PKCS#7",
      faults: [{ route: "est-cacerts", kind: "malformed-pkcs7" }],
      code: 11,
      step: "fetch-ca",
      reason: "reply-malformed",
    },
    {
      name: "/cacerts from another CA of the same names (the chain does not lead to the pinned root)",
      faults: [{ route: "est-cacerts", kind: "wrong-ca" }],
      code: 11,
      step: "fetch-ca",
      reason: "pin-mismatch",
    },
    {
      name: "the issued certificate not a PKCS#7",
      faults: [{ route: "est-enroll", kind: "malformed-pkcs7" }],
      code: 13,
      step: "submit-csr",
      reason: "reply-malformed",
    },
    {
      name: "a certificate issued by another CA of the same names",
      faults: [{ route: "est-enroll", kind: "wrong-ca" }],
      code: 14,
      step: "validate",
      reason: "cert-invalid",
    },
    {
      name: "/cacerts 200 with bytes that are not base64",
      faults: [{ route: "est-cacerts", kind: "garbage" }],
      code: 11,
      step: "fetch-ca",
      reason: "reply-malformed",
    },
    {
      name: "the server fails the enrollment (HTTP 500, plain text)",
      faults: [{ route: "est-enroll", kind: "500" }],
      code: 13,
      step: "submit-csr",
      reason: "platform-error",
    },
    {
      name: "the enrollment's reply cut off (the server may have issued)",
      faults: [{ route: "est-enroll", kind: "truncated" }],
      code: 75,
      step: "submit-csr",
      reason: "maybe-sent",
    },
  ];
  for (const c of cases) {
    it(`${c.name}: exit ${c.code}, nothing written`, async () => {
      const lab = await estLab({}, c.faults);
      try {
        const { out, pw } = await device(lab);
        const run = await enrollEst(lab, out, [
          "--username",
          "admin",
          "--password-file",
          pw,
          "--ca-fingerprint",
          lab.pin,
          "--json",
        ]);
        expect(run.code, run.stderr).toBe(c.code);
        expect(JSON.parse(run.stdout).error).toMatchObject({ step: c.step, reason: c.reason });
        expect(await listFiles(out)).toEqual([]);
      } finally {
        await lab.stop();
      }
    });
  }
});

describe.skipIf(!(haveTool("mosquitto") && haveTool("mosquitto_pub")))(
  "an EST identity at a broker (mosquitto, mutual TLS, the EST chain as its cafile)",
  () => {
    it("enroll --verify-broker passes, and mosquitto_pub takes the files as they are (the CA file holds the chain)", async () => {
      const lab = await estLab();
      const broker = await startBroker(lab.dir, { api: "est" });
      try {
        const { out, pw } = await device(lab);
        const topic = `${DEVICE}/attrs`;
        const run = await enrollEst(lab, out, [
          "--username",
          "admin",
          "--password-file",
          pw,
          "--ca-fingerprint",
          lab.pin,
          "--verify-broker",
          broker.url,
          "--topic",
          topic,
          "--broker-timeout",
          "5s",
        ]);
        expect(run.code, run.stderr).toBe(0);
        expect(run.stderr).toContain(`verify connack: accepted as client`);
        expect(run.stderr).toContain(`verify puback: published to '${topic}' with QoS 1`);
        const pub = spawnSync(
          "mosquitto_pub",
          [
            "-h",
            "localhost",
            "-p",
            String(broker.port),
            "-t",
            topic,
            "-m",
            "{}",
            "-q",
            "1",
            "--cafile",
            chainPath(out),
            "--cert",
            certPath(out),
            "--key",
            join(out, `${DEVICE}.key`),
          ],
          { encoding: "utf8", timeout: 10_000 },
        );
        expect(pub.status, pub.stderr).toBe(0);
        const verified = await runCli([
          "verify",
          "--broker",
          broker.url,
          "--device-id",
          DEVICE,
          "--out",
          out,
          "--topic",
          topic,
          "--broker-timeout",
          "5s",
        ]);
        expect(verified.code, verified.stderr).toBe(0);
      } finally {
        await broker.stop();
        await lab.stop();
      }
    });
  },
);
