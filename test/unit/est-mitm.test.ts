import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sha256Fingerprint } from "../../src/flows/certificate.js";
import type * as x509 from "../../src/keys/x509.js";
import { type CliRun, runCli } from "../helpers/cli.js";
import { listFiles, snapshot } from "../helpers/enroll.js";
import { estRequest } from "../helpers/est.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { type Mitm, type MitmOptions, startMitm } from "../helpers/mitm.js";
import { issueLeaf, makeCa, type TestCa } from "../helpers/pki.js";

/**
 * A man in the middle between the device and its EST server (RFC 7030 §3.3, §4.1.1): whatever
 * certificate he presents (his own, one from the device's bootstrap chain, one the EST CA issued to
 * another device) and whichever trust the run starts from (a pin, --platform-ca, the stored chain),
 * he never receives the password nor the bootstrap key's signature (no TLS handshake that used the
 * client key completes with him), and nothing is written. What he saw is recorded at his end.
 */

const DEVICE = "mitm-device";
const ONLY_CACERTS = ["GET /.well-known/est/cacerts"];
const VERSIONS: MitmOptions["maxVersion"][] = ["TLSv1.2", "TLSv1.3"];

let lab: TestLab;
let root: x509.X509Certificate;
let factory: TestCa;
let dir: string;
let files: { pw: string; estRoot: string; bootCert: string; bootKey: string; bootBundle: string };

beforeAll(async () => {
  factory = await makeCa("Factory Bootstrap CA");
  lab = await startTestLab({ api: "est", certProfile: "open", est: { bootstrapCas: [factory.pem] } });
  root = lab.estCa!.root.cert;
  dir = await tempDir("cr-est-mitm-");
  const boot = await issueLeaf(factory, DEVICE, [], "client");
  files = {
    pw: join(dir, "pw"),
    estRoot: join(dir, "est-root.pem"),
    bootCert: join(dir, "boot.crt"),
    bootKey: join(dir, "boot.key"),
    bootBundle: join(dir, "boot-bundle.crt"),
  };
  await writeFile(files.pw, lab.password, { mode: 0o600 });
  await writeFile(files.estRoot, root.toString("pem"));
  await writeFile(files.bootCert, boot.cert);
  await writeFile(files.bootKey, boot.key, { mode: 0o600 });
  // The client certificate with its chain: the factory root travels with it.
  await writeFile(files.bootBundle, `${boot.cert.trimEnd()}\n${factory.pem}`);
});
afterAll(async () => lab?.stop());

/** The real /cacerts, as a MITM relays it (it is public). */
async function realCacerts(): Promise<string> {
  return (await estRequest(`${lab.estUrl}/cacerts`, root.toString("pem"))).body;
}

/** A MITM certificate for 127.0.0.1 from `ca` (his own by default). */
async function mitmTls(ca?: TestCa): Promise<{ cert: string; key: string }> {
  return issueLeaf(ca ?? (await makeCa("Attacker CA")), "127.0.0.1", [{ type: "ip", value: "127.0.0.1" }], "server");
}

/** `enroll --api est` of DEVICE against `url` into `out`, with the password and the bootstrap certificate unless told. */
function enroll(url: string, out: string, args: string[]): Promise<CliRun> {
  return runCli(
    [
      "enroll",
      "--api",
      "est",
      "--platform",
      url,
      "--device-id",
      DEVICE,
      "--out",
      out,
      "--non-interactive",
      "--json",
      "--retries",
      "0",
      ...args,
    ],
    { timeoutMs: 30_000 },
  );
}

const withSecrets = () => ["--username", "admin", "--password-file", files.pw];
const withBoot = (cert = files.bootCert) => ["--client-cert", cert, "--client-key", files.bootKey];
const pin = () => ["--ca-fingerprint", `sha256:${sha256Fingerprint(root)}`];

/** What the MITM must never have had: the password, the client certificate or its signature. */
function expectNothingGiven(mitm: Mitm, requests: string[]): void {
  expect(mitm.clientCertificates).toEqual([]);
  expect(mitm.requests).toEqual(requests);
  expect(mitm.requests.join("\n")).not.toContain("authorization");
}

/** Runs `body` against a MITM started with `opts`, closing it after. */
async function against<T>(opts: MitmOptions, body: (mitm: Mitm) => Promise<T>): Promise<T> {
  const mitm = await startMitm(opts);
  try {
    return await body(mitm);
  } finally {
    await mitm.close();
  }
}

