import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { link, open, readFile, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CertRetrieverError, describeCause, errnoOf } from "../errors.js";

/** Name of the lock file inside a credentials directory. */
export const LOCK_FILE = ".cert-retriever.lock";

/** How long a run waits for another to finish before it gives up. */
const LOCK_WAIT_MS = 5_000;

/**
 * Takes the directory's lock (a file created exclusively, holding our pid, the boot id and the
 * process's start time) so that two runs (systemd and a person) cannot interleave. A second run
 * waits up to `waitMs` for the first, then stops (`busy`). A lock left by a process that is gone
 * is taken over: its pid is dead, or ours (a killed run in a container was pid 1 too), or now
 * belongs to a process started at another time, or it was taken before a reboot. Returns the
 * release function. (Node has no flock(2) without a native addon.)
 */
export async function acquireLock(dir: string, waitMs = LOCK_WAIT_MS): Promise<() => Promise<void>> {
  const path = join(dir, LOCK_FILE);
  const giveUpAt = Date.now() + waitMs;
  const content = `${process.pid} ${bootId()} ${startTime(process.pid) ?? "-"}\n`;
  for (;;) {
    if (await createWithContent(path, content)) {
      return async () => {
        await unlink(path).catch(() => undefined);
      };
    }
    // Gone between our attempt and this read (released meanwhile): try again, judging nothing.
    const seen = await readFile(path, "utf8").catch(() => undefined);
    if (seen === undefined) continue;
    const [pidText, boot, started] = seen.trim().split(/\s+/);
    const pid = Number.parseInt(pidText ?? "", 10);
    // A pid from before a reboot may now belong to another process: the boot id tells; a pid
    // reused since: its start time tells.
    const sameBoot = !boot || boot === bootId();
    const sameProcess = !started || started === "-" || startTime(pid) === undefined || startTime(pid) === started;
    if (!(Number.isInteger(pid) && pid > 0 && pid !== process.pid && sameBoot && sameProcess && isAlive(pid))) {
      await removeStale(path, seen);
      continue;
    }
    if (Date.now() >= giveUpAt) {
      throw new CertRetrieverError(`lock failed: another cert-retriever run (pid ${pid}) is using ${dir}`, {
        step: "lock",
        reason: "busy",
        facts: { path: dir },
      });
    }
    await sleep(100);
  }
}

/**
 * Creates `path` holding `content` atomically: written to a private name, then hard-linked into
 * place, so no other run ever sees the lock empty. False if `path` exists.
 */
async function createWithContent(path: string, content: string): Promise<boolean> {
  const mine = `${path}.${process.pid}.${randomBytes(4).toString("hex")}`;
  try {
    const handle = await open(mine, "wx", 0o600);
    try {
      await handle.writeFile(content);
    } finally {
      await handle.close();
    }
    await link(mine, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw new CertRetrieverError(`lock failed: cannot create ${path}: ${describeCause(err)}`, {
      step: "lock",
      reason: "storage-failed",
      facts: { path, errno: errnoOf(err) },
      cause: err,
    });
  } finally {
    await unlink(mine).catch(() => undefined);
  }
}

/**
 * Removes a lock judged stale from its content `seen`, without removing a fresh lock that another
 * run may have put in its place meanwhile: the lock is first renamed to a private name (only one
 * run can win that), then checked; a fresh one is put back.
 */
async function removeStale(path: string, seen: string): Promise<void> {
  const aside = `${path}.stale.${process.pid}.${randomBytes(4).toString("hex")}`;
  try {
    await rename(path, aside);
  } catch {
    return; // gone already, or another run took it aside
  }
  const taken = await readFile(aside, "utf8").catch(() => "");
  if (taken !== seen) await link(aside, path).catch(() => undefined); // a fresh lock: put it back
  await unlink(aside).catch(() => undefined);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** When process `pid` started, in clock ticks since boot (field 22 of /proc/<pid>/stat), if known. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
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
