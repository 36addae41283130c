import { X509Certificate } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toPem } from "../../src/keys/key-types.js";
import { runCli } from "../helpers/cli.js";
import { listFiles } from "../helpers/enroll.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { makeSoftToken, type TestToken } from "../helpers/softhsm.js";
import { haveTool, openssl } from "../helpers/tools.js";

const ready = haveTool("softhsm2-util") && haveTool("pkcs11-tool") && haveTool("openssl");

/**
 * CMP's first enrollment signed by a manufacturer's IDevID whose key stays in the device's token
 * (`--client-key 'pkcs11:…;id=…'`): the key made there by pkcs11-tool, its certificate issued by a
 * throwaway manufacturer CA that the lab's CMP server trusts; the protection is signed in the token.
 */
describe.skipIf(!ready)("CMP bootstrap key in a token (SoftHSM2) against the lab's CMP server", () => {
  let lab: TestLab;
  let token: TestToken;
  let dir: string;
  let caFile: string;
  let idevid: string;

  beforeAll(async () => {
    [dir, token] = await Promise.all([tempDir("cr-cmp-token-"), makeSoftToken("device")]);
    token.tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", "idevid", "--id", "b007");
    const pubDer = join(dir, "idevid-pub.der");
    token.tool("--read-object", "--type", "pubkey", "--id", "b007", "--output-file", pubDer);
    const pub = join(dir, "idevid-pub.pem");
    openssl("pkey", "-pubin", "-inform", "DER", "-in", pubDer, "-out", pub);
    // The manufacturer's CA issues the IDevID for the token's key (the CSR's own key is thrown away).
    const [ca, caKey, csr, junk] = ["maker-ca.pem", "maker-ca.key", "idevid.csr", "junk.key"].map((f) => join(dir, f));
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl("req", "-x509", ...ec, "-keyout", caKey!, "-out", ca!, "-subj", "/CN=Maker CA", "-days", "2");
    openssl("req", "-new", ...ec, "-keyout", junk!, "-out", csr!, "-subj", "/CN=device IDevID");
    idevid = join(dir, "idevid.crt");
    openssl(
      ...["x509", "-req", "-in", csr!, "-CA", ca!, "-CAkey", caKey!, "-CAcreateserial"],
      ...["-force_pubkey", pub, "-out", idevid, "-days", "1"],
    );
    const makerCa = new Uint8Array(new X509Certificate(await readFile(ca!)).raw);
    lab = await startTestLab({ cmp: { secrets: {}, bootstrapCas: [makerCa] } });
    caFile = join(dir, "lab-ca.pem");
    await writeFile(caFile, toPem(lab.ca.cert.rawData, "CERTIFICATE"));
  });
  afterAll(async () => Promise.all([lab?.stop(), token?.stop()]));

  const uri = (path: string) =>
    `pkcs11:token=${token.label}${path}?module-path=${token.module}&pin-source=file:${token.pinFile}`;
  const enroll = (out: string, clientKey: string, extra: string[] = []) =>
    runCli(
      [
        ...["enroll", "--api", "cmp", "--platform", `${lab.url}/pkix/`, "--device-id", "tok-dev"],
        ...["--client-cert", idevid, "--client-key", clientKey, "--platform-ca", caFile, "--out", out, ...extra],
      ],
      { env: token.env },
    );

  it("signed by the IDevID key in the token, the new key made in the same token: enrolled, verified, the IDevID key kept", async () => {
    const out = join(dir, "out");
    const run = await enroll(out, uri(";id=%B0%07"), ["--key", uri("")]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain("signed, by the bootstrap certificate's key");
    expect(run.stderr).toMatch(/generate-key: ec-p256 key generated in token 'device'/);
    expect(openssl("verify", "-CAfile", caFile, join(out, "tok-dev.crt"))).toContain(": OK");
    // The certificate is for the new token key, not the IDevID's.
    const newKey = (await readFile(join(out, "tok-dev.key.uri"), "utf8")).trim();
    expect(newKey).toMatch(/^pkcs11:token=device;.*object=tok-dev;/);
    expect(openssl("x509", "-in", join(out, "tok-dev.crt"), "-noout", "-pubkey")).not.toBe(
      openssl("x509", "-in", idevid, "-noout", "-pubkey"),
    );
    expect(token.privateKeys("idevid")).toHaveLength(1);
    expect(token.privateKeys("tok-dev")).toHaveLength(1);
  });

  it("the new key made in software: the token opened for the IDevID key alone signs, and keeps it", async () => {
    const out = join(dir, "soft");
    const run = await enroll(out, uri(";object=idevid"));
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain("signed, by the bootstrap certificate's key");
    expect(openssl("verify", "-CAfile", caFile, join(out, "tok-dev.crt"))).toContain(": OK");
    expect(await listFiles(out)).toContain("tok-dev.key");
    expect(token.privateKeys("idevid")).toHaveLength(1);
  });

  it("a --client-key URI naming no key in the token: exit 35 with one sentence and the hint, nothing written, the IDevID key kept", async () => {
    const out = join(dir, "missing");
    const run = await enroll(out, uri(";id=%B0%99"));
    expect(run.code, run.stderr).toBe(35);
    expect(run.stderr).toContain("holds no private key with id b099, the one the client key URI (--client-key) names");
    expect(run.stderr).toContain("hint: check id= (and object=) in --client-key");
    expect(await listFiles(out)).toEqual([]);
    expect(token.privateKeys("idevid")).toHaveLength(1);
  });
});
