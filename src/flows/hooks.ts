import { spawn } from "node:child_process";
import { CertRetrieverError, type SettingNamer } from "../errors.js";
import type { EnrollResult } from "./result.js";
import type { HookEvent } from "./steps.js";

/** What to run after new credentials are stored. */
export interface ChangeHooks {
  /** A command line of the user's, run by /bin/sh -c as given: the new paths arrive in the environment, never spliced into it. */
  exec?: string;
  /** A systemd unit to reload (or restart): `systemctl try-reload-or-restart UNIT`. */
  reloadUnit?: string;
  timeoutMs: number;
  /** The prefix of the variables that tell a hook where the new credentials are (`CERT_FILE`...); default none. */
  environmentPrefix?: string;
  /** The environment a hook inherits from (only the variables below); default this process's. */
  inheritFrom?: NodeJS.ProcessEnv;
}

/**
 * The only variables a hook inherits: where it runs and how to log (systemd's journal stream
 * included). Nothing of cert-retriever's own settings reaches it, so no secret can (a password,
 * a PIN in a --key URI, the path of a credentials file or directory).
 */
const INHERITED_ENV =
  /^(PATH|HOME|USER|LOGNAME|SHELL|LANG|LANGUAGE|LC_[A-Z]+|TZ|TERM|TMPDIR|NO_COLOR|INVOCATION_ID|JOURNAL_STREAM|STATE_DIRECTORY|RUNTIME_DIRECTORY|CACHE_DIRECTORY)$/;

/**
 * Runs `exec`, then `reloadUnit`, each bounded by the timeout; the first failure stops and is
 * thrown as `hook-failed` (the credentials stay stored). The hook's output goes to stderr, so that
 * a result printed on stdout stays whole. `name` names the settings in messages and events.
 */
export async function runChangeHooks(
  result: EnrollResult,
  hooks: ChangeHooks,
  name: SettingNamer,
  emit: (event: HookEvent) => void,
): Promise<void> {
  const env = hookEnvironment(result, hooks.environmentPrefix ?? "", hooks.inheritFrom ?? process.env);
  const run = (what: string, file: string, args: string[]) =>
    runHook(what, file, args, env, hooks.timeoutMs).then((ms) => emit({ type: "hook", what, ms }));
  if (hooks.exec) await run(`${name("exec")} '${hooks.exec}'`, "/bin/sh", ["-c", hooks.exec]);
  if (hooks.reloadUnit)
    await run(`${name("reloadUnit")} ${hooks.reloadUnit}`, "systemctl", [
      "try-reload-or-restart",
      "--",
      hooks.reloadUnit,
    ]);
}

/** The inherited part of the environment `from`, plus where the new credentials are (each variable's name after `prefix`). */
function hookEnvironment(result: EnrollResult, prefix: string, from: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(from).filter(([name]) => INHERITED_ENV.test(name)));
  const files = result.store.files;
  const set = (name: string, value: string | undefined) => {
    if (value !== undefined) env[`${prefix}${name}`] = value;
  };
  set("DEVICE_ID", result.deviceId);
  set("STORE", result.store.kind);
  set("STORE_LOCATION", result.store.location);
  set("CERT_FILE", files?.certificate);
  set("KEY_FILE", files?.key);
  set("KEY_URI_FILE", files?.keyUri);
  set("CA_FILE", files?.ca);
  set("FINGERPRINT", result.sha256Fingerprint);
  set("SERIAL", result.serialNumber);
  set("NOT_AFTER", result.notAfter);
  set("PREVIOUS_FINGERPRINT", result.previous?.sha256Fingerprint);
  return env;
}

/** Runs one hook in its own process group; resolves with how long it took. */
function runHook(
  what: string,
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<number> {
  const fail = (why: string) =>
    new CertRetrieverError(`hook failed: ${what} ${why}; the new credentials are stored and stay`, {
      step: "hook",
      reason: "hook-failed",
    });
  return new Promise((resolve, reject) => {
    const started = performance.now();
    // Its own process group, so that a timeout stops what it started too.
    const child = spawn(file, args, { env, stdio: ["ignore", 2, 2], detached: true });
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // gone already
      }
      reject(fail(`did not finish within ${Math.round(timeoutMs / 1000)} s (stopped, with what it started)`));
    }, timeoutMs);
    child.once("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(fail(err.code === "ENOENT" ? `could not start: ${file} not found` : `could not start: ${err.message}`));
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(Math.round(performance.now() - started));
      else reject(fail(signal ? `was killed by ${signal}` : `exited with ${code}`));
    });
  });
}
