import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { sha256ColonHex } from "../../src/keys/fingerprint.js";
import { certificatePems, toPem } from "../../src/keys/key-types.js";
import * as x509 from "../../src/keys/x509.js";
import { runCli, SECRETS } from "../helpers/cli.js";
import { listFiles } from "../helpers/enroll.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";

/**
 * cert-retriever's SCEP client against the lab's SCEP server (micromdm's answers, and what other
 * servers do beyond them): approval by PENDING and CertPoll, a server without POST, and a server
 * that offers only legacy algorithms.
 */

const CHALLENGE = "unit-scep-challenge-31337";
SECRETS.add(CHALLENGE);

let lab: TestLab | undefined;
afterEach(async () => {
  await lab?.stop();
  lab = undefined;
});

async function enroll(scep: NonNullable<Parameters<typeof startTestLab>[0]>["scep"], args: string[] = []) {
  lab = await startTestLab({ scep: { challenge: CHALLENGE, ...scep } });
  const base = await tempDir("cr-scep-unit-");
  const pw = join(base, "challenge");
  await writeFile(pw, CHALLENGE, { mode: 0o600 });
  const out = join(base, "certs");
  const pin = `sha256:${sha256ColonHex(lab.ca.cert.rawData).replace(/:/g, "")}`;
  const run = await runCli(
    ["enroll", "--api", "scep", "--platform", `${lab.url}/scep`, "--device-id", "scep-unit", "--out", out].concat([
      "--password-file",
      pw,
      "--ca-fingerprint",
      pin,
      "--non-interactive",
      ...args,
    ]),
    { timeoutMs: 30_000 },
  );
  return { run, out };
}

describe("SCEP against the lab", () => {
  it("a server that answers PENDING: the client polls (CertPoll) and gets the certificate", async () => {
    const { run, out } = await enroll({ pending: 1 });
    expect(run.code, run.stderr).toBe(0);
    expect(await listFiles(out)).toEqual(["IOTmidCA.crt", "scep-unit.crt", "scep-unit.key", "scep-unit.settings.json"]);
  });

  it("PENDING past the deadline: exit 75 with a hint to have the request approved, nothing written", async () => {
    const { run, out } = await enroll({ pending: 100 }, ["--deadline", "5s"]);
    expect(run.code).toBe(75);
    expect(run.stderr).toContain("the SCEP server holds the request for approval (pkiStatus PENDING)");
    expect(run.stderr).toMatch(/hint: the SCEP server holds the request for approval: have it approved there/);
    expect(await listFiles(out)).toEqual([]);
  });

  it("a CA behind an RA (GetCACert's application/x-x509-ca-ra-cert): the request goes to the RA, its signed answer is taken, the CA alone is stored", async () => {
    const { run, out } = await enroll({ ra: true });
    expect(run.code, run.stderr).toBe(0);
    const stored = await readFile(join(out, "IOTmidCA.crt"), "utf8");
    expect(certificatePems(stored)).toHaveLength(1);
    expect(new x509.X509Certificate(certificatePems(stored)[0]!).subject).toContain("CN=IOTmidCA");
  });

  it("--platform-ca alone over plain http: refused at fetch-ca, before any key (exit 2), since TLS vouches for nothing there", async () => {
    lab = await startTestLab({ scep: { challenge: CHALLENGE } });
    const base = await tempDir("cr-scep-unit-");
    const ca = join(base, "ca.pem");
    await writeFile(ca, toPem(lab.ca.cert.rawData, "CERTIFICATE"));
    const out = join(base, "certs");
    const run = await runCli(
      ["enroll", "--api", "scep", "--platform", `${lab.url}/scep`, "--device-id", "scep-unit", "--out", out].concat([
        "--password-stdin",
        "--platform-ca",
        ca,
        "--non-interactive",
      ]),
      { input: CHALLENGE, timeoutMs: 30_000 },
    );
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("a first SCEP enrollment over plain http needs the CA pinned");
    expect(run.stderr).not.toContain("generate-key");
    expect(await listFiles(out)).toEqual([]);
  });

  it("a server without POSTPKIOperation: the message goes base64 in a GET, and is taken", async () => {
    const { run } = await enroll({ caps: "Renewal\nSHA-256\nAES" });
    expect(run.code, run.stderr).toBe(0);
  });

  it("a server offering only 3DES and SHA-1: refused before any key is made (exit 17); --scep-crypto legacy speaks them", async () => {
    const refused = await enroll({ caps: "DES3\nSHA-1\nPOSTPKIOperation" });
    expect(refused.run.code).toBe(17);
    expect(refused.run.stderr).toContain("the SCEP server offers nothing stronger than 3DES and SHA-1");
    expect(refused.run.stderr).toContain("hint: have the SCEP server offer AES and SHA-256");
    expect(refused.run.stderr).toContain("--scep-crypto legacy");
    expect(refused.run.stderr).not.toContain("generate-key");
    expect(await listFiles(refused.out)).toEqual([]);
    await lab?.stop();
    const legacy = await enroll({ caps: "DES3\nSHA-1\nPOSTPKIOperation" }, ["--scep-crypto", "legacy"]);
    expect(legacy.run.code, legacy.run.stderr).toBe(0);
  });
});
