import { readFileSync } from "node:fs";
import { open, readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CertRetrieverError, describeCause } from "../errors.js";
import { ExitCode } from "../exit-codes.js";

/** Name of the lock file inside a credentials directory. */
export const LOCK_FILE = ".cert-retriever.lock";

/** How long a run waits for another to finish before it gives up. */
export const LOCK_WAIT_MS = 5_000;

/**
 * Takes the directory's lock (a file created exclusively, holding our pid) so that two runs
 * (systemd and a person) cannot interleave. A second run waits up to `waitMs` for the first, then
 * stops (exit 75). A lock left by a process that is gone is taken over. Returns the release function.
 */
export async function acquireLock(dir: string, waitMs = LOCK_WAIT_MS): Promise<() => Promise<void>> {
  const path = join(dir, LOCK_FILE);
  const giveUpAt = Date.now() + waitMs;
  for (;;) {
    try {
      const handle = await open(path, "wx", 0o600);
      try {
        await handle.writeFile(`${process.pid} ${bootId()}\n`);
      } catch (err) {
        await handle.close();
        await unlink(path).catch(() => undefined);
        throw err;
      }
      await handle.close();
      return async () => {
        await unlink(path).catch(() => undefined);
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") {
        throw new CertRetrieverError(`lock failed: cannot create ${path}: ${describeCause(err)}`, {
          step: "lock",
          exitCode: ExitCode.STORAGE,
          hint: "check that the output directory (--out) is writable",
          cause: err,
        });
      }
    }
    const [pidText, boot] = (await readFile(path, "utf8").catch(() => "")).trim().split(/\s+/);
    const pid = Number.parseInt(pidText ?? "", 10);
    // A pid from before a reboot may now belong to another process: the boot id tells.
    const sameBoot = !boot || boot === bootId();
    if (!(Number.isInteger(pid) && pid > 0 && sameBoot && isAlive(pid))) {
      await unlink(path).catch(() => undefined); // stale: its process is gone
      continue;
    }
    if (Date.now() >= giveUpAt) {
      throw new CertRetrieverError(`lock failed: another cert-retriever run (pid ${pid}) is using ${dir}`, {
        step: "lock",
        exitCode: ExitCode.TEMPORARY,
        hint: "wait for it to finish and run again",
      });
    }
    await sleep(100);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The kernel's id of this boot ("-" where there is none). */
function bootId(): string {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return "-";
  }
}
