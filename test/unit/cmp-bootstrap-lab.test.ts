import { X509Certificate } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toPem } from "../../src/keys/key-types.js";
import { runMain } from "../helpers/cli.js";
import { listFiles } from "../helpers/enroll.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { makeManufacturer } from "../helpers/openssl-cmp.js";
import { haveTool, openssl } from "../helpers/tools.js";

/**
 * cert-retriever's CMP client, in this process, enrolling against the lab's CMP server with no
 * secret: the first enrollment signed by a bootstrap certificate (IDevID) and its key file, which
 * the lab checks against the manufacturer CA it trusts (its bootstrapCas).
 */
describe.runIf(haveTool("openssl"))("CMP first enrollment by a bootstrap certificate file, against the lab", () => {
  let lab: TestLab;
  let dir: string;
  let caFile: string;
  let maker: { ca: string; cert: string; key: string };
  let stranger: { ca: string; cert: string; key: string };

  beforeAll(async () => {
    dir = await tempDir("cr-cmp-boot-");
    maker = makeManufacturer(dir, "maker");
    stranger = makeManufacturer(dir, "stranger");
    const bootCa = new Uint8Array(new X509Certificate(await readFile(maker.ca)).raw);
    lab = await startTestLab({ cmp: { secrets: {}, bootstrapCas: [bootCa] } });
    caFile = join(dir, "lab-ca.pem");
    await writeFile(caFile, toPem(lab.ca.cert.rawData, "CERTIFICATE"));
  });
  afterAll(async () => lab?.stop());

  const enroll = (idevid: { cert: string; key: string }, out: string) =>
    runMain([
      ...["enroll", "--api", "cmp", "--platform", `${lab.url}/pkix/`, "--device-id", "boot-dev"],
      ...["--client-cert", idevid.cert, "--client-key", idevid.key, "--platform-ca", caFile, "--out", out],
    ]);

  it("an IDevID from the manufacturer the lab trusts: ir and certConf signed by it, no secret asked, the certificate stored", async () => {
    const out = join(dir, "maker-out");
    const run = await enroll(maker, out);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain("signed, by the bootstrap certificate's key");
    expect(openssl("verify", "-CAfile", caFile, join(out, "boot-dev.crt"))).toContain(": OK");
    expect(openssl("x509", "-in", join(out, "boot-dev.crt"), "-noout", "-subject")).toContain("boot-dev");
  });

  it("an IDevID from a CA the lab does not trust: signerNotTrusted, exit 10 with the bootstrap hint, nothing written", async () => {
    const out = join(dir, "stranger-out");
    const run = await enroll(stranger, out);
    expect(run.code, run.stderr).toBe(10);
    expect(run.stderr).toMatch(/submit-csr failed: .*signerNotTrusted/);
    expect(run.stderr).toContain("hint: the CMP server does not take the bootstrap certificate (--client-cert)");
    expect(await listFiles(out)).toEqual([]);
  });

  it("--client-key pkcs11: without id= or object= is refused before anything is opened (exit 2); with --api est it stays a PEM file (exit 3)", async () => {
    const out = join(dir, "refused");
    const token = "pkcs11:token=device?module-path=/nonexistent/module.so";
    const cmp = await enroll({ cert: maker.cert, key: token }, out);
    expect(cmp.code, cmp.stderr).toBe(2);
    expect(cmp.stderr).toContain("names no one key");
    expect(cmp.stderr).toContain("hint: add the bootstrap key's id= (or object=) to the URI");
    const est = await runMain([
      ...["enroll", "--api", "est", "--platform", "https://127.0.0.1:9", "--device-id", "boot-dev", "--username", "u"],
      ...["--client-cert", maker.cert, "--client-key", `${token.replace("?", ";id=%01?")}`, "--out", out],
    ]);
    expect(est.code, est.stderr).toBe(3);
    expect(est.stderr).toContain("cannot read --client-key pkcs11:token=device;id=%01");
    expect(await listFiles(out)).toEqual([]);
  });
});
