import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nextContact } from "../../src/flows/contact.js";
import { runMain } from "../helpers/cli.js";
import { type Counted, startCountingProxy } from "../helpers/counting-proxy.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";

// The daily renewal check of a fleet, through a proxy that counts what the platform sees; the
// device's clock is injected, one simulated day after another (the lab's own clock stays real).
const DAY_MS = 86_400_000;
let lab: TestLab;
let proxy: Awaited<ReturnType<typeof startCountingProxy>>;
beforeAll(async () => {
  lab = await startTestLab({ autoRegister: true, api: "x509" });
  proxy = await startCountingProxy(lab.url);
});
afterAll(async () => {
  await proxy?.close();
  await lab?.stop();
});

const LOGIN = () => ({ CERT_RETRIEVER_USERNAME: "admin", CERT_RETRIEVER_PASSWORD: lab.password });

/** Enrolls `id` through the proxy at the clock's `at`; the requests it made are forgotten. */
async function enrolled(id: string, at: Date, extra: string[] = []): Promise<string> {
  const out = join(await tempDir(), "certs");
  const args = ["enroll", "--platform", proxy.url, "--device-id", id, "--out", out, "--username", "admin"];
  const run = await runMain([...args, "--password-stdin", ...extra], { input: `${lab.password}\n`, clock: () => at });
  expect(run.code, run.stderr).toBe(0);
  proxy.seen.length = 0;
  return out;
}

function check(id: string, out: string, at: Date, extra: string[] = []) {
  const args = ["check", "--device-id", id, "--out", out, "--platform", proxy.url, ...extra];
  return runMain(args, { clock: () => at, env: LOGIN() });
}

const logins = (seen: Counted[]) => seen.filter((r) => r.method === "POST" && r.path === "/auth").length;

describe("the daily check's traffic budget (--crl-refresh 7d by default)", () => {
  it("a valid device checking daily for 14 days asks the platform at most 3 times, and the cached CRL answers in between, saying how old it is", async () => {
    const start = new Date();
    const out = await enrolled("b0d9e7a1", start);
    const perDay: number[] = [];
    for (let day = 0; day < 14; day++) {
      // The timer's RandomizedDelaySec=6h: some hours into each day.
      const at = new Date(start.getTime() + day * DAY_MS + ((day * 5) % 6) * 3_600_000);
      const before = proxy.seen.length;
      const run = await check("b0d9e7a1", out, at, ["--json"]);
      expect(run.code, run.stderr).toBe(1); // nothing to do
      perDay.push(proxy.seen.length - before);
      const json = JSON.parse(run.stdout);
      expect(Date.parse(json.nextContact)).toBeGreaterThan(at.getTime());
      if (day >= 2) expect(json).toMatchObject({ revocation: "good", crlFrom: "cache", crlPastNextUpdate: true });
    }
    const contacts = perDay.filter((n) => n > 0);
    // The first check (no contact recorded), then once in each of the device's 7-day slots.
    expect(contacts.length).toBeGreaterThanOrEqual(2);
    expect(contacts.length).toBeLessThanOrEqual(3);
    expect(perDay[0]).toBe(3);
    expect(contacts.every((n) => n === 3)).toBe(true); // POST /auth, GET /x509/v1/ca, GET /x509/v1/ca/crl
    expect(logins(proxy.seen)).toBe(contacts.length);
    const record = JSON.parse(await readFile(join(out, "b0d9e7a1.contact.json"), "utf8"));
    expect(record).toMatchObject({ deviceId: "b0d9e7a1", ca: { etag: expect.stringMatching(/^W\/"/) } });
    expect(JSON.stringify(record)).not.toContain(lab.password);
  });

  it("a contact after the first sends If-None-Match: the lab answers 304 with no body, and the cached CRL is kept and answers", async () => {
    const start = new Date();
    const out = await enrolled("b0d9e7a2", start);
    expect((await check("b0d9e7a2", out, start)).code).toBe(1);
    const crlBefore = await readFile(join(out, "IOTmidCA.crl"), "utf8");
    proxy.seen.length = 0;
    const run = await check("b0d9e7a2", out, new Date(start.getTime() + 3_600_000), ["--online"]);
    expect([run.code, run.stderr]).toEqual([1, expect.stringMatching(/is not revoked, says the cached CRL/)]);
    expect(run.stderr).toMatch(/note: the platform says the cached one is still its latest/);
    const [, ca, crl] = proxy.seen;
    expect([ca?.path, ca?.status, ca?.bodyBytes, ca?.ifNoneMatch]).toEqual([
      "/x509/v1/ca",
      304,
      0,
      expect.stringMatching(/^W\/"/),
    ]);
    expect([crl?.path, crl?.status, crl?.bodyBytes]).toEqual(["/x509/v1/ca/crl", 304, 0]);
    expect(await readFile(join(out, "IOTmidCA.crl"), "utf8")).toBe(crlBefore);
  });

  it("inside the renewal window the device reaches the platform every day (check says enroll, enroll renews)", async () => {
    const start = new Date();
    // A window longer than the lab's 365-day certificates: every certificate is due at once.
    const window = ["--renew-before", "400d"];
    const out = await enrolled("b0d9e7a3", start, window);
    for (let day = 1; day <= 3; day++) {
      const at = new Date(start.getTime() + day * DAY_MS);
      const run = await check("b0d9e7a3", out, at, window);
      expect([run.code, run.stderr]).toEqual([0, expect.stringMatching(/within the renewal window/)]);
      const before = logins(proxy.seen);
      // The unit's enroll, on the lab's (real) clock: a device a day ahead of its platform is refused a certificate.
      const renewal = await runMain(
        ["enroll", "--device-id", "b0d9e7a3", "--out", out, "--platform", proxy.url, "--username", "admin", ...window],
        { env: LOGIN() },
      );
      expect(renewal.code, renewal.stderr).toBe(0);
      expect(logins(proxy.seen)).toBe(before + 1);
    }
  });

  it("a fleet that all asked the platform at one moment spreads its next contacts over the week, each at least half a week later", () => {
    const week = 7 * DAY_MS;
    const last = new Date("2026-03-02T03:00:00Z");
    const perDay = new Array(11).fill(0);
    for (let i = 0; i < 7000; i++) {
      const next = nextContact(`f${i.toString(16).padStart(9, "0")}`, last, week).getTime() - last.getTime();
      expect(next).toBeGreaterThanOrEqual(week / 2);
      expect(next).toBeLessThanOrEqual(1.5 * week);
      perDay[Math.floor(next / DAY_MS)]++;
    }
    // Half a week to a week and a half after, about a thousand a day: no day takes more than a fair share.
    expect(perDay.slice(0, 3)).toEqual([0, 0, 0]);
    for (const n of perDay) expect(n).toBeLessThan(1300);
  });
});
