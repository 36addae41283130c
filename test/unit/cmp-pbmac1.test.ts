import { writeFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AsnConvert } from "@peculiar/asn1-schema";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PBKDF2Params, PBMAC1Params } from "../../src/protocols/cmp/asn1.js";
import { macProtector, newTransaction, protectedRequest, readAnswer } from "../../src/protocols/cmp/messages.js";
import { newPbmac1Algorithm, passwordBasedMac } from "../../src/protocols/cmp/protection.js";
import { caCertsBody } from "../../src/protocols/cmp/requests.js";
import { runCli, SECRETS } from "../helpers/cli.js";
import { listFiles } from "../helpers/enroll.js";
import { type CmpPki, type MockCmp, makeCmpPki, startMockCmp } from "../helpers/openssl-cmp.js";
import { haveTool, openssl } from "../helpers/tools.js";

/** PBMAC1 (RFC 9481 §6.1.1, RFC 8018 §7.1): PBKDF2 then HMAC, checked against OpenSSL's own PBKDF2 and HMAC. */
const SECRET = "pbmac1-secret-Zq9";
SECRETS.add(SECRET);

describe.runIf(haveTool("openssl"))("CMP protection by PBMAC1", () => {
  it("the MAC is OpenSSL's PBKDF2 (HMAC-SHA-256, the salt and iterations sent) then its HMAC-SHA-256", () => {
    const alg = newPbmac1Algorithm();
    const params = AsnConvert.parse(alg.parameters!, PBMAC1Params);
    const kdf = AsnConvert.parse(params.keyDerivationFunc.parameters!, PBKDF2Params);
    expect([alg.algorithm, params.keyDerivationFunc.algorithm, kdf.iterationCount, kdf.keyLength]).toEqual([
      "1.2.840.113549.1.5.14",
      "1.2.840.113549.1.5.12",
      10_000,
      32,
    ]);
    const salt = Buffer.from(kdf.salt.buffer).toString("hex");
    const key = openssl(
      "kdf",
      ...["-keylen", "32", "-kdfopt", "digest:SHA256", "-kdfopt", `pass:${SECRET}`, "-kdfopt", `hexsalt:${salt}`],
      ...["-kdfopt", "iter:10000", "PBKDF2"],
    )
      .trim()
      .replace(/:/g, "");
    const data = Buffer.from("the protected part");
    const file = join(tmpdir(), `cr-pbmac1-${process.pid}`);
    writeFileSync(file, data);
    const hmac = openssl("mac", "-digest", "SHA256", "-macopt", `hexkey:${key}`, "-in", file, "HMAC");
    expect(passwordBasedMac(alg, SECRET, data).toString("hex").toUpperCase()).toBe(hmac.trim());
  });

  it("an answer protected by PBMAC1 verifies with the secret, and not with another", async () => {
    const { der } = await protectedRequest(
      caCertsBody(),
      newTransaction(),
      macProtector({ reference: "r", secret: SECRET }, "pbmac1"),
    );
    expect(readAnswer(der, { secret: SECRET }).protection).toBe("verified");
    expect(readAnswer(der, { secret: "another" })).toMatchObject({ protection: "mismatch", kind: "mac" });
  });

  describe("--cmp-mac pbmac1 against OpenSSL 3.0's mock server, which knows only PasswordBasedMac", () => {
    let pki: CmpPki;
    let server: MockCmp;
    beforeAll(async () => {
      pki = await makeCmpPki();
      await writeFile(join(pki.dir, "secret"), `${SECRET}\n`, { mode: 0o600 });
      server = await startMockCmp(["-srv_ref", "ref", "-srv_secret", `pass:${SECRET}`, "-rsp_cert", pki.deviceCert]);
    });
    afterAll(async () => server?.stop());

    it("sends PBMAC1: the mock takes it for a signature it has no trust anchor for, and refuses; exit 13, nothing written", async () => {
      const out = join(pki.dir, "out");
      const run = await runCli([
        ...["enroll", "--api", "cmp", "--platform", server.url, "--device-id", "dev1", "--username", "ref"],
        ...["--password-file", join(pki.dir, "secret"), "--platform-ca", pki.caCert, "--key", pki.deviceKey],
        ...["--cmp-mac", "pbmac1", "--out", out],
      ]);
      expect(run.code, run.stderr).toBe(13);
      expect(run.stderr).toContain("refused the request: rejection (badRequest): missing trust anchor");
      expect(server.log()).toContain("error validating protection");
      expect(await listFiles(out)).toEqual([]);
    });
  });
});
