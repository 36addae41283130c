import { execFileSync, spawnSync } from "node:child_process";
import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readEstIssued, startLab } from "../../lab/src/server.js";
import { EXIT_CODE_MEANINGS } from "../../src/cli/exit-codes.js";
import { sha256Fingerprint } from "../../src/flows/certificate.js";
import { softwareCrypto } from "../../src/keys/provider.js";
import { BIN, runCli, SECRETS } from "../helpers/cli.js";
import { haveFaketime, type LabProcess, type SharedClock, sharedClock, startLabProcess } from "../helpers/clock.js";
import { listFiles } from "../helpers/enroll.js";
import { labDir as newLabDir, startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { haveTool } from "../helpers/tools.js";

const UNIT = fileURLToPath(new URL("../../systemd/cert-retriever.service", import.meta.url));
const DROPIN = fileURLToPath(new URL("../../systemd/cert-retriever.service.d/platform.conf.example", import.meta.url));
const RENEW_UNIT = fileURLToPath(new URL("../../systemd/cert-retriever-renew.service", import.meta.url));
const RENEW_TIMER = fileURLToPath(new URL("../../systemd/cert-retriever-renew.timer", import.meta.url));
const ENV_EXAMPLE = fileURLToPath(new URL("../../systemd/cert-retriever.env.example", import.meta.url));
/** The most `systemd-analyze security` may rate the unit (0 = locked down, 10 = exposed); README says why. */
const EXPOSURE_THRESHOLD = 2.0;

const hasSystemd = haveTool("systemd-analyze");

/** The units and the drop-in in a directory, /usr/bin/cert-retriever pointed at this checkout's bin; returns the first-boot unit's path. */
async function stagedUnit(): Promise<string> {
  const dir = await tempDir("cr-unit-");
  for (const file of [UNIT, RENEW_UNIT, RENEW_TIMER]) {
    await writeFile(
      join(dir, basename(file)),
      (await readFile(file, "utf8")).replaceAll("/usr/bin/cert-retriever", BIN),
    );
  }
  await mkdir(join(dir, "cert-retriever.service.d"));
  await copyFile(DROPIN, join(dir, "cert-retriever.service.d", "platform.conf"));
  return join(dir, "cert-retriever.service");
}

/** `systemd-analyze security`'s exposure level of a unit file. */
function exposure(unit: string): number {
  const out = execFileSync("systemd-analyze", ["security", "--offline=true", "--threshold=100", unit], {
    encoding: "utf8",
  });
  return Number(
    new RegExp(`Overall exposure level for ${basename(unit).replace(/\./g, "\\.")}: ([\\d.]+)`).exec(out)?.[1],
  );
}

describe.skipIf(!hasSystemd)("the systemd unit", () => {
  it("passes systemd-analyze verify without a single line of output (warnings exit 0, so output is the test)", async () => {
    const unit = await stagedUnit();
    const run = spawnSync("systemd-analyze", ["verify", "--man=no", unit], { encoding: "utf8" });
    expect(`${run.stdout}${run.stderr}`).toBe("");
    expect(run.status).toBe(0);
  });

  it(`rates at most ${EXPOSURE_THRESHOLD} in systemd-analyze security --offline=true`, async () => {
    expect(exposure(await stagedUnit())).toBeLessThanOrEqual(EXPOSURE_THRESHOLD);
  });

  it("the renewal timer and service pass systemd-analyze verify silently, and the service rates no worse than the first-boot unit", async () => {
    const dir = dirname(await stagedUnit());
    const run = spawnSync(
      "systemd-analyze",
      ["verify", "--man=no", join(dir, "cert-retriever-renew.timer"), join(dir, "cert-retriever-renew.service")],
      { encoding: "utf8" },
    );
    expect(`${run.stdout}${run.stderr}`).toBe("");
    expect(run.status).toBe(0);
    const renew = exposure(join(dir, "cert-retriever-renew.service"));
    expect(renew).toBeGreaterThan(0); // parsed
    expect(renew).toBeLessThanOrEqual(exposure(join(dir, "cert-retriever.service")));
  });
});

describe("the renewal timer and service", () => {
  it("daily, at a random time, catching up after downtime; the service retries 75 only, runs check as its condition, and shares the first-boot unit's user and state", async () => {
    const timer = await readFile(RENEW_TIMER, "utf8");
    expect(timer).toMatch(/^OnCalendar=daily$/m);
    expect(timer).toMatch(/^RandomizedDelaySec=\d+h$/m);
    expect(timer).toMatch(/^Persistent=true$/m);
    expect(timer).toMatch(/^WantedBy=timers\.target$/m);
    const unit = await readFile(RENEW_UNIT, "utf8");
    const first = await readFile(UNIT, "utf8");
    expect(unit).toMatch(/^RestartSec=\d+min$/m);
    expect(unit).toMatch(/^ExecCondition=\/usr\/bin\/cert-retriever check$/m);
    expect(unit).not.toMatch(/^WantedBy=/m); // the timer starts it
    for (const shared of ["User", "StateDirectory", "DynamicUser", "LoadCredential"]) {
      expect(new RegExp(`^${shared}=(.*)$`, "m").exec(unit)?.[1], shared).toBe(
        new RegExp(`^${shared}=(.*)$`, "m").exec(first)?.[1],
      );
    }
  });
});

describe("the unit's contract with the exit codes", () => {
  it("restarts on 75 only: every other failure code of the table is in RestartPreventExitStatus, in both units", async () => {
    for (const file of [UNIT, RENEW_UNIT]) {
      const unit = await readFile(file, "utf8");
      const prevented = /^RestartPreventExitStatus=(.*)$/m
        .exec(unit)![1]!
        .split(/\s+/)
        .map(Number)
        .sort((a, b) => a - b);
      const permanent = EXIT_CODE_MEANINGS.map(([code]) => code)
        .filter((c) => c !== 0 && c !== 75)
        .sort((a, b) => a - b);
      expect(prevented, file).toEqual(permanent);
      expect(unit, file).toMatch(/^Restart=on-failure$/m);
      expect(unit, file).toMatch(/^Type=oneshot$/m);
    }
  });

  it("writes no core dump, which would hold the password (LimitCORE=0; the unit's verification is the test above)", async () => {
    expect(await readFile(UNIT, "utf8")).toMatch(/^LimitCORE=0$/m);
  });
});

describe("first boot, as the unit runs it", () => {
  let lab: TestLab;
  beforeAll(async () => {
    lab = await startTestLab({ autoRegister: true });
  });
  afterAll(async () => lab.stop());

  it("ExecCondition says enroll (0), ExecStart enrolls with the credential, then ExecCondition says nothing to do (1)", async () => {
    const unit = await readFile(UNIT, "utf8");
    const state = await tempDir("cr-state-");
    const creds = await tempDir("cr-creds-");
    await writeFile(join(creds, "password"), lab.password, { mode: 0o400 });
    const idFile = join(creds, "device-id");
    await writeFile(idFile, "boot-device\n");
    // The unit's Environment= lines with %S expanded, plus what the drop-in would set.
    const env: Record<string, string> = { CREDENTIALS_DIRECTORY: creds };
    const cache = await tempDir("cr-cache-");
    for (const [, name, value] of unit.matchAll(/^Environment=(\w+)=(.*)$/gm))
      env[name!] = value!.replace("%S", state).replace("%C", cache);
    Object.assign(env, {
      CERT_RETRIEVER_PLATFORM: lab.url,
      CERT_RETRIEVER_USERNAME: "admin",
      CERT_RETRIEVER_DEVICE_ID_FILE: idFile,
    });
    const command = (key: string) =>
      /^Exec\w+=\/usr\/bin\/cert-retriever (.*)$/m
        .exec(unit.split("\n").find((l) => l.startsWith(`${key}=`))!)![1]!
        .split(" ");

    expect((await runCli(command("ExecCondition"), { env })).code).toBe(0);
    const start = await runCli(command("ExecStart"), { env });
    expect(start.code, start.stderr).toBe(0);
    expect(start.stderr).toMatch(/^\[1\/8\] authenticate/m); // plain lines for journald, no ticks
    expect(await listFiles(join(state, "cert-retriever"))).toEqual([
      "IOTmidCA.crt",
      "boot-device.crt",
      "boot-device.key",
      "boot-device.settings.json",
    ]);
    expect((await runCli(command("ExecCondition"), { env })).code).toBe(1);
  });
});

describe("one settings file for both units, as docs/running.md installs it", () => {
  let lab: TestLab;
  beforeAll(async () => {
    lab = await startTestLab({ autoRegister: true });
  });
  afterAll(async () => lab.stop());

  /** VARIABLE=value lines as systemd's EnvironmentFile= reads them (comments and blank lines skipped). */
  const environmentFile = (text: string) =>
    Object.fromEntries(
      text
        .split("\n")
        .filter((l) => /^\w+=/.test(l))
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );

  it("with only the example, edited, and the password credential: first boot enrolls, and the renewal unit finds nothing to do (not 255)", async () => {
    const [first, renew] = await Promise.all([readFile(UNIT, "utf8"), readFile(RENEW_UNIT, "utf8")]);
    // Both units read the one file docs/running.md installs, and the one credential.
    for (const unit of [first, renew]) {
      expect(unit).toMatch(/^EnvironmentFile=-\/etc\/cert-retriever\/cert-retriever\.env$/m);
      expect(unit).toMatch(/^LoadCredential=password:\/etc\/cert-retriever\/password$/m);
    }
    // The example as a user edits it: the three settings it sets given this platform's values.
    const creds = await tempDir("cr-creds-");
    await writeFile(join(creds, "password"), lab.password, { mode: 0o400 });
    const idFile = join(creds, "device-id");
    await writeFile(idFile, "one-file-device\n");
    const edited = (await readFile(ENV_EXAMPLE, "utf8"))
      .replace(/^CERT_RETRIEVER_PLATFORM=.*$/m, `CERT_RETRIEVER_PLATFORM=${lab.url}`)
      .replace(/^CERT_RETRIEVER_USERNAME=.*$/m, "CERT_RETRIEVER_USERNAME=admin")
      .replace(/^CERT_RETRIEVER_DEVICE_ID_FILE=.*$/m, `CERT_RETRIEVER_DEVICE_ID_FILE=${idFile}`);
    expect(Object.keys(environmentFile(edited)).sort()).toEqual([
      "CERT_RETRIEVER_DEVICE_ID_FILE",
      "CERT_RETRIEVER_PLATFORM",
      "CERT_RETRIEVER_USERNAME",
    ]);
    const state = await tempDir("cr-state-");
    const cache = await tempDir("cr-cache-");
    /** A unit's environment: its Environment= lines (%S, %C expanded), the file, the credential directory. */
    const envOf = (unit: string) => {
      const env: Record<string, string> = { CREDENTIALS_DIRECTORY: creds };
      for (const [, name, value] of unit.matchAll(/^Environment=(\w+)=(.*)$/gm))
        env[name!] = value!.replace("%S", state).replace("%C", cache);
      return { ...env, ...environmentFile(edited) };
    };
    const command = (unit: string, key: string) =>
      /^Exec\w+=\/usr\/bin\/cert-retriever (.*)$/m
        .exec(unit.split("\n").find((l) => l.startsWith(`${key}=`))!)![1]!
        .split(" ");

    expect((await runCli(command(first, "ExecCondition"), { env: envOf(first) })).code).toBe(0);
    const start = await runCli(command(first, "ExecStart"), { env: envOf(first) });
    expect(start.code, start.stderr).toBe(0);
    const condition = await runCli(command(renew, "ExecCondition"), { env: envOf(renew) });
    expect(condition.code, condition.stderr).toBe(1);
    // The credentials, and the CA's CRL that the renewal's check keeps beside them.
    expect(await listFiles(join(state, "cert-retriever"))).toEqual([
      "IOTmidCA.crl",
      "IOTmidCA.crt",
      "one-file-device.contact.json",
      "one-file-device.crt",
      "one-file-device.key",
      "one-file-device.settings.json",
    ]);
  });
});

describe("EST, as the units run it: first boot by password, renewal by the current certificate", () => {
  it("the same units with CERT_RETRIEVER_API=est: first boot enrolls (the CA pinned); the renewal service, with no password credential left, re-enrolls over mutual TLS; then its condition says nothing to do", async () => {
    const labDir = await newLabDir("cr-est-unit-");
    const password = `est-${Math.random().toString(36).slice(2)}-pw`;
    SECRETS.add(password);
    const est = await startLab({
      dir: labDir,
      host: "127.0.0.1",
      port: 0,
      crypto: softwareCrypto(),
      certProfile: "open",
      autoRegister: false,
      adminPassword: password,
      tokenLifetime: 420,
      api: "est",
    });
    try {
      const state = await tempDir("cr-state-");
      const creds = await tempDir("cr-creds-");
      await writeFile(join(creds, "password"), password, { mode: 0o400 });
      const cache = await tempDir("cr-cache-");
      const platform = {
        CERT_RETRIEVER_API: "est",
        CERT_RETRIEVER_PLATFORM: est.estUrl!,
        CERT_RETRIEVER_USERNAME: "admin",
        CERT_RETRIEVER_DEVICE_ID: "est-unit",
        CERT_RETRIEVER_CA_FINGERPRINT: `sha256:${sha256Fingerprint(est.estCa!.root.cert)}`,
      };
      const run = async (unitFile: string, key: string, extra: Record<string, string> = {}) => {
        const text = await readFile(unitFile, "utf8");
        const env: Record<string, string> = { CREDENTIALS_DIRECTORY: creds };
        for (const [, name, value] of text.matchAll(/^Environment=(\w+)=(.*)$/gm))
          env[name!] = value!.replace("%S", state).replace("%C", cache);
        const args = /^Exec\w+=\/usr\/bin\/cert-retriever (.*)$/m
          .exec(text.split("\n").find((l) => l.startsWith(`${key}=`))!)![1]!
          .split(" ");
        return runCli(args, { env: { ...env, ...platform, ...extra } });
      };
      const first = await run(UNIT, "ExecStart");
      expect(first.code, first.stderr).toBe(0);
      const out = join(state, "cert-retriever");
      expect(await listFiles(out)).toEqual(["IOTmidCA.crt", "est-unit.crt", "est-unit.key", "est-unit.settings.json"]);
      await rm(join(creds, "password"));
      // A window wider than the lifetime: due now.
      const due = { CERT_RETRIEVER_RENEW_BEFORE: "400d" };
      expect((await run(RENEW_UNIT, "ExecCondition", due)).code).toBe(0);
      const renewed = await run(RENEW_UNIT, "ExecStart", due);
      expect(renewed.code, renewed.stderr).toBe(0);
      expect((await readEstIssued(labDir)).map((r) => r.auth)).toEqual([
        "basic:admin",
        expect.stringMatching(/^reenroll:/),
      ]);
      const after = await run(RENEW_UNIT, "ExecCondition");
      expect(after.code, after.stderr).toBe(1);
    } finally {
      await est.close();
    }
  });
});

describe.skipIf(!haveFaketime())(
  "renewal, as the timer's service runs it (one clock for device and platform, moved by the test)",
  () => {
    let clock: SharedClock;
    let lab: LabProcess;
    beforeAll(async () => {
      clock = await sharedClock();
      lab = await startLabProcess(["--api", "x509", "--cert-lifetime", "1h", "--force-crl-renew"], clock.env);
      await runCli(["lab", "device", "add", "--dir", lab.dir, "c0ffee"]);
    });
    afterAll(async () => lab?.stop());

    it("first boot enrolls; the daily run is skipped while the certificate is young, renews (re-keyed, old one revoked) once a third of its life is left, then is skipped again", async () => {
      const state = await tempDir("cr-state-");
      const creds = await tempDir("cr-creds-");
      await writeFile(join(creds, "password"), lab.password, { mode: 0o400 });
      const cache = await tempDir("cr-cache-");
      const envOf = (text: string) => {
        const env: Record<string, string> = { ...clock.env, CREDENTIALS_DIRECTORY: creds };
        for (const [, name, value] of text.matchAll(/^Environment=(\w+)=(.*)$/gm))
          env[name!] = value!.replace("%S", state).replace("%C", cache);
        return Object.assign(env, {
          CERT_RETRIEVER_PLATFORM: lab.url,
          CERT_RETRIEVER_USERNAME: "admin",
          CERT_RETRIEVER_DEVICE_ID: "c0ffee",
        });
      };
      const run = async (unitFile: string, key: string) => {
        const text = await readFile(unitFile, "utf8");
        const args = /^Exec\w+=\/usr\/bin\/cert-retriever (.*)$/m
          .exec(text.split("\n").find((l) => l.startsWith(`${key}=`))!)![1]!
          .split(" ");
        return runCli(args, { env: envOf(text), timeoutMs: 60_000 });
      };
      await clock.set("+0");
      expect((await run(UNIT, "ExecStart")).code).toBe(0);
      const out = join(state, "cert-retriever");
      const first = await readFile(join(out, "c0ffee.key"), "utf8");
      const skipped = await run(RENEW_UNIT, "ExecCondition");
      expect([skipped.code, skipped.stderr]).toEqual([1, expect.stringMatching(/nothing to do: .* is not revoked/)]);
      await clock.set("+41m");
      expect((await run(RENEW_UNIT, "ExecCondition")).code).toBe(0);
      const renewed = await run(RENEW_UNIT, "ExecStart");
      expect(renewed.code, renewed.stderr).toBe(0);
      expect(renewed.stderr).toMatch(/revoked the replaced certificate/);
      expect(await readFile(join(out, "c0ffee.key"), "utf8")).not.toBe(first);
      expect((await run(RENEW_UNIT, "ExecCondition")).code).toBe(1);
    });
  },
);
