import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueServerCertificate } from "../../lab/src/ca.js";
import { readEstIssued } from "../../lab/src/server.js";
import { softwareCrypto } from "../../src/keys/provider.js";
import * as x509 from "../../src/keys/x509.js";
import { runCli } from "../helpers/cli.js";
import { listFiles, modeOf } from "../helpers/enroll.js";
import { certPath, chainPath, DEVICE, device, type EstLab, enrollEst, estLab, pemBlocks } from "../helpers/est-lab.js";
import { issueLeaf, makeCa } from "../helpers/pki.js";
import { openssl } from "../helpers/tools.js";

/**
 * cert-retriever as an EST client (RFC 7030) against the lab's EST server, over real TLS on
 * 127.0.0.1: bootstrap by password or by a factory certificate, re-enrollment by the current
 * certificate, CSR attributes, manual approval (202), and every refusal with its exit code and
 * nothing written.
 */

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
