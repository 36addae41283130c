import { spawn } from "node:child_process";
import { CertRetrieverError } from "../errors.js";
import type { EnrollResult } from "./enroll.js";
import { say } from "../cli/output.js";

/** What to run after new credentials are stored. */
export interface ChangeHooks {
  /** A command line of the user's, run by /bin/sh -c as given: the new paths arrive in the environment, never spliced into it. */
  exec?: string;
  /** A systemd unit to reload (or restart): `systemctl try-reload-or-restart UNIT`. */
  reloadUnit?: string;
  timeoutMs: number;
}

/**
 * The only variables a hook inherits: where it runs and how to log (systemd's journal stream
 * included). Nothing of cert-retriever's own settings reaches it, so no secret can (a password,
 * a PIN in a --key URI, the path of a credentials file or directory).
 */
const INHERITED_ENV = /^(PATH|HOME|USER|LOGNAME|SHELL|LANG|LANGUAGE|LC_[A-Z]+|TZ|TERM|TMPDIR|NO_COLOR|INVOCATION_ID|JOURNAL_STREAM|STATE_DIRECTORY|RUNTIME_DIRECTORY|CACHE_DIRECTORY)$/;

/**
 * Runs `--exec`, then `--reload-unit`, each bounded by the timeout; the first failure stops and is
 * thrown as `hook-failed` (the credentials stay stored). The hook's output goes to stderr, so that
 * `--json` keeps stdout for the result.
 */
export async function runChangeHooks(result: EnrollResult, hooks: ChangeHooks): Promise<void> {
  const env = hookEnvironment(result);
  if (hooks.exec) await runHook("--exec", "/bin/sh", ["-c", hooks.exec], env, hooks.timeoutMs);
  if (hooks.reloadUnit) await runHook("--reload-unit", "systemctl", ["try-reload-or-restart", "--", hooks.reloadUnit], env, hooks.timeoutMs);
}

/** The inherited part of this process's environment, plus where the new credentials are. */
export function hookEnvironment(result: EnrollResult): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => INHERITED_ENV.test(name)));
  const files = result.store.files;
  const set = (name: string, value: string | undefined) => {
    if (value !== undefined) env[`CERT_RETRIEVER_${name}`] = value;
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

function runHook(flag: string, file: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<void> {
  const what = flag === "--exec" ? `${flag} '${args[1]}'` : `${flag} ${args.at(-1)}`;
  const fail = (why: string) =>
    new CertRetrieverError(`hook failed: ${what} ${why}; the new credentials are stored and stay`, { step: "hook", reason: "hook-failed" });
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
      if (code === 0) {
        say(`hook ${what}: done (${Math.round(performance.now() - started)} ms)`);
        resolve();
      } else reject(fail(signal ? `was killed by ${signal}` : `exited with ${code}`));
    });
  });
}
