import { mkdir, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { softwareCrypto } from "../../src/keys/provider.js";
import * as x509 from "../../src/keys/x509.js";
import { runCli } from "../helpers/cli.js";
import { haveFaketime, type LabProcess, type SharedClock, sharedClock, startLabProcess } from "../helpers/clock.js";
import { closedPort, tempDir } from "../helpers/lab.js";
import { issueLeaf, makeCa } from "../helpers/pki.js";
import { openssl } from "../helpers/tools.js";

/**
 * Renewal as a device lives it: a lab platform issuing one-hour certificates, the device and the
 * platform on one clock that the test moves (libfaketime), the renewal window at its default (a
 * third of the lifetime left: from 40 minutes on).
 */

const hasFaketime = haveFaketime();
const DEVICE = "a1b2c3";

/** A device's directory, and the environment that points cert-retriever at `lab` and at the directory (plus `extra`). */
async function deviceOn(lab: LabProcess, prefix: string, extra: Record<string, string> = {}) {
  const out = join(await tempDir(prefix), "certs");
  const pw = join(out, "..", "password");
  await writeFile(pw, lab.password, { mode: 0o600 });
  return {
    out,
    env: {
      ...extra,
      CERT_RETRIEVER_PLATFORM: lab.url,
      CERT_RETRIEVER_USERNAME: "admin",
      CERT_RETRIEVER_PASSWORD_FILE: pw,
      CERT_RETRIEVER_DEVICE_ID: DEVICE,
      CERT_RETRIEVER_OUT: out,
    },
  };
}

describe.skipIf(!hasFaketime)(
  "revocation on a platform with dojot's default CRL schedule (a new CRL every 24 h)",
  () => {
    let clock: SharedClock;
    let lab: LabProcess;
    beforeAll(async () => {
      clock = await sharedClock();
      lab = await startLabProcess(["--api", "x509", "--cert-lifetime", "7d"], clock.env);
      await runCli(["lab", "device", "add", "--dir", lab.dir, DEVICE]);
    });
    afterAll(async () => lab?.stop());

    it("check learns of a revocation with the platform's next CRL, not before", async () => {
      const { out, env } = await deviceOn(lab, "cr-crl24-", clock.env);
      await clock.set("+0");
      expect((await runCli(["enroll", "--non-interactive"], { env })).code).toBe(0);
      const fp = openssl("x509", "-in", join(out, `${DEVICE}.crt`), "-noout", "-fingerprint", "-sha256")
        .trim()
        .split("=")[1]!;
      const auth = await fetch(`${lab.url}/auth`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ username: "admin", passwd: lab.password }),
      });
      const { jwt } = (await auth.json()) as { jwt: string };
      expect(
        (
          await fetch(`${lab.url}/x509/v1/certificates/${fp}`, {
            method: "DELETE",
            headers: { authorization: `Bearer ${jwt}` },
          })
        ).status,
      ).toBe(204);
      const notYet = await runCli(["check", "--crl-refresh", "0s"], { env });
      expect([notYet.code, notYet.stderr]).toEqual([
        1,
        expect.stringMatching(/is not revoked, says the CRL just fetched/),
      ]);
      // Ten minutes before the CRL's next update, EJBCA's CRL updater makes the next one.
      await clock.set("+1431m"); // 23 h 51 min
      const revoked = await runCli(["check", "--crl-refresh", "0s"], { env });
      expect([revoked.code, revoked.stderr]).toEqual([
        0,
        expect.stringMatching(/enrollment needed: certificate \w+ was revoked at/),
      ]);
    });
  },
  120_000,
);

