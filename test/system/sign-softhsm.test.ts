// A key in a PKCS#11 token (SoftHSM2) signs messages without leaving it: the CLI opens the token by
// the stored key's URI, the token signs, and openssl checks the signature with the certificate.
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.js";
import { enrollCli } from "../helpers/enroll.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { makeSoftToken, type TestToken } from "../helpers/softhsm.js";
import { haveTool, openssl } from "../helpers/tools.js";

const ready = haveTool("softhsm2-util") && haveTool("pkcs11-tool");

describe.skipIf(!ready)("sign with a key that stays in a SoftHSM2 token", () => {
  let lab: TestLab;
  let token: TestToken;
  beforeAll(async () => {
    [lab, token] = await Promise.all([startTestLab({ api: "x509", autoRegister: true }), makeSoftToken("device")]);
  });
  afterAll(async () => Promise.all([lab?.stop(), token?.stop()]));

  it("raw and jws signatures made in the token verify with openssl and verify-signature; the key is never extractable and on no disk", async () => {
    const dir = await tempDir();
    const out = join(dir, "certs");
    const id = "519e70";
    const key = `pkcs11:token=${token.label}?module-path=${token.module}&pin-source=file:${token.pinFile}`;
    const enroll = await enrollCli(lab.url, lab, id, out, ["--key", key], token.env);
    expect(enroll.code, enroll.stderr).toBe(0);
    const [message, sig] = [join(dir, "reading.json"), join(dir, "reading.sig")];
    await writeFile(message, JSON.stringify({ "1700000000000": { "dongle.serial": "11111111111" } }));
    // No --key: the stored key's URI names the token.
    const sign = ["sign", "--device-id", id, "--out", out];
    const raw = await runCli([...sign, "--format", "raw", "--in", message, "--to", sig], { env: token.env });
    expect(raw.code, raw.stderr).toBe(0);
    expect(raw.stderr).toMatch(/with the key of '519e70' in token 'device' .*never extractable/);
    const pub = join(dir, "pub.pem");
    await writeFile(pub, openssl("x509", "-in", join(out, `${id}.crt`), "-noout", "-pubkey"));
    expect(openssl("dgst", "-sha256", "-verify", pub, "-signature", sig, message).trim()).toBe("Verified OK");
    const jws = await runCli([...sign, "--format", "jws", "--in", message], { env: token.env });
    expect(jws.code, jws.stderr).toBe(0);
    const check = await runCli(["verify-signature", "--device-id", id, "--out", out, "--format", "jws"], {
      input: jws.stdout,
    });
    expect(check.code, check.stderr).toBe(0);
    // The key: in the token, sensitive and never extractable; no private key in any file written.
    expect(token.privateKeys(id)[0]).toMatch(/never extractable/);
    for (const name of await readdir(dir, { recursive: true })) {
      const text = await readFile(join(dir, String(name)), "utf8").catch(() => "");
      expect(text, String(name)).not.toMatch(/PRIVATE KEY/);
    }
  });
});
