import { open, readFile, unlink } from "node:fs/promises";
import { join } from "node:path";
import { CertRetrieverError, describeCause } from "../errors.js";
import { ExitCode } from "../exit-codes.js";

/** Name of the lock file inside a credentials directory. */
export const LOCK_FILE = ".cert-retriever.lock";

/**
 * Takes the directory's lock (a file created exclusively, holding our pid) so that two runs
 * (systemd and a person) cannot interleave. A lock left by a process that is gone is taken over.
 * Returns the function that releases it.
 */
export async function acquireLock(dir: string): Promise<() => Promise<void>> {
  const path = join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(path, "wx", 0o600);
      await handle.writeFile(`${process.pid}\n`);
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
      const pid = Number.parseInt(await readFile(path, "utf8").catch(() => ""), 10);
      if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) {
        throw new CertRetrieverError(`lock failed: another cert-retriever run (pid ${pid}) is using ${dir}`, {
          step: "lock",
          exitCode: ExitCode.TEMPORARY,
          hint: "wait for it to finish and run again",
        });
      }
      await unlink(path).catch(() => undefined); // stale: its process is gone
    }
  }
  throw new CertRetrieverError(`lock failed: could not take the lock ${path}`, {
    step: "lock",
    exitCode: ExitCode.TEMPORARY,
    hint: "run again",
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
