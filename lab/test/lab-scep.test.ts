import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { toPem } from "cert-retriever";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SECRETS } from "../../test/helpers/cli.js";
import { startTestLab, type TestLab, tempDir } from "../../test/helpers/lab.js";
import { haveTool, openssl } from "../../test/helpers/tools.js";

/**
 * The lab's SCEP server (`/scep`, answering as micromdm's scepserver 2.1.0 does) held to an
 * independent client: micromdm's own `scepclient` (Debian's `scep`), with the challenge right and
 * wrong.
 */

const CHALLENGE = "lab-scep-challenge-0815";
SECRETS.add(CHALLENGE);

/** `scepclient` against the lab: its exit code, its output, and where it put the certificate. */
async function scepclient(lab: TestLab, challenge: string): Promise<{ code: number; output: string; cert: string }> {
  const dir = await tempDir("cr-scepclient-");
  const cert = join(dir, "client.pem");
  const args = ["-server-url", `${lab.url}/scep`, "-private-key", join(dir, "client.key"), "-certificate", cert];
  try {
    const { stdout, stderr } = await promisify(execFile)(
      "scepclient",
      [...args, "-challenge", challenge, "-cn", "scep-device"],
      {
        timeout: 20_000,
      },
    );
    return { code: 0, output: stdout + stderr, cert };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, output: `${e.stdout ?? ""}${e.stderr ?? ""}`, cert };
  }
}

describe.runIf(haveTool("scepclient"))("the lab's SCEP server, with micromdm's scepclient", () => {
  let lab: TestLab;
  let caFile: string;
  beforeAll(async () => {
    lab = await startTestLab({ scep: { challenge: CHALLENGE } });
    caFile = join(await tempDir("cr-scep-ca-"), "ca.pem");
    await writeFile(caFile, toPem(lab.ca.cert.rawData, "CERTIFICATE"));
  });
  afterAll(async () => lab?.stop());

  it("enrolls with the challenge password: a certificate for its key and CN, issued by the lab's CA, clientAuth as micromdm issues", async () => {
    const run = await scepclient(lab, CHALLENGE);
    expect(run.code, run.output).toBe(0);
    expect(run.output).toContain("pkiStatus=SUCCESS");
    expect(openssl("verify", "-CAfile", caFile, run.cert)).toContain(": OK");
    const text = openssl("x509", "-in", run.cert, "-noout", "-text");
    expect(text).toContain("CN = scep-device");
    expect(text).toContain("TLS Web Client Authentication");
  });

  it("a wrong challenge password: the lab answers FAILURE (badRequest), and scepclient gets no certificate", async () => {
    const run = await scepclient(lab, "not-the-lab-challenge");
    expect(run.code).not.toBe(0);
    expect(run.output).toContain("PKCSReq (19) request failed, failInfo: badRequest (2)");
  });
});
