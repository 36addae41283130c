import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { runCli, SECRETS } from "../helpers/cli.js";
import { listFiles } from "../helpers/enroll.js";
import { type CmpPki, type MockCmp, makeCmpPki, startMockCmp } from "../helpers/openssl-cmp.js";
import { haveTool, openssl } from "../helpers/tools.js";

/**
 * cert-retriever as a CMP client (RFC 9483) against OpenSSL's own CMP mock server
 * (`openssl cmp -port`), which answers with a certificate prepared for a prepared key: the device
 * enrolls with that key (--key FILE), its messages protected by a shared secret (PasswordBasedMac).
 */

const SECRET = "cmp-shared-secret-7Q";
SECRETS.add(SECRET);

describe.runIf(haveTool("openssl"))("CMP against openssl cmp's mock server", () => {
  let pki: CmpPki;
  let server: MockCmp | undefined;
  let n = 0;
  beforeAll(async () => {
    pki = await makeCmpPki();
    await writeFile(join(pki.dir, "secret"), `${SECRET}\n`, { mode: 0o600 });
    await writeFile(join(pki.dir, "wrong"), "not-the-secret-3x\n", { mode: 0o600 });
  });
  afterEach(async () => {
    await server?.stop();
    server = undefined;
  });

  const mock = async (
    extra: string[] = [],
    protection = ["-srv_ref", "device-ref", "-srv_secret", `pass:${SECRET}`],
  ) => {
    server = await startMockCmp([...protection, "-rsp_cert", pki.deviceCert, "-rsp_capubs", pki.caCert, ...extra]);
    return server;
  };
  /** A mock that signs its answers with `cert` and takes requests signed under the CA. */
  const signingMock = (cert: string, key: string) =>
    mock([], ["-srv_cert", cert, "-srv_key", key, "-srv_trusted", pki.caCert]);
  const enroll = (
    url: string,
    extra: string[],
    secretFile = "secret",
    out = join(pki.dir, `out-${++n}`),
    trust = ["--platform-ca", pki.caCert],
  ) => {
    const run = runCli([
      "enroll",
      "--api",
      "cmp",
      "--platform",
      url,
      "--device-id",
      "dev1",
      "--username",
      "device-ref",
      "--password-file",
      join(pki.dir, secretFile),
      ...trust,
      "--out",
      out,
      ...extra,
    ]);
    return run.then((r) => ({ ...r, out }));
  };

  it("ir with the existing key (--key FILE), polled while the server says waiting, confirmed: the files verify with openssl", async () => {
    const srv = await mock(["-poll_count", "1", "-check_after", "1"]);
    const run = await enroll(srv.url, ["--key", pki.deviceKey]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/generate-key: ec-p256 key read from .*dev\.key \(not generated\)/);
    const cert = join(run.out, "dev1.crt");
    expect(openssl("verify", "-CAfile", pki.caCert, cert)).toContain(": OK");
    expect(openssl("pkey", "-in", join(run.out, "dev1.key"), "-pubout")).toBe(
      openssl("pkey", "-in", pki.deviceKey, "-pubout"),
    );
    expect(await readFile(cert, "utf8")).toBe(await readFile(pki.deviceCert, "utf8"));
    // The server saw the confirmation, polled once: ir, pollReq, certConf (the CA was given: no genm).
    expect(srv.log().match(/Received request/g)).toHaveLength(3);
  });

  it("p10cr (--cmp-request p10cr), --json: the certificate's serial and issuer", async () => {
    const srv = await mock();
    const run = await enroll(srv.url, ["--key", pki.deviceKey, "--cmp-request", "p10cr", "--json"]);
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout);
    expect(result.status).toBe("enrolled");
    expect(result.issuer).toContain("CMP Test CA");
  });

  it("a wrong secret: the server's refusal does not verify either; exit 10 with the hint, nothing written", async () => {
    const srv = await mock();
    const run = await enroll(srv.url, ["--key", pki.deviceKey], "wrong");
    expect(run.code).toBe(10);
    expect(run.stderr).toMatch(/badRequest.*wrong pbm value.*does not verify with the shared secret/);
    expect(run.stderr).toContain("hint: check the shared secret (--password-file) and its reference (--username)");
    expect(await listFiles(run.out)).toEqual([]);
  });

  it("a certificate for another key: rejected by certConf, exit 14, nothing written", async () => {
    const srv = await mock();
    const run = await enroll(srv.url, []);
    expect(run.code).toBe(14);
    expect(run.stderr).toContain("is not for this device's key; it was rejected (certConf) and nothing was written");
    expect(srv.log()).toContain("certificate rejected by client");
    expect(run.stderr).toContain("hint: the CMP server issued a certificate this device does not take");
    expect(await listFiles(run.out)).toEqual([]);
  });

  it("a server still waiting when the deadline comes: exit 75 with the hint, nothing written", async () => {
    const srv = await mock(["-poll_count", "5", "-check_after", "60"]);
    const run = await enroll(srv.url, ["--key", pki.deviceKey, "--deadline", "20s"]);
    expect(run.code).toBe(75);
    expect(run.stderr).toContain("the CMP server has not yet issued the certificate");
    expect(run.stderr).toContain("run with a longer --deadline");
    expect(await listFiles(run.out)).toEqual([]);
  });

  it("a --key file that holds no private key: exit 3 before any request, nothing written", async () => {
    const srv = await mock();
    const run = await enroll(srv.url, ["--key", pki.caCert]);
    expect(run.code).toBe(3);
    expect(run.stderr).toMatch(/the key file .*ca\.crt could not be read as a PEM private key/);
    expect(srv.log()).not.toContain("Received request");
    expect(await listFiles(run.out)).toEqual([]);
  });

  it("only a pin: genm asks for the CA certificates; OpenSSL 3.0's mock sends none, so exit 11 with the hint, nothing written", async () => {
    const srv = await mock();
    const pin = openssl("x509", "-in", pki.caCert, "-noout", "-fingerprint", "-sha256").split("=")[1]!.trim();
    const run = await enroll(srv.url, ["--key", pki.deviceKey], "secret", undefined, ["--ca-fingerprint", pin]);
    expect(run.code).toBe(11);
    expect(run.stderr).toContain("the CMP server sent none when asked (genm, RFC 9483 §4.3.1)");
    expect(run.stderr).toContain("hint: the CMP server does not send its CA certificates: pass --platform-ca FILE");
    expect(srv.log().match(/Received request/g)).toHaveLength(1);
    expect(await listFiles(run.out)).toEqual([]);
  });

  describe("renewal: kur signed by the current certificate, no secret read", () => {
    let out: string;
    beforeAll(async () => {
      out = join(pki.dir, "renewing");
      const srv = await mock();
      expect((await enroll(srv.url, ["--key", pki.deviceKey], "secret", out)).code).toBe(0);
      await srv.stop();
    });

    it("the answer signed by a certificate the stored CA issued: kup verified, certConf, stored again", async () => {
      const srv = await signingMock(pki.raCert, pki.raKey);
      // OpenSSL's mock answers a kur only with the certificate it names (-rsp_cert): the same key.
      const run = await enroll(srv.url, ["--key", pki.deviceKey, "--renew-before", "400d"], "no-such-file", out, []);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toContain("within the renewal window");
      expect(run.stderr).toContain("the names of the certificate it renews");
      // kur, certConf: both signed (the mock has no secret, and -srv_trusted checks them).
      expect(srv.log().match(/Received request/g)).toHaveLength(2);
      expect(srv.log()).not.toMatch(/error/i);
    });

    it("the answer signed by a stranger's key (OpenSSL then sends no certificate for it): not trusted, exit 13, the stored credentials kept", async () => {
      const before = await readFile(join(out, "dev1.crt"), "utf8");
      const srv = await signingMock(pki.strangerCert, pki.strangerKey);
      const run = await enroll(srv.url, ["--key", pki.deviceKey, "--renew-before", "400d"], "no-such-file", out, []);
      expect(run.code).toBe(13);
      expect(run.stderr).toContain("is signed (1.2.840.10045.4.3.2), but not with a certificate it sends");
      expect(await readFile(join(out, "dev1.crt"), "utf8")).toBe(before);
    });
  });
});
