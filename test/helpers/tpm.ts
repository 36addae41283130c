import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { SECRETS } from "./cli.js";
import { tempDir } from "./lab.js";

/** The longest a test's TPM daemons live, whatever becomes of the test (coreutils timeout's duration). */
const LIFETIME = "10m";

/** Debian's tpm2-pkcs11 module. */
const TPM2_MODULE = "/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so";

/** A software TPM 2.0 (swtpm) behind tpm2-abrmd on a private D-Bus, exposed as a PKCS#11 token by tpm2-pkcs11. */
export interface TestTpm {
  dir: string;
  label: string;
  pin: string;
  pinFile: string;
  module: string;
  /** What tpm2-pkcs11 and the tpm2 tools need to reach this TPM. */
  env: Record<string, string>;
  /** pkcs11-tool on the token, logged in; returns stdout. */
  tool(...args: string[]): string;
  /** A tpm2 tool (tpm2_dictionarylockout…) on this TPM. */
  tpm2(tool: string, ...args: string[]): void;
  stop(): Promise<void>;
}

/**
 * Starts swtpm on a Unix socket in a temporary directory, a private dbus-daemon and tpm2-abrmd in
 * front of it (swtpm alone has three object slots, which tpm2-pkcs11 runs out of), switches off the
 * TPM's dictionary-attack lockout (so a wrong-PIN test does not lock it for 1000 s), and makes a
 * token `label` with a fresh PIN. Everything stops with stop(), and is bounded by the test's time.
 */
export async function startTpm(label = "tpm"): Promise<TestTpm> {
  const dir = await tempDir("cr-tpm-");
  await mkdir(join(dir, "state"));
  await mkdir(join(dir, "store"));
  const children: ChildProcess[] = [];
  const sock = join(dir, "tpm.sock");
  // Each daemon runs under coreutils' timeout: a test process that dies without stop() leaves
  // nothing running past LIFETIME (timeout passes stop()'s SIGTERM on to the daemon).
  const bounded = (command: string, args: string[], options: Parameters<typeof spawn>[2]) => {
    const child = spawn("timeout", [LIFETIME, command, ...args], options);
    children.push(child);
    return child;
  };
  bounded(
    "swtpm",
    [
      "socket",
      "--tpm2",
      "--tpmstate",
      `dir=${join(dir, "state")}`,
      "--server",
      `type=unixio,path=${sock}`,
      "--ctrl",
      `type=unixio,path=${sock}.ctrl`,
      "--flags",
      "not-need-init,startup-clear",
    ],
    { stdio: "ignore" },
  );
  const dbus = bounded(
    "dbus-daemon",
    ["--session", "--nofork", "--nosyslog", "--print-address=1", `--address=unix:path=${join(dir, "bus")}`],
    { stdio: ["ignore", "pipe", "ignore"] },
  );
  const busAddress = await new Promise<string>((resolve, reject) => {
    dbus.stdout!.once("data", (d: Buffer) => resolve(d.toString().trim().split("\n")[0]!));
    dbus.once("exit", () => reject(new Error("dbus-daemon exited")));
  });
  const busName = "com.intel.tss2.Tabrmd.certretriever";
  const tcti = `tabrmd:bus_type=session,bus_name=${busName}`;
  const env: Record<string, string> = {
    DBUS_SESSION_BUS_ADDRESS: busAddress,
    TPM2TOOLS_TCTI: tcti,
    TPM2_PKCS11_TCTI: tcti,
    TPM2_PKCS11_STORE: join(dir, "store"),
    TSS2_LOG: "all+NONE",
  };
  const fullEnv = { ...process.env, ...env };
  // tpm2-abrmd connects to swtpm at start: once swtpm's socket is there.
  for (let i = 0; i < 500 && !existsSync(sock); i++) await sleep(10);
  bounded(
    "tpm2-abrmd",
    ["--session", "--allow-root", "--flush-all", `--dbus-name=${busName}`, `--tcti=swtpm:path=${sock}`],
    { env: fullEnv, stdio: "ignore" },
  );
  const stop = async () => {
    for (const child of children.reverse()) {
      const exited = new Promise((resolve) =>
        child.exitCode !== null || child.signalCode !== null ? resolve(undefined) : child.once("exit", resolve),
      );
      child.kill("SIGTERM");
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    let up = false;
    for (let i = 0; i < 300 && !up; i++) {
      up = spawnSync("tpm2_getcap", ["handles-persistent"], { env: fullEnv, stdio: "ignore" }).status === 0;
      if (!up) await sleep(20);
    }
    if (!up) throw new Error("tpm2-abrmd did not come up in front of swtpm");
    const tpm2 = (tool: string, ...args: string[]) => {
      const run = spawnSync(tool, args, { env: fullEnv, encoding: "utf8" });
      if (run.status !== 0) throw new Error(`${tool} ${args.join(" ")} failed: ${run.stderr}`);
    };
    tpm2(
      "tpm2_dictionarylockout",
      "--setup-parameters",
      "--max-tries=4294967295",
      "--recovery-time=0",
      "--lockout-recovery-time=0",
    );
    const pin = `${Math.floor(100000 + Math.random() * 899999)}`;
    SECRETS.add(pin);
    const p11 = (...args: string[]) => {
      const run = spawnSync("pkcs11-tool", ["--module", TPM2_MODULE, ...args], { env: fullEnv, encoding: "utf8" });
      if (run.status !== 0) throw new Error(`pkcs11-tool ${args.join(" ")} failed: ${run.stderr}`);
      return run.stdout;
    };
    p11("--slot-index", "0", "--init-token", "--label", label, "--so-pin", "87654321");
    p11("--token-label", label, "--login", "--login-type", "so", "--so-pin", "87654321", "--init-pin", "--pin", pin);
    const pinFile = join(dir, "pin");
    await writeFile(pinFile, `${pin}\n`, { mode: 0o600 });
    return {
      dir,
      label,
      pin,
      pinFile,
      module: TPM2_MODULE,
      env,
      tool: (...args) => p11("--token-label", label, "--login", "--pin", pin, ...args),
      tpm2,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