describe("revocation from the certificate's own CRL distribution point (--revocation distribution-points)", () => {
  it("check fetches the CRL the certificate names, checks its signature, and says revoked (0), good (1) or why it cannot tell (1)", async () => {
    const ca = await makeCa("DP Test CA");
    const impostor = await makeCa("DP Test CA"); // the same name, another key
    let served: { body: Buffer; status: number } = { body: Buffer.alloc(0), status: 404 };
    const server = createServer((_req, res) =>
      res.writeHead(served.status, { "content-type": "application/pkix-crl" }).end(served.body),
    );
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    try {
      const leaf = await issueLeaf(ca, "dp1", [], "client", [
        new x509.CRLDistributionPointsExtension([`http://127.0.0.1:${port}/ca.crl`]),
      ]);
      const out = join(await tempDir("cr-dp-"), "certs");
      await mkdir(out, { mode: 0o700 });
      await writeFile(join(out, "dp1.key"), leaf.key, { mode: 0o600 });
      await writeFile(join(out, "dp1.crt"), leaf.cert);
      await writeFile(join(out, "IOTmidCA.crt"), ca.pem);
      const serial = new x509.X509Certificate(leaf.cert).serialNumber;
      const crl = async (signer: typeof ca, revoked: string[], nextUpdate = new Date(Date.now() + 3_600_000)) =>
        Buffer.from(
          (
            await x509.X509CrlGenerator.create(
              {
                issuer: signer.cert.subjectName,
                thisUpdate: new Date(Date.now() - 7_200_000),
                nextUpdate,
                entries: revoked.map((serialNumber) => ({ serialNumber, revocationDate: new Date() })),
                signingKey: signer.keys.privateKey,
                signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
              },
              softwareCrypto(),
            )
          ).rawData,
        );
      const check = (...extra: string[]) =>
        runCli([
          "check",
          "--device-id",
          "dp1",
          "--out",
          out,
          "--revocation",
          "distribution-points",
          "--crl-refresh",
          "0s",
          ...extra,
        ]);

      served = { body: await crl(ca, []), status: 200 };
      const good = await check();
      expect([good.code, good.stderr]).toEqual([1, expect.stringMatching(/is not revoked, says the CRL just fetched/)]);
      served = { body: await crl(impostor, [serial]), status: 200 };
      const forged = await check("--json");
      expect([forged.code, JSON.parse(forged.stdout).revocation]).toEqual([1, "good"]); // the forged CRL is refused; the cached good one answers
      expect(forged.stderr).toMatch(
        /note: the CRL could not be fetched or is not good \(its signature does not verify with the stored CA's key\)/,
      );
      served = { body: await crl(ca, [serial]), status: 200 };
      const revoked = await check();
      expect([revoked.code, revoked.stderr]).toEqual([
        0,
        expect.stringMatching(/enrollment needed: certificate \w+ was revoked at/),
      ]);
      await rm(join(out, "IOTmidCA.crl"));
      served = { body: Buffer.alloc(0), status: 404 };
      const missing = await check();
      expect([missing.code, missing.stderr]).toEqual([
        1,
        expect.stringMatching(/revocation could not be checked: .*answered HTTP 404/),
      ]);
      // A listing in a CRL past its next update still counts, for check and for enroll alike (else the unit would start daily for nothing).
      served = { body: await crl(ca, [serial], new Date(Date.now() - 3_600_000)), status: 200 };
      const stale = await check();
      expect([stale.code, stale.stderr]).toEqual([0, expect.stringMatching(/was revoked at/)]);
      const enroll = await runCli(
        [
          "enroll",
          "--device-id",
          "dp1",
          "--out",
          out,
          "--platform",
          `http://127.0.0.1:${await closedPort()}`,
          "--username",
          "u",
          "--password-stdin",
          "--retries",
          "0",
          "--non-interactive",
        ],
        { input: "pw" },
      );
      expect([enroll.code, enroll.stderr]).toEqual([
        75,
        expect.stringMatching(/existing credentials will be replaced: certificate \w+ was revoked at/),
      ]);
      await rm(join(out, "IOTmidCA.crl"));
      // Without the mode, nothing is fetched from where the certificate points.
      const quiet = await runCli(["check", "--device-id", "dp1", "--out", out]);
      expect([quiet.code, quiet.stderr]).toEqual([
        1,
        expect.stringMatching(/revocation could not be checked: no CRL has been fetched yet/),
      ]);
    } finally {
      server.close();
    }
  });
});
