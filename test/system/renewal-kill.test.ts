import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliRun, runCli } from "../helpers/cli.js";
import { haveFaketime, type LabProcess, type SharedClock, sharedClock, startLabProcess } from "../helpers/clock.js";
import { snapshot } from "../helpers/enroll.js";
import { tempDir } from "../helpers/lab.js";
import { openssl } from "../helpers/tools.js";

/**
 * Renewal as a device lives it: a lab platform issuing one-hour certificates, the device and the
 * platform on one clock that the test moves (libfaketime), the renewal window at its default (a
 * third of the lifetime left: from 40 minutes on).
 */

const hasFaketime = haveFaketime();

describe.skipIf(!hasFaketime)(
  "renewal on a moving clock (x509-identity-mgmt v0.7 lab, one-hour certificates)",
  () => {
    let clock: SharedClock;
    let lab: LabProcess;
    beforeAll(async () => {
      clock = await sharedClock();
      lab = await startLabProcess(["--api", "x509", "--cert-lifetime", "1h", "--force-crl-renew"], clock.env);
    });
    afterAll(async () => lab?.stop());

    /** `cert-retriever enroll` for device `id` into `out` on the shared clock, the platform settings in its environment. */
    const enroll = async (id: string, out: string, args: string[] = [], fault?: string): Promise<CliRun> => {
      const pw = join(out, "..", "password");
      await writeFile(pw, lab.password, { mode: 0o600 });
      return runCli(["enroll", "--non-interactive", ...args, "--device-id", id, "--out", out], {
        env: {
          ...clock.env,
          CERT_RETRIEVER_PLATFORM: lab.url,
          CERT_RETRIEVER_USERNAME: "admin",
          CERT_RETRIEVER_PASSWORD_FILE: pw,
        },
        timeoutMs: 60_000,
        fault,
      });
    };

    /** Each boundary of a renewal, and whose credentials the next run must find: before the commit mark the old ones, from it on the new. */
    const points: Array<[string, "old" | "new"]> = [
      ["after-authenticate", "old"],
      ["after-fetch-ca", "old"],
      ["after-generate-key", "old"],
      ["after-build-csr", "old"],
      ["after-submit-csr", "old"],
      ["after-validate", "old"],
      ["after-bind", "old"],
      ["store:staged", "old"],
      ["store:committed", "new"],
      ["store:renamed-1", "new"],
      ["store:renamed-2", "new"],
      ["store:renamed-3", "new"],
      ["after-store", "new"],
    ];

    // One device per row, each on its own stretch of the shared clock: enrolled at +90i min, renewed 45 min later.
    it.each(points.map(([point, whose], i) => ({ point, whose, i })))(
      "kill -9 at $point of a renewal: the next run finds the $whose credentials, whole",
      async ({ point, whose, i }) => {
        const id = `dead${i.toString(16).padStart(2, "0")}`; // dojot device ids are hex
        await runCli(["lab", "device", "add", "--dir", lab.dir, id]);
        const out = join(await tempDir("cr-renew-kill-"), "certs");
        await clock.set(`+${i * 90}m`);
        const first = await enroll(id, out);
        expect(first.code, first.stderr).toBe(0);
        const old = await snapshot(out);
        await clock.set(`+${i * 90 + 45}m`);
        const killed = await enroll(id, out, [], `kill:${point}`);
        expect(killed.code, killed.stderr).toBe(null); // SIGKILL
        // The next run settles what the killed one left (finishes or undoes the write); it changes nothing more.
        const settle = await enroll(id, out, ["--renew-before", "0s"]);
        expect(settle.code, settle.stderr).toBe(0);
        const now = await snapshot(out);
        const [key, cert] = [join(out, `${id}.key`), join(out, `${id}.crt`)];
        expect(openssl("pkey", "-in", key, "-pubout")).toBe(openssl("x509", "-in", cert, "-noout", "-pubkey"));
        const same = now[`${id}.crt`] === old[`${id}.crt`] && now[`${id}.key`] === old[`${id}.key`];
        expect(same ? "old" : "new").toBe(whose);
        expect(
          Object.keys(now)
            .filter((n) => !/\.(crl|pending)$/.test(n))
            .sort(),
        ).toEqual(["IOTmidCA.crt", `${id}.crt`, `${id}.key`, `${id}.settings.json`]);
      },
    );
  },
  300_000,
);
