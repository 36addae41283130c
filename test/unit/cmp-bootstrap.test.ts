import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.js";
import { listFiles } from "../helpers/enroll.js";
import {
  type BootstrapPki,
  type CmpPki,
  type MockCmp,
  makeBootstrapPki,
  makeCmpPki,
  startMockCmp,
} from "../helpers/openssl-cmp.js";
import { haveTool, openssl } from "../helpers/tools.js";

/**
 * A CMP first enrollment signed by a bootstrap certificate (a manufacturer's IDevID, RFC 9483 §4.1.1)
 * instead of a shared secret, against OpenSSL's mock server, which checks the signature against the
 * manufacturer's root it is given (-srv_trusted) and signs its answers with a certificate of the CA.
 */
describe.runIf(haveTool("openssl"))(
  "CMP first enrollment signed by a bootstrap certificate (openssl cmp's mock)",
  () => {
    let pki: CmpPki;
    let boot: BootstrapPki;
    let server: MockCmp | undefined;
    let n = 0;
    beforeAll(async () => {
      pki = await makeCmpPki();
      boot = await makeBootstrapPki(pki.dir);
    });
    afterEach(async () => {
      await server?.stop();
      server = undefined;
    });

    const enroll = async (cert: string, key: string) => {
      // No -srv_untrusted: the intermediate CA reaches the server only in our extraCerts.
      server = await startMockCmp([
        ...["-srv_cert", pki.raCert, "-srv_key", pki.raKey, "-srv_trusted", boot.rootCert],
        ...["-rsp_cert", pki.deviceCert, "-rsp_capubs", pki.caCert],
      ]);
      const out = join(pki.dir, `boot-${++n}`);
      const run = await runCli([
        ...["enroll", "--api", "cmp", "--platform", server.url, "--device-id", "dev1"],
        ...[
          "--client-cert",
          cert,
          "--client-key",
          key,
          "--key",
          pki.deviceKey,
          "--platform-ca",
          pki.caCert,
          "--out",
          out,
        ],
      ]);
      return { ...run, out };
    };

    it("an RSA IDevID with its intermediate CA: ir and certConf signed by it (no secret asked), the certificate stored", async () => {
      const run = await enroll(boot.chainCert, boot.rsaKey);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toContain("signed, by the bootstrap certificate's key");
      expect(openssl("verify", "-CAfile", pki.caCert, join(run.out, "dev1.crt"))).toContain(": OK");
      // ir and certConf, both verified by the server against the manufacturer's root.
      expect(server!.log().match(/Received request/g)).toHaveLength(2);
      expect(server!.log()).not.toMatch(/error/i);
    });

    it("an IDevID from a CA the server does not trust: OpenSSL 3.0 answers badRequest (no suitable sender cert), exit 13 with the hint, nothing written", async () => {
      const run = await enroll(boot.strangerCert, boot.strangerKey);
      expect(run.code, run.stderr).toBe(13);
      expect(run.stderr).toMatch(
        /submit-csr failed: the CMP server refused the request: rejection \(badRequest\): no suitable sender cert/,
      );
      expect(run.stderr).toContain(
        "hint: the CMP server rejected the request signed by the bootstrap certificate (--client-cert)",
      );
      expect(server!.log()).toContain("unable to get local issuer certificate");
      expect(await listFiles(run.out)).toEqual([]);
    });
  },
);
