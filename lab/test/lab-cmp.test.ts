import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { AsnConvert } from "@peculiar/asn1-schema";
import { failInfoNames, PKIMessage, toPem } from "cert-retriever";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli, SECRETS } from "../../test/helpers/cli.js";
import { startTestLab, type TestLab, tempDir } from "../../test/helpers/lab.js";
import { makeManufacturer } from "../../test/helpers/openssl-cmp.js";
import { haveTool, openssl } from "../../test/helpers/tools.js";

/**
 * The lab's CMP server (`/pkix/`, RFC 9483's Lightweight CMP) held to an independent client,
 * OpenSSL's `openssl cmp`: enrollment with a shared secret (ir, p10cr) and with a bootstrap
 * certificate, and each refusal (wrong secret, unknown reference, untrusted bootstrap certificate,
 * a request the lab's profile refuses) as openssl reports it. Then cert-retriever's own CMP client.
 */

const REFERENCE = "lab-cmp-device";
const SECRET = "lab-cmp-secret-4711";
SECRETS.add(SECRET);

describe.runIf(haveTool("openssl"))("the lab's CMP server, with openssl cmp", () => {
  let lab: TestLab;
  let dir: string;
  let caFile: string;
  let boot: { ca: string; cert: string; key: string };
  let stranger: { ca: string; cert: string; key: string };
  let n = 0;

  beforeAll(async () => {
    dir = await tempDir("cr-cmp-lab-");
    boot = makeManufacturer(dir, "maker");
    stranger = makeManufacturer(dir, "stranger");
    const bootCa = new Uint8Array(new X509Certificate(await readFile(boot.ca)).raw);
    lab = await startTestLab({ cmp: { secrets: { [REFERENCE]: SECRET }, bootstrapCas: [bootCa] } });
    caFile = join(dir, "lab-ca.pem");
    await writeFile(caFile, toPem(lab.ca.cert.rawData, "CERTIFICATE"));
  });
  afterAll(async () => lab?.stop());

  /** `openssl cmp` against the lab (the secret through the environment, never argv): its exit code, output and files. */
  async function cmp(
    args: string[],
    secret = SECRET,
  ): Promise<{ code: number; output: string; cert: string; key: string }> {
    const out = join(dir, `out-${++n}`);
    const key = `${out}.key`;
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key);
    const server = ["-server", new URL(lab.url).host, "-path", "pkix/", "-trusted", caFile];
    const files = ["-newkey", key, "-certout", `${out}.pem`, "-cacertsout", `${out}-ca.pem`];
    try {
      const { stdout, stderr } = await promisify(execFile)("openssl", ["cmp", ...server, ...files, ...args], {
        timeout: 20_000,
        env: { ...process.env, LAB_CMP_SECRET: secret },
      });
      return { code: 0, output: stdout + stderr, cert: `${out}.pem`, key };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: e.code ?? -1, output: `${e.stdout ?? ""}${e.stderr ?? ""}`, cert: `${out}.pem`, key };
    }
  }
  const mac = ["-ref", REFERENCE, "-secret", "env:LAB_CMP_SECRET"];

  it("ir with the shared secret: a certificate for its key and subject from the lab's CA, which caPubs carries; certConf answered pkiConf", async () => {
    const run = await cmp(["-cmd", "ir", ...mac, "-subject", "/CN=cmp-device/O=lab"]);
    expect(run.code, run.output).toBe(0);
    expect(run.output).toContain("received PKICONF");
    expect(openssl("verify", "-CAfile", caFile, run.cert)).toContain(": OK");
    const text = openssl("x509", "-in", run.cert, "-noout", "-subject", "-ext", "extendedKeyUsage");
    expect(text).toContain("CN = cmp-device");
    expect(text).toContain("TLS Web Client Authentication");
    expect(openssl("x509", "-in", run.cert, "-noout", "-pubkey")).toBe(openssl("pkey", "-in", run.key, "-pubout"));
    expect(openssl("x509", "-in", run.cert.replace(".pem", "-ca.pem"), "-noout", "-subject")).toContain(
      "CN = IOTmidCA",
    );
  });

  it("p10cr with a CSR, and cr: both get their certificate", async () => {
    const csrKey = join(dir, "p10.key");
    const csr = join(dir, "p10.csr");
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", csrKey, "-out", csr, "-subj", "/CN=p10-device");
    const p10 = await cmp(["-cmd", "p10cr", ...mac, "-csr", csr]);
    expect(p10.code, p10.output).toBe(0);
    expect(openssl("x509", "-in", p10.cert, "-noout", "-subject")).toContain("CN = p10-device");
    const cr = await cmp(["-cmd", "cr", ...mac, "-subject", "/CN=cr-device"]);
    expect(cr.code, cr.output).toBe(0);
    expect(openssl("verify", "-CAfile", caFile, cr.cert)).toContain(": OK");
  });

  it("ir signed with a bootstrap certificate from the trusted manufacturer CA: answered signed by the lab's CMP signer", async () => {
    const run = await cmp(["-cmd", "ir", "-cert", boot.cert, "-key", boot.key, "-subject", "/CN=boot-device"]);
    expect(run.code, run.output).toBe(0);
    expect(openssl("verify", "-CAfile", caFile, run.cert)).toContain(": OK");
  });

  it("genm for id-it-caCerts: a genp with the lab's CA", async () => {
    const run = await cmp(["-cmd", "genm", "-infotype", "caCerts", ...mac]);
    expect(run.code, run.output).toBe(0);
    expect(run.output).toContain("genp contains ITAV of type: id-it-caCerts");
  });

  it("a bootstrap-signed request changed after it was signed: an error with badMessageCheck", async () => {
    const reqout = join(dir, "signed-ir.der");
    const sent = await cmp([
      "-cmd",
      "ir",
      "-cert",
      boot.cert,
      "-key",
      boot.key,
      "-subject",
      "/CN=tamper-me",
      "-reqout",
      reqout,
    ]);
    expect(sent.code, sent.output).toBe(0);
    const der = await readFile(reqout);
    const at = der.indexOf("tamper-me");
    expect(at).toBeGreaterThan(0);
    der[at] = "T".charCodeAt(0);
    const res = await fetch(`${lab.url}/pkix/`, {
      method: "POST",
      headers: { "content-type": "application/pkixcmp" },
      body: der,
    });
    expect(res.headers.get("content-type")).toBe("application/pkixcmp");
    const answer = AsnConvert.parse(new Uint8Array(await res.arrayBuffer()), PKIMessage);
    expect(answer.body.error?.pKIStatusInfo.status).toBe(2);
    expect(failInfoNames(answer.body.error!.pKIStatusInfo)).toEqual(["badMessageCheck"]);
  });

  it("what is no CMP request (a GET, a body that is no PKIMessage): 400 Bad Request, as OpenSSL's server answers", async () => {
    expect((await fetch(`${lab.url}/pkix/`)).status).toBe(400);
    const post = await fetch(`${lab.url}/pkix/`, { method: "POST", body: "not DER" });
    expect([post.status, await post.text()]).toEqual([400, "Bad Request\n"]);
  });

  it("a wrong secret: an error with badMessageCheck", async () => {
    const run = await cmp(["-cmd", "ir", ...mac, "-subject", "/CN=cmp-device"], "not-the-secret");
    expect(run.code).not.toBe(0);
    expect(run.output).toContain("received error:PKIStatus: rejection; PKIFailureInfo: badMessageCheck;");
  });

  it("an unknown reference: an error with signerNotTrusted", async () => {
    const run = await cmp(["-cmd", "ir", "-ref", "nobody", "-secret", "env:LAB_CMP_SECRET", "-subject", "/CN=x"]);
    expect(run.code).not.toBe(0);
    expect(run.output).toContain("received error:PKIStatus: rejection; PKIFailureInfo: signerNotTrusted;");
  });

  it("a bootstrap certificate from a CA the lab does not trust: an error with signerNotTrusted", async () => {
    const run = await cmp(["-cmd", "ir", "-cert", stranger.cert, "-key", stranger.key, "-subject", "/CN=boot-device"]);
    expect(run.code).not.toBe(0);
    expect(run.output).toContain("received error:PKIStatus: rejection; PKIFailureInfo: signerNotTrusted;");
  });

  it("a request the lab's profile refuses (no CN): ip with status rejection and badCertTemplate", async () => {
    const run = await cmp(["-cmd", "ir", ...mac, "-subject", "/O=no-common-name"]);
    expect(run.code).not.toBe(0);
    expect(run.output).toContain("request rejected by server:PKIStatus: rejection; PKIFailureInfo: badCertTemplate;");
  });

  it("cert-retriever's own CMP client (enroll --api cmp) enrolls with the shared secret from --password-file", async () => {
    const secretFile = join(dir, "secret");
    await writeFile(secretFile, SECRET, { mode: 0o600 });
    const out = join(dir, "agent");
    const run = await runCli([
      "enroll",
      "--api",
      "cmp",
      "--platform",
      `${lab.url}/pkix/`,
      "--device-id",
      "agent-dev",
      "--username",
      REFERENCE,
      "--password-file",
      secretFile,
      "--platform-ca",
      caFile,
      "--out",
      out,
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(openssl("verify", "-CAfile", caFile, join(out, "agent-dev.crt"))).toContain(": OK");
  });
});
