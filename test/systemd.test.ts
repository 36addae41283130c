import { execFileSync, spawnSync } from "node:child_process";
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT_CODE_MEANINGS } from "../src/exit-codes.js";
import { BIN, runCli } from "./helpers/cli.js";
import { listFiles } from "./helpers/enroll.js";
import { startTestLab, tempDir, type TestLab } from "./helpers/lab.js";
import { haveTool } from "./helpers/tools.js";

const UNIT = fileURLToPath(new URL("../systemd/cert-retriever.service", import.meta.url));
const DROPIN = fileURLToPath(new URL("../systemd/cert-retriever.service.d/platform.conf.example", import.meta.url));
/** The most `systemd-analyze security` may rate the unit (0 = locked down, 10 = exposed); README says why. */
const EXPOSURE_THRESHOLD = 2.0;

const hasSystemd = haveTool("systemd-analyze");

/** The unit and its drop-in in a directory, /usr/bin/cert-retriever pointed at this checkout's bin. */
async function stagedUnit(): Promise<string> {
  const dir = await tempDir("cr-unit-");
  const unit = (await readFile(UNIT, "utf8")).replaceAll("/usr/bin/cert-retriever", BIN);
  await writeFile(join(dir, "cert-retriever.service"), unit);
  await mkdir(join(dir, "cert-retriever.service.d"));
  await copyFile(DROPIN, join(dir, "cert-retriever.service.d", "platform.conf"));
  return join(dir, "cert-retriever.service");
}

describe.skipIf(!hasSystemd)("the systemd unit", () => {
  it("passes systemd-analyze verify without a single line of output (warnings exit 0, so output is the test)", async () => {
    const unit = await stagedUnit();
    const run = spawnSync("systemd-analyze", ["verify", "--man=no", unit], { encoding: "utf8" });
    expect(`${run.stdout}${run.stderr}`).toBe("");
    expect(run.status).toBe(0);
  });

  it(`rates at most ${EXPOSURE_THRESHOLD} in systemd-analyze security --offline=true`, async () => {
    const unit = await stagedUnit();
    const out = execFileSync("systemd-analyze", ["security", "--offline=true", `--threshold=${EXPOSURE_THRESHOLD * 10}`, unit], { encoding: "utf8" });
    const level = Number(/Overall exposure level for cert-retriever\.service: ([\d.]+)/.exec(out)?.[1]);
    expect(level).toBeLessThanOrEqual(EXPOSURE_THRESHOLD);
  });
});

describe("the unit's contract with the exit codes", () => {
  it("restarts on 75 only: every other failure code of the table is in RestartPreventExitStatus", async () => {
    const unit = await readFile(UNIT, "utf8");
    const prevented = /^RestartPreventExitStatus=(.*)$/m.exec(unit)![1]!.split(/\s+/).map(Number).sort((a, b) => a - b);
    const permanent = EXIT_CODE_MEANINGS.map(([code]) => code).filter((c) => c !== 0 && c !== 75).sort((a, b) => a - b);
    expect(prevented).toEqual(permanent);
    expect(unit).toMatch(/^Restart=on-failure$/m);
    expect(unit).toMatch(/^Type=oneshot$/m);
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
    for (const [, name, value] of unit.matchAll(/^Environment=(\w+)=(.*)$/gm)) env[name!] = value!.replace("%S", state).replace("%C", cache);
    Object.assign(env, { CERT_RETRIEVER_PLATFORM: lab.url, CERT_RETRIEVER_USERNAME: "admin", CERT_RETRIEVER_DEVICE_ID_FILE: idFile });
    const command = (key: string) => /^Exec\w+=\/usr\/bin\/cert-retriever (.*)$/m.exec(unit.split("\n").find((l) => l.startsWith(`${key}=`))!)![1]!.split(" ");

    expect((await runCli(command("ExecCondition"), { env })).code).toBe(0);
    const start = await runCli(command("ExecStart"), { env });
    expect(start.code, start.stderr).toBe(0);
    expect(start.stderr).toMatch(/^\[1\/8\] authenticate/m); // plain lines for journald, no ticks
    expect(await listFiles(join(state, "cert-retriever"))).toEqual(["IOTmidCA.crt", "boot-device.crt", "boot-device.key"]);
    expect((await runCli(command("ExecCondition"), { env })).code).toBe(1);
  });
});
