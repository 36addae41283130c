import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { softwareCrypto } from "cert-retriever";
import { afterEach, describe, expect, it, vi } from "vitest";
import { SECRETS } from "../../test/helpers/cli.js";
import { callLab, type LabWithJwt, startLabWithJwt, tempDir } from "../../test/helpers/lab.js";
import { loadOrCreateCa, RSA_SHA256 } from "../src/ca.js";
import * as x509 from "../src/x509.js";

const crypto = softwareCrypto();
const password = "ca-files-lab-password";
SECRETS.add(password);

describe("the lab's CA, made by whichever of several processes comes first", () => {
  it("three runs that find no CA at once (lab serve, lab server-cert): one CA is made, and all three use it", async () => {
    const dir = await tempDir("cr-ca-race-");
    // What `lab serve` and a `lab server-cert` started just after it do on a fresh directory: each
    // finds no CA, makes one and writes it; all but the first used to fail with EEXIST.
    const cas = await Promise.all([1, 2, 3].map(() => loadOrCreateCa(dir, crypto)));
    const onDisk = new x509.X509Certificate(await readFile(join(dir, "ca.crt"), "utf8"));
    for (const ca of cas) expect(ca.cert.equal(onDisk)).toBe(true);
    // The key on disk is the one whose certificate is on disk, and no temporary file is left.
    const again = await loadOrCreateCa(dir, crypto);
    const data = new TextEncoder().encode("probe");
    const signature = await crypto.subtle.sign(RSA_SHA256, again.key, data);
    expect(await crypto.subtle.verify(RSA_SHA256, await onDisk.publicKey.export(crypto), signature, data)).toBe(true);
    expect((await readdir(dir)).sort()).toEqual(["ca.crt", "ca.key"]);
  });
});

describe("x509-identity-mgmt's times kept to the minute, with a lifetime shorter than one (--cert-lifetime 30s)", () => {
  let lab: LabWithJwt | undefined;
  afterEach(async () => {
    vi.useRealTimers();
    await lab?.close();
  });

  it("a certificate issued 10 s into a minute is valid when it is issued, and for at least the lifetime after", async () => {
    lab = await startLabWithJwt(password, { certLifetime: 30_000 });
    const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
      "sign",
      "verify",
    ])) as CryptoKeyPair;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create(
      { name: "CN=brief", keys, signingAlgorithm: { name: "ECDSA", hash: "SHA-256" } },
      crypto,
    );
    // 10 s into this minute: 30 s later, cut to the minute, is this minute's start, before the issue.
    const issuedAt = Math.floor(Date.now() / 60_000) * 60_000 + 10_000;
    vi.useFakeTimers({ toFake: ["Date"], now: issuedAt });
    const reply = await callLab(lab, "POST", "/x509/v1/certificates", { csr: csr.toString("pem").trimEnd() });
    expect(reply.status, JSON.stringify(reply.json)).toBe(201);
    const cert = new x509.X509Certificate((reply.json as { certificatePem: string }).certificatePem);
    expect(cert.notBefore.getTime()).toBeLessThanOrEqual(issuedAt);
    expect(cert.notAfter.getTime()).toBeGreaterThanOrEqual(issuedAt + 30_000);
    expect([cert.notBefore.getTime() % 60_000, cert.notAfter.getTime() % 60_000]).toEqual([0, 0]);
  });
});
