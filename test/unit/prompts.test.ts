import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runAtTerminal } from "../helpers/cli.js";
import { listFiles } from "../helpers/enroll.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";

let lab: TestLab;
beforeAll(async () => {
  lab = await startTestLab({ autoRegister: true });
});
afterAll(async () => lab.stop());

/** The part of `text` after the last match of `marker`. */
function textAfter(text: string, marker: string): string {
  return text.slice(text.lastIndexOf(marker) + marker.length);
}

describe("prompts ask again for a value they cannot use", () => {
  it("Enter at the URL prompt, a bare host name and a bad device id are each explained and asked for again; then the run enrolls", async () => {
    const out = join(await tempDir(), "certs");
    const run = runAtTerminal(["enroll", "--out", out]);
    await run.waitFor(/Platform URL/);
    run.enter("");
    let shown = await run.waitFor(/try again \(2 of 3\)[\s\S]*Platform URL/);
    expect(shown).toMatch(
      /cert-retriever: the platform URL is required\n {2}type the platform's address: https:\/\/HOST/,
    );
    run.enter("dojot.example.com");
    shown = await run.waitFor(/try again \(3 of 3\)[\s\S]*Platform URL/);
    expect(shown).toMatch(/the platform URL 'dojot\.example\.com' is not a URL/);
    run.enter(lab.url);
    await run.waitFor(/Device id/);
    run.enter("bench/9");
    shown = await run.waitFor(/Device id[\s\S]*try again \(2 of 3\)[\s\S]*Device id/);
    const explained = textAfter(shown, "Platform URL");
    expect(explained).toMatch(/the device id "bench\/9" is not usable: it must be 1 to 200 bytes/);
    // In the prompt's terms: no flag to pass, no variable to set.
    expect(explained).not.toMatch(/--device-id|CERT_RETRIEVER_/);
    run.enter("bench-9");
    await run.waitFor(/Platform user/);
    run.enter("");
    await run.waitFor(/Password for admin/);
    run.enter(lab.password);
    const done = await run.done;
    expect(done.code, done.stderr).toBe(0);
    expect(await listFiles(out)).toEqual(["IOTmidCA.crt", "bench-9.crt", "bench-9.key", "bench-9.settings.json"]);
  });

  it("the protocol's rule for device ids is explained at the prompt; Ctrl-C there still ends the run (exit 130)", async () => {
    const out = join(await tempDir(), "certs");
    const run = runAtTerminal(["enroll", "--platform", lab.url, "--api", "x509-identity-mgmt", "--out", out]);
    await run.waitFor(/Device id/);
    run.enter("bench_9!");
    const shown = await run.waitFor(/try again \(2 of 3\)[\s\S]*Device id/);
    expect(shown).toMatch(/the device id 'bench_9!' suits no x509-identity-mgmt release/);
    expect(shown).not.toMatch(/--device-id/);
    run.enter("\u0003");
    const done = await run.done;
    expect(done.code).toBe(130);
    expect(existsSync(out)).toBe(false);
  });

  it("a user left empty is explained and asked for again", async () => {
    const out = join(await tempDir(), "certs");
    const run = runAtTerminal(["enroll", "--platform", lab.url, "--device-id", "user-again", "--out", out]);
    await run.waitFor(/Platform user/);
    run.enter("   ");
    await run.waitFor(/a platform user is required\n {2}try again \(2 of 3\)[\s\S]*Platform user/);
    run.enter("admin");
    await run.waitFor(/Password for admin/);
    run.enter(lab.password);
    const done = await run.done;
    expect(done.code, done.stderr).toBe(0);
  });

  it("three values it cannot use end the run with the usage error: exit 2, nothing written", async () => {
    const out = join(await tempDir(), "certs");
    const run = runAtTerminal(["enroll", "--platform", lab.url, "--out", out]);
    for (const [i, id] of ["a/b", "..", ""].entries()) {
      await run.waitFor(i === 0 ? /Device id/ : new RegExp(`try again \\(${i + 1} of 3\\)[\\s\\S]*Device id`));
      run.enter(id);
    }
    const done = await run.done;
    expect(done.code).toBe(2);
    expect(done.stderr).not.toMatch(/4 of 3/);
    expect(textAfter(done.stderr, "(3 of 3)")).toMatch(/cert-retriever: a device id is required/);
    expect(existsSync(out)).toBe(false);
  });
});
