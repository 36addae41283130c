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

  const mock = async (extra: string[] = []) => {
    server = await startMockCmp([
      "-srv_ref",
      "device-ref",
      "-srv_secret",
      `pass:${SECRET}`,
      "-rsp_cert",
      pki.deviceCert,
      "-rsp_capubs",
      pki.caCert,
      ...extra,
    ]);
    return server;
  };
  const enroll = (url: string, extra: string[], secretFile = "secret") => {
    const out = join(pki.dir, `out-${++n}`);
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
      "--platform-ca",
      pki.caCert,
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
    // The server saw the confirmation, polled once: genm, ir, pollReq, certConf.
    expect(srv.log().match(/Received request/g)).toHaveLength(4);
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
});
