import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.js";
import { enrollCli, listFiles } from "../helpers/enroll.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { makeSoftToken, type TestToken } from "../helpers/softhsm.js";
import { haveTool, openssl } from "../helpers/tools.js";

const ready = haveTool("softhsm2-util") && haveTool("pkcs11-tool");

/**
 * `--key pkcs11:…;id=…` names a key already in the token (made by a secure element at manufacturing,
 * here by pkcs11-tool): enrollment certifies it, makes no key, and nothing ever removes it.
 */
describe.skipIf(!ready)("--key naming an existing token key by its id= (SoftHSM2)", () => {
  let lab: TestLab;
  let token: TestToken;
  beforeAll(async () => {
    [lab, token] = await Promise.all([
      startTestLab({ certProfile: "open", autoRegister: true, api: "x509" }),
      makeSoftToken("device"),
    ]);
    token.tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", "factory", "--id", "4201");
    // The manufacturer's certificate beside it (same id, another issuer), which no enrollment may remove.
    const idevid = join(token.dir, "idevid.der");
    openssl(
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      join(token.dir, "k"),
      "-subj",
      "/CN=Maker CA",
      "-outform",
      "DER",
      "-out",
      idevid,
    );
    token.tool("--write-object", idevid, "--type", "cert", "--id", "4201", "--label", "factory");
  });
  afterAll(async () => Promise.all([lab?.stop(), token?.stop()]));

  const keyUri = (path: string) =>
    `pkcs11:token=${token.label}${path}?module-path=${token.module}&pin-source=file:${token.pinFile}`;
  const enroll = (out: string, extra: string[]) =>
    enrollCli(lab.url, lab, "f60c28", out, ["--api", "dojot", ...extra], token.env);
  const certObjects = () => token.tool("--list-objects", "--type", "cert").match(/Certificate Object/g) ?? [];
  const privateKeys = () => token.tool("--list-objects", "--type", "privkey").match(/Private Key Object/g) ?? [];
  /** The token object's public key and the certificate's, both as DER SubjectPublicKeyInfo (hex). */
  const publicKeys = async (dir: string, cert: string) => {
    const der = join(dir, "token-pub.der");
    token.tool("--read-object", "--type", "pubkey", "--id", "4201", "--output-file", der);
    const fromToken = openssl("pkey", "-pubin", "-inform", "DER", "-in", der, "-outform", "PEM");
    return { fromToken, fromCert: openssl("x509", "-in", cert, "-noout", "-pubkey") };
  };

  it("certifies the existing key, makes none, records it kept; enrolling again (with and without --key) never removes it", async () => {
    const dir = await tempDir();
    const out = join(dir, "certs");
    const run = await enroll(out, ["--key", keyUri(";id=%42%01"), "--store-cert-in-token"]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/generate-key: ec-p256 key found in token 'device' .*\(not generated: it stays there/);
    const keys = await publicKeys(dir, join(out, "f60c28.crt"));
    expect(keys.fromCert).toBe(keys.fromToken);
    expect(privateKeys()).toHaveLength(1);
    expect(certObjects()).toHaveLength(2); // the manufacturer's, and ours beside it
    const uri = (await readFile(join(out, "f60c28.key.uri"), "utf8")).trim();
    expect(uri).toMatch(
      /^pkcs11:token=device;serial=[^;]+;object=factory;id=%42%01;type=private\?.*&x-cert-retriever=kept$/,
    );
    expect(await listFiles(out)).not.toContain("f60c28.key.pending");
    // The stored URI serves the other commands: check finds the key in the token, matching the certificate.
    const check = await runCli(["check", "--device-id", "f60c28", "--out", out], { env: token.env });
    expect(check.code, check.stderr).toBe(1); // check's "nothing to do"
    expect(check.stderr).toContain("'f60c28' has valid credentials");

    // Renewed without --key: the stored key is certified again, not replaced by a new one.
    const again = await enroll(out, ["--force", "--store-cert-in-token"]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/generate-key: ec-p256 key found in token 'device'/);
    expect(privateKeys()).toHaveLength(1);
    expect(certObjects()).toHaveLength(2); // ours replaced, the manufacturer's kept

    // A new key asked for (no id=): made beside it; the existing key it replaces in the store stays in the token.
    const fresh = await enroll(out, ["--force", "--key", keyUri("")]);
    expect(fresh.code, fresh.stderr).toBe(0);
    expect(fresh.stderr).toMatch(/generate-key: ec-p256 key generated in token 'device'/);
    expect(fresh.stderr).not.toMatch(/removed/);
    expect(privateKeys()).toHaveLength(2);
    expect(token.tool("--list-objects", "--type", "privkey")).toMatch(/ID:\s+4201/);
  });

  it("an id= no key in the token has: exit 35 before any request, no key made, nothing written", async () => {
    const out = join(await tempDir(), "certs");
    const before = privateKeys().length;
    const run = await enroll(out, ["--key", keyUri(";id=%99")]);
    expect(run.code).toBe(35);
    expect(run.stderr).toContain("holds no private key with id 99; an id= in the key URI names a key already there");
    expect(run.stderr).toContain("hint: check id= (and object=) in --key");
    expect(privateKeys()).toHaveLength(before);
    expect(await listFiles(out)).toEqual([]);
  });
});
