// Remembered device settings (issue 27, item 3): a successful enroll records the non-secret settings
// it used beside the credentials, and check, renewal, verify and export take them, so that
// --device-id and --out suffice; a flag overrides and the difference is said; a damaged record, or
// one of another version, is said and not used; one that others could write is refused.
import { chmod, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.js";
import { enrollCli, listFiles } from "../helpers/enroll.js";
import { DEVICE, device, type EstLab, enrollEst, estLab } from "../helpers/est-lab.js";
import { startTestLab, tempDir } from "../helpers/lab.js";

let lab: EstLab;
beforeAll(async () => {
  lab = await estLab();
});
afterAll(async () => lab?.stop());

const recordOf = (out: string) => join(out, `${DEVICE}.settings.json`);

async function enrolled(): Promise<string> {
  const { out, pw } = await device(lab);
  const run = await enrollEst(lab, out, ["--username", "admin", "--password-file", pw, "--ca-fingerprint", lab.pin]);
  expect(run.code, run.stderr).toBe(0);
  return out;
}

const check = (out: string, more: string[] = []) =>
  runCli(["check", "--device-id", DEVICE, "--out", out, "--renew-before", "400d", ...more]);

describe("the settings recorded at enrollment", () => {
  it("hold the platform and the API that answered, nothing secret, mode 0600", async () => {
    const out = await enrolled();
    const text = await readFile(recordOf(out), "utf8");
    expect((await stat(recordOf(out))).mode & 0o777).toBe(0o600);
    const record = JSON.parse(text);
    expect(record).toMatchObject({
      format: "cert-retriever device settings",
      version: 1,
      deviceId: DEVICE,
      settings: { platform: new URL(lab.estUrl).href, api: "est", caName: "IOTmidCA", store: "files" },
    });
    expect(record.writtenBy).toMatch(/^cert-retriever \d+\.\d+\.\d+/);
    expect(text).not.toContain(lab.password);
  });

  it("--device-id and --out suffice for check and the renewal of an EST device (no --api, no --platform, no password)", async () => {
    const out = await enrolled();
    const due = await check(out);
    expect(due.code, due.stderr).toBe(0);
    expect(due.stderr).not.toMatch(/platform user|--api/);
    const renewal = await runCli(
      ["enroll", "--device-id", DEVICE, "--out", out, "--renew-before", "400d", "--non-interactive", "--json"],
      { timeoutMs: 30_000 },
    );
    expect(renewal.code, renewal.stderr).toBe(0);
    expect(renewal.stderr).toContain("(the stored CA chain vouched for the server)");
    expect(JSON.parse(renewal.stdout)).toMatchObject({ status: "enrolled", previous: { revoked: "kept" } });
    const after = await check(out, ["--renew-before", "30d"]);
    expect(after.code, after.stderr).toBe(1);
  });

  it("a flag wins over the recorded setting, and the difference is said", async () => {
    const out = await enrolled();
    const run = await check(out, ["--revocation", "off", "--platform", "https://127.0.0.1:9/.well-known/est"]);
    expect(run.stderr).toContain(
      `note: --platform "https://127.0.0.1:9/.well-known/est" overrides "${new URL(lab.estUrl).href}", recorded when device '${DEVICE}' was enrolled`,
    );
    const same = await check(out, ["--api", "est"]);
    expect(same.code, same.stderr).toBe(0);
    expect(same.stderr).not.toContain("overrides");
  });

  for (const [what, text, said] of [
    ["a damaged record", '{"format": "cert-retriever device', "it is not valid JSON (a damaged file)"],
    [
      "a record of a newer version",
      JSON.stringify({ format: "cert-retriever device settings", version: 2, writtenBy: "cert-retriever 9.0.0" }),
      "it is a version 2 record (written by cert-retriever 9.0.0), and this cert-retriever reads version 1",
    ],
    [
      "a record of another device",
      JSON.stringify({ format: "cert-retriever device settings", version: 1, deviceId: "other", settings: {} }),
      `it records device "other", not "${DEVICE}"`,
    ],
  ] as const) {
    it(`${what} is said and not used: the command goes on as without it`, async () => {
      const out = await enrolled();
      await writeFile(recordOf(out), text, { mode: 0o600 });
      const run = await runCli([
        "enroll",
        "--device-id",
        DEVICE,
        "--out",
        out,
        "--renew-before",
        "400d",
        "--non-interactive",
      ]);
      expect(run.stderr).toContain(`warning: not using the settings recorded in ${recordOf(out)}: ${said}`);
      // Without the record, nothing names the platform: a usage error, as before there were records.
      expect(run.code, run.stderr).toBe(2);
      expect(run.stderr).toMatch(/--platform/);
    });
  }

  it("a record that others could write is refused (exit 15), as every file in the credentials directory is", async () => {
    const out = await enrolled();
    await chmod(recordOf(out), 0o666);
    const run = await check(out);
    expect(run.code).toBe(255);
    expect(run.stderr).toContain(`refusing ${recordOf(out)}`);
    const exported = await runCli(["export", "--device-id", DEVICE, "--out", out, "--to", join(out, "..", "copies")]);
    expect(exported.code).toBe(15);
  });
});

describe("check on a dojot device, its platform recorded", () => {
  it("without a user or token reads the cached CRL only, saying nothing of the platform; with a user it asks the platform", async () => {
    const x509 = await startTestLab({ api: "x509", autoRegister: true });
    try {
      const out = join(await tempDir(), "certs");
      expect((await enrollCli(x509.url, x509, "ab12cd", out)).code).toBe(0);
      const bare = await runCli(["check", "--device-id", "ab12cd", "--out", out]);
      expect(bare.code, bare.stderr).toBe(1);
      // As before settings were recorded: the cache, which no run has filled yet.
      expect(bare.stderr).toMatch(/revocation could not be checked: no CRL has been fetched yet\n$/);
      expect(bare.stderr).not.toMatch(/platform user/);
      expect(await listFiles(out)).not.toContain("IOTmidCA.crl");
      const pw = join(await tempDir(), "pw");
      await writeFile(pw, x509.password, { mode: 0o600 });
      const online = await runCli([
        "check",
        "--device-id",
        "ab12cd",
        "--out",
        out,
        "--username",
        "admin",
        "--password-file",
        pw,
      ]);
      expect(online.code, online.stderr).toBe(1);
      expect(await listFiles(out)).toContain("IOTmidCA.crl");
    } finally {
      await x509.stop();
    }
  });
});
