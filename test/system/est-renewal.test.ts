import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readEstIssued } from "../../lab/src/server.js";
import * as x509 from "../../src/keys/x509.js";
import { runCli } from "../helpers/cli.js";
import { listFiles, snapshot } from "../helpers/enroll.js";
import { certPath, DEVICE, device, type EstLab, enrollEst, estLab, pemBlocks } from "../helpers/est-lab.js";
import { issueLeaf, makeCa } from "../helpers/pki.js";
import { openssl } from "../helpers/tools.js";

/**
 * cert-retriever as an EST client (RFC 7030) against the lab's EST server, over real TLS on
 * 127.0.0.1: bootstrap by password or by a factory certificate, re-enrollment by the current
 * certificate, CSR attributes, manual approval (202), and every refusal with its exit code and
 * nothing written.
 */

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
