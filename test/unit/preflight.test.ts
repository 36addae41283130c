// Pre-flight before any key is made or CSR sent (issue 27, item 1, the clock): a device whose clock
// the platform's Date header shows wrong stops at fetch-ca with nothing requested, so that the run
// after time synchronisation still finds the device's end entity NEW on EJBCA-REST.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runMain } from "../helpers/cli.js";
import { listFiles } from "../helpers/enroll.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";

let lab: TestLab;
beforeAll(async () => {
  lab = await startTestLab();
});
afterAll(async () => lab.stop());

const DAY = 86_400_000;

describe("the clock, checked before the key", () => {
  for (const [what, offset, skew, looks] of [
    ["3 days behind", -3 * DAY, "3 d behind", "not yet valid"],
    ["2 days ahead of", 2 * DAY, "2 d ahead of", "expired"],
  ] as const) {
    it(`a device clock ${what} the platform's: exit 75 at fetch-ca, no key made, no CSR sent; after the clock is set, the same device enrolls`, async () => {
      const id = `clk${offset < 0 ? "b" : "a"}`;
      await lab.addDevice(id);
      const out = join(await tempDir(), "certs");
      const args = ["enroll", "--platform", lab.url, "--device-id", id, "--username", "admin", "--password-stdin"];
      const skewed = await runMain([...args, "--out", out, "--json"], {
        input: `${lab.password}\n`,
        clock: () => new Date(Date.now() + offset),
      });
      expect(skewed.code, skewed.stderr).toBe(75);
      expect(JSON.parse(skewed.stdout).error).toMatchObject({ step: "fetch-ca", reason: "clock-skew" });
      expect(skewed.stderr).toMatch(
        // The CA (made when this run began) or a certificate issued now: either looks so on this clock.
        new RegExp(
          `fetch-ca failed: this device's clock .* is ${skew} the platform's, so .* looks? ${looks} here; no key was made and no certificate requested`,
        ),
      );
      expect(skewed.stderr).toMatch(/hint: wait for time synchronisation/);
      expect(skewed.stderr).not.toMatch(/generate-key|submit-csr:/);
      expect(await listFiles(out)).toEqual([]);
      // Time synchronised: the end entity is still NEW, so the platform signs.
      const synced = await runMain([...args, "--out", out], { input: `${lab.password}\n` });
      expect(synced.code, synced.stderr).toBe(0);
      expect(await listFiles(out)).toEqual(["IOTmidCA.crt", `${id}.crt`, `${id}.key`, `${id}.settings.json`]);
    });
  }

  it("a clock within five minutes of the platform's is no reason to stop (4 min ahead)", async () => {
    await lab.addDevice("clkok");
    const run = await runMain(
      [
        "enroll",
        "--platform",
        lab.url,
        "--device-id",
        "clkok",
        "--username",
        "admin",
        "--password-stdin",
        "--out",
        join(await tempDir(), "certs"),
      ],
      { input: `${lab.password}\n`, clock: () => new Date(Date.now() + 4 * 60_000) },
    );
    expect(run.code, run.stderr).toBe(0);
  });
});
