import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { LAB_BIN, SECRETS } from "./cli.js";
import { labDir, tempDir } from "./lab.js";
import type { CaSet } from "./lab-cas.js";
import { haveTool } from "./tools.js";

/** libfaketime, from Debian's faketime package. */
const LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/** Whether faketime is here (under CI=true its absence fails the run: see haveTool). */
export function haveFaketime(): boolean {
  return haveTool("faketime") && (existsSync(LIBFAKETIME) || fail());
}

function fail(): never {
  throw new Error(`${LIBFAKETIME} is missing although faketime is installed`);
}

/**
 * One clock for the platform and the device, moved by the test: every process started with `env`
 * reads its time offset (libfaketime's "+45m" form) from one file on each call, so writing the
 * file moves all of them at once. Monotonic clocks are left alone, so timers keep their pace.
 */
export interface SharedClock {
  env: Record<string, string>;
  /** Moves every process's clock to real time plus `offset`: one number and one unit (libfaketime reads "+45m", "+1431m", "+2d"; not "+23h51m"). */
  set(offset: string): Promise<void>;
}

export async function sharedClock(): Promise<SharedClock> {
  const file = join(await tempDir("cr-clock-"), "offset");
  await writeFile(file, "+0\n");
  return {
    env: { LD_PRELOAD: LIBFAKETIME, FAKETIME_TIMESTAMP_FILE: file, FAKETIME_NO_CACHE: "1", DONT_FAKE_MONOTONIC: "1" },
    set: (offset) => writeFile(file, `${offset}\n`),
  };
}

/** A lab platform in its own process (so that it can run on a shared clock). */
export interface LabProcess {
  url: string;
  dir: string;
  password: string;
  stop(): Promise<void>;
}

/**
 * Starts `cert-retriever-lab serve` with `args` in the environment `env` (a shared clock's), on a
 * free port of 127.0.0.1, with the run's CAs of `caSet` (`other` for another platform).
 */
export async function startLabProcess(
  args: string[],
  env: Record<string, string> = {},
  caSet: CaSet = "main",
): Promise<LabProcess> {
  const dir = await labDir("cr-labp-", caSet);
  const password = `lab-${Math.random().toString(36).slice(2)}-secret`;
  SECRETS.add(password);
  const child: ChildProcess = spawn(
    process.execPath,
    [LAB_BIN, "serve", "--dir", dir, "--listen", "127.0.0.1:0", ...args],
    {
      env: {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? "/root",
        CERT_RETRIEVER_LAB_PASSWORD: password,
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let out = "";
  let err = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the lab did not start:\n${err}`)), 15_000);
    const look = () => {
      const m = /^(http:\/\/127\.0\.0\.1:\d+)$/m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    child.stdout!.on("data", look);
    child.once("exit", () => {
      clearTimeout(timer);
      reject(new Error(`the lab exited:\n${err}`));
    });
  });
  return {
    url,
    dir,
    password,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    },
  };
}