describe.each(VERSIONS)("a man in the middle speaking up to %s", (maxVersion) => {
  it("a first run pinned by fingerprint: he may serve the provisional /cacerts (the real one, relayed), and gets nothing after it (exit 11)", async () => {
    await against({ tls: await mitmTls(), maxVersion, cacerts: realCacerts }, async (mitm) => {
      const out = join(await tempDir("cr-mitm-out-"), "certs");
      const run = await enroll(mitm.url, out, [...pin(), ...withSecrets(), ...withBoot()]);
      expect(run.code, run.stderr).toBe(11);
      expect(JSON.parse(run.stdout).error).toMatchObject({ reason: "tls-untrusted" });
      expectNothingGiven(mitm, ONLY_CACERTS);
      expect(await listFiles(out)).toEqual([]);
    });
  });

  it("a first run with --platform-ca beside the pin: refused at the first request, no fall back to the pin's unverified fetch (exit 11)", async () => {
    await against({ tls: await mitmTls(), maxVersion, cacerts: realCacerts }, async (mitm) => {
      const out = join(await tempDir("cr-mitm-out-"), "certs");
      const run = await enroll(mitm.url, out, [
        "--platform-ca",
        files.estRoot,
        ...pin(),
        ...withSecrets(),
        ...withBoot(),
      ]);
      expect(run.code, run.stderr).toBe(11);
      expect(JSON.parse(run.stdout).error).toMatchObject({ step: "fetch-ca", reason: "tls-untrusted" });
      expectNothingGiven(mitm, []);
      expect(mitm.handshakes).toBe(0);
      expect(await listFiles(out)).toEqual([]);
    });
  });

  it("a certificate from the device's bootstrap chain (the factory CA, sent with the client certificate) does not vouch for the EST server (exit 11)", async () => {
    await against({ tls: await mitmTls(factory), maxVersion, cacerts: realCacerts }, async (mitm) => {
      const out = join(await tempDir("cr-mitm-out-"), "certs");
      const run = await enroll(mitm.url, out, [...pin(), ...withSecrets(), ...withBoot(files.bootBundle)]);
      expect(run.code, run.stderr).toBe(11);
      expect(JSON.parse(run.stdout).error).toMatchObject({ reason: "tls-untrusted" });
      expectNothingGiven(mitm, ONLY_CACERTS);
      expect(await listFiles(out)).toEqual([]);
    });
  });

  it("the same with --platform-ca: the factory CA is trusted for nothing of the server's (exit 11)", async () => {
    await against({ tls: await mitmTls(factory), maxVersion }, async (mitm) => {
      const out = join(await tempDir("cr-mitm-out-"), "certs");
      const run = await enroll(mitm.url, out, [
        "--platform-ca",
        files.estRoot,
        ...withSecrets(),
        ...withBoot(files.bootBundle),
      ]);
      expect(run.code, run.stderr).toBe(11);
      expectNothingGiven(mitm, []);
      expect(await listFiles(out)).toEqual([]);
    });
  });
});

describe("a man in the middle at renewal, the stored chain the only anchor", () => {
  let out: string;
  let before: Record<string, string>;
  beforeAll(async () => {
    out = join(await tempDir("cr-mitm-renew-"), "certs");
    const first = await enroll(lab.estUrl!, out, [...pin(), ...withSecrets()]);
    expect(first.code, first.stderr).toBe(0);
    before = await snapshot(out);
  });

  const renew = (url: string) => enroll(url, out, ["--renew-before", "400d", ...withSecrets()]);

  it.each(VERSIONS)(
    "his own certificate (up to %s): refused before any request, the stored files unchanged (exit 11)",
    async (maxVersion) => {
      await against({ tls: await mitmTls(), maxVersion, cacerts: realCacerts }, async (mitm) => {
        const run = await renew(mitm.url);
        expect(run.code, run.stderr).toBe(11);
        expect(JSON.parse(run.stdout).error).toMatchObject({ step: "fetch-ca", reason: "tls-untrusted" });
        expectNothingGiven(mitm, []);
        expect(await snapshot(out)).toEqual(before);
      });
    },
  );

  it.each(VERSIONS)(
    "another device's certificate from the same EST CA, naming the server's address (up to %s): not a server's, refused (exit 11)",
    async (maxVersion) => {
      const other = join(await tempDir("cr-mitm-other-"), "certs");
      const issued = await runCli([
        "enroll",
        "--api",
        "est",
        "--platform",
        lab.estUrl!,
        "--device-id",
        "attacker-device",
        "--ip",
        "127.0.0.1",
        "--out",
        other,
        "--non-interactive",
        ...pin(),
        ...withSecrets(),
      ]);
      expect(issued.code, issued.stderr).toBe(0);
      const tls = {
        cert: await readFile(join(other, "attacker-device.crt"), "utf8"),
        key: await readFile(join(other, "attacker-device.key"), "utf8"),
      };
      await against({ tls, maxVersion, cacerts: realCacerts }, async (mitm) => {
        const run = await renew(mitm.url);
        expect(run.code, run.stderr).toBe(11);
        expect(JSON.parse(run.stdout).error).toMatchObject({ step: "fetch-ca", reason: "tls-untrusted" });
        expectNothingGiven(mitm, []);
        expect(await snapshot(out)).toEqual(before);
      });
    },
  );
});
