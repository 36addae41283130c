import { existsSync } from "node:fs";
import { readdir, writeFile } from "node:fs/promises";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { enrollCli, listFiles, snapshot } from "./helpers/enroll.js";
import { startTestLab, tempDir, type TestLab } from "./helpers/lab.js";
import { openssl } from "./helpers/tools.js";

let lab: TestLab;
beforeAll(async () => {
  lab = await startTestLab();
});
afterAll(async () => lab.stop());

/** Enrolls `id` once so that valid credentials exist, then resets it on the platform. */
async function enrolledOnce(id: string): Promise<string> {
  await lab.addDevice(id);
  const out = join(await tempDir(), "certs");
  const run = await enrollCli(lab.url, lab, id, out);
  expect(run.code, run.stderr).toBe(0);
  await lab.resetDevice(id);
  return out;
}

describe("credentials that already exist survive any failed run", () => {
  it("a run refused by the platform (--force, end entity not NEW) leaves them byte for byte", async () => {
    const out = await enrolledOnce("keep-1");
    await enrollCli(lab.url, lab, "keep-1", out, ["--force"]); // consumes the reset: GENERATED again
    const before = await snapshot(out);
    const run = await enrollCli(lab.url, lab, "keep-1", out, ["--force"]);
    expect(run.code).toBe(13);
    expect(await snapshot(out)).toEqual(before);
  });

  for (const fault of ["store:staged", "store:renamed-1", "store:renamed-2", "store:renamed-3"]) {
    it(`a failure in the middle of the write (${fault}) puts every previous file back: exit 15`, async () => {
      const out = await enrolledOnce(`keep-${fault}`);
      const id = `keep-${fault}`;
      const before = await snapshot(out);
      const run = await enrollCli(lab.url, lab, id, out, ["--force"], { CERT_RETRIEVER_TEST_FAULT: fault });
      expect(run.stderr).toMatch(/store failed: writing the credentials in .* failed: injected fault at .*; the previous files are unchanged/);
      expect(run.code).toBe(15);
      expect(await snapshot(out)).toEqual(before);
      expect(openssl("verify", "-CAfile", join(out, "IOTmidCA.crt"), join(out, `${id}.crt`))).toMatch(/: OK/);
    });
  }

  it("a failure in the middle of a first write leaves no file and no directory", async () => {
    await lab.addDevice("first-fault");
    const out = join(await tempDir(), "deep", "certs");
    const run = await enrollCli(lab.url, lab, "first-fault", out, [], { CERT_RETRIEVER_TEST_FAULT: "store:renamed-2" });
    expect(run.code).toBe(15);
    expect(existsSync(join(out, ".."))).toBe(false);
  });

  it("an output directory that already exists keeps its other files", async () => {
    await lab.addDevice("shared-dir");
    const out = await tempDir();
    await writeFile(join(out, "other.txt"), "mine");
    const run = await enrollCli(lab.url, lab, "shared-dir", out, [], { CERT_RETRIEVER_TEST_FAULT: "store:renamed-1" });
    expect(run.code).toBe(15);
    expect(await listFiles(out)).toEqual(["other.txt"]);
  });
});

describe("a lock keeps two runs on one directory apart", () => {
  it("a run while another holds the lock stops with exit 75 and names the holder", async () => {
    const out = await tempDir();
    const holder = spawn(process.execPath, ["-e", "setTimeout(() => {}, 20000)"]);
    try {
      await writeFile(join(out, ".cert-retriever.lock"), `${holder.pid}\n`);
      await lab.addDevice("locked");
      const run = await enrollCli(lab.url, lab, "locked", out);
      expect(run.code).toBe(75);
      expect(run.stderr).toMatch(new RegExp(`another cert-retriever run \\(pid ${holder.pid}\\) is using`));
      expect(await readdir(out)).toEqual([".cert-retriever.lock"]);
    } finally {
      holder.kill();
    }
  });

  it("a lock left by a process that is gone is taken over, and released at the end", async () => {
    const out = await tempDir();
    const gone = spawn(process.execPath, ["-e", "0"]);
    await new Promise((resolve) => gone.on("close", resolve));
    await writeFile(join(out, ".cert-retriever.lock"), `${gone.pid}\n`);
    await lab.addDevice("stale");
    const run = await enrollCli(lab.url, lab, "stale", out);
    expect(run.code, run.stderr).toBe(0);
    expect(await listFiles(out)).toEqual(["IOTmidCA.crt", "stale.crt", "stale.key"]);
  });

  it("two runs at once for one device: one enrolls, the other stops at the lock or finds the credentials", async () => {
    await lab.addDevice("race");
    const out = join(await tempDir(), "certs");
    const runs = await Promise.all([enrollCli(lab.url, lab, "race", out), enrollCli(lab.url, lab, "race", out)]);
    const codes = runs.map((r) => r.code).sort();
    // Whichever came second either saw the lock (75) or, if the first had finished, the valid credentials (0).
    expect(codes[0]).toBe(0);
    expect([0, 75]).toContain(codes[1]);
    expect(await listFiles(out)).toEqual(["IOTmidCA.crt", "race.crt", "race.key"]);
    expect(openssl("verify", "-CAfile", join(out, "IOTmidCA.crt"), join(out, "race.crt"))).toMatch(/: OK/);
  });
});
