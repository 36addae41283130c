import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli, SECRETS } from "../helpers/cli.js";
import { listFiles } from "../helpers/enroll.js";
import { tempDir } from "../helpers/lab.js";
import { type ScepServer, startScepServer } from "../helpers/scepserver.js";
import { haveTool, openssl } from "../helpers/tools.js";

/**
 * cert-retriever as a SCEP client (RFC 8894) against micromdm's scepserver (Debian's `scep`),
 * over HTTP on 127.0.0.1: enrollment with the challenge password, a wrong one, renewal signed by
 * the current certificate, and CAs of RSA-2048 and RSA-4096.
 */

const CHALLENGE = "scep-challenge-4711";
SECRETS.add(CHALLENGE);

async function device(password = CHALLENGE): Promise<{ out: string; pw: string }> {
  const base = await tempDir("cr-scep-dev-");
  const pw = join(base, "challenge");
  await writeFile(pw, password, { mode: 0o600 });
  return { out: join(base, "certs"), pw };
}

function enroll(server: ScepServer, id: string, out: string, args: string[]) {
  return runCli(
    [
      "enroll",
      "--api",
      "scep",
      "--platform",
      server.url,
      "--device-id",
      id,
      "--out",
      out,
      "--non-interactive",
      ...args,
    ],
    { timeoutMs: 30_000 },
  );
}

/** openssl's verdict on the stored certificate under the stored CA, and whether the key is the certificate's. */
function checkFiles(out: string, id: string): void {
  const cert = join(out, `${id}.crt`);
  expect(openssl("verify", "-CAfile", join(out, "IOTmidCA.crt"), cert)).toContain(": OK");
  expect(openssl("x509", "-in", cert, "-noout", "-subject")).toContain(`CN = ${id}`);
  expect(openssl("pkey", "-in", join(out, `${id}.key`), "-pubout")).toBe(
    openssl("x509", "-in", cert, "-pubkey", "-noout"),
  );
}

describe.runIf(haveTool("scepserver"))("SCEP against micromdm's scepserver", () => {
  let rsa2048: ScepServer;
  beforeAll(async () => {
    rsa2048 = await startScepServer({ keySize: 2048, challenge: CHALLENGE, allowRenewDays: 0 });
  });
  afterAll(async () => rsa2048?.stop());

  it("enrolls with the challenge password and the CA pinned; openssl verifies what was stored; a renewal is a RenewalReq signed by the current certificate", async () => {
    const { out, pw } = await device();
    const first = await enroll(rsa2048, "scep-dev-1", out, [
      "--password-file",
      pw,
      "--ca-fingerprint",
      rsa2048.pin,
      "--json",
    ]);
    expect(first.code, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout).status).toBe("enrolled");
    expect(first.stderr).toMatch(/fetch-ca: CA .*O=scep-ca.*matches the pin.*SCEP \(RFC 8894\)/);
    expect(rsa2048.log()).toContain(`scep_message_type="PKCSReq (19)"`);
    checkFiles(out, "scep-dev-1");
    const serial = openssl("x509", "-in", join(out, "scep-dev-1.crt"), "-noout", "-serial");

    // No pin now: the stored CA vouches for the server, and the current certificate signs the request.
    const renewed = await enroll(rsa2048, "scep-dev-1", out, ["--password-file", pw, "--renew-before", "400d"]);
    expect(renewed.code, renewed.stderr).toBe(0);
    expect(renewed.stderr).toContain("it is the CA stored with the credentials");
    expect(renewed.stderr).toContain("the names of the certificate it renews");
    expect(rsa2048.log()).toContain(`scep_message_type="RenewalReq (17)"`);
    checkFiles(out, "scep-dev-1");
    expect(openssl("x509", "-in", join(out, "scep-dev-1.crt"), "-noout", "-serial")).not.toBe(serial);

    // Without the challenge password the renewal is still sent (RFC 8894 needs none), and micromdm, which checks it on every request, refuses it.
    const bare = await enroll(rsa2048, "scep-dev-1", out, ["--renew-before", "400d"]);
    expect(bare.code).toBe(13);
    expect(bare.stderr).toContain("the SCEP server refused the renewal (RenewalReq): pkiStatus FAILURE, badRequest");
    expect(bare.stderr).toContain("some SCEP servers (micromdm) check it on renewals too");
  });

  it("a wrong challenge password: refused with failInfo badRequest, exit 13, a hint naming --password-file, nothing written", async () => {
    const { out, pw } = await device("not-the-challenge");
    const run = await enroll(rsa2048, "scep-dev-2", out, ["--password-file", pw, "--ca-fingerprint", rsa2048.pin]);
    expect(run.code).toBe(13);
    expect(run.stderr).toMatch(
      /submit-csr failed: the SCEP server refused the enrollment \(PKCSReq\): pkiStatus FAILURE, badRequest/,
    );
    expect(run.stderr).toMatch(/hint: check the challenge password \(--password-file\)/);
    expect(await listFiles(out)).toEqual([]);
  });

  it("a first enrollment without a pin: refused before any request, exit 2", async () => {
    const { out, pw } = await device();
    const run = await enroll(rsa2048, "scep-dev-3", out, ["--password-file", pw]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("a first SCEP enrollment needs an explicit trust anchor");
    expect(run.stderr).toContain("--ca-fingerprint");
    expect(await listFiles(out)).toEqual([]);
  });

  it("an EC key: refused before it is made (SCEP encrypts its reply to an RSA key), exit 13", async () => {
    const { out, pw } = await device();
    const run = await enroll(rsa2048, "scep-dev-4", out, [
      "--password-file",
      pw,
      "--ca-fingerprint",
      rsa2048.pin,
      "--key-type",
      "ec-p256",
    ]);
    expect(run.code).toBe(13);
    expect(run.stderr).toContain("it needs an RSA key, not a ec-p256 key");
    expect(await listFiles(out)).toEqual([]);
  });

  it("a CA of RSA-4096: enrolls, openssl verifies", async () => {
    const rsa4096 = await startScepServer({ keySize: 4096, challenge: CHALLENGE });
    try {
      const { out, pw } = await device();
      const run = await enroll(rsa4096, "scep-dev-5", out, ["--password-file", pw, "--ca-fingerprint", rsa4096.pin]);
      expect(run.code, run.stderr).toBe(0);
      expect(openssl("x509", "-in", join(out, "IOTmidCA.crt"), "-noout", "-text")).toContain("Public-Key: (4096 bit)");
      checkFiles(out, "scep-dev-5");
    } finally {
      await rsa4096.stop();
    }
  }, 60_000);
});
