import { mkdir, open, rmdir, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { CertRetrieverError, describeCause } from "../errors.js";
import { ExitCode } from "../exit-codes.js";
import { writableByOthers } from "../file-trust.js";

/**
 * Creates the credentials directory with mode 0700 if it is missing, and refuses it (exit 15)
 * when another user could write in it: `dir` itself, each directory this run created, and the
 * directory it created them in (which may be a sticky one such as /tmp). Crash recovery renames
 * files found there, so a directory others can write would let them choose what lands where.
 * Returns the topmost directory it created, so that a failed run can remove it again, or undefined.
 */
export async function prepareDirectory(outDir: string): Promise<string | undefined> {
  const dir = resolve(outDir);
  let created: string | undefined;
  try {
    created = await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw storageError(`cannot create the directory ${dir}: ${describeCause(err)}`, err);
  }
  try {
    if (created) await refuseUntrusted(dirname(created), `refusing to create the output directory in ${dirname(created)}`, true);
    // `dir`, then each directory above it that this run created (0700, unless one was swapped meanwhile).
    for (let d = dir; ; d = dirname(d)) {
      await refuseUntrusted(d, d === dir ? `refusing the output directory ${d}` : `refusing the directory ${d}, made for the output directory`);
      if (!created || d.length <= created.length) break;
    }
  } catch (err) {
    await removeCreatedDirectory(dir, created);
    throw err;
  }
  return created;
}

async function refuseUntrusted(dir: string, what: string, stickyIsFine = false): Promise<void> {
  let reason: string | undefined;
  try {
    reason = writableByOthers(await stat(dir), stickyIsFine);
  } catch (err) {
    throw storageError(`cannot check who may write in ${dir}: ${describeCause(err)}`, err);
  }
  if (reason) {
    throw new CertRetrieverError(`store failed: ${what}: ${reason}`, {
      step: "store",
      exitCode: ExitCode.STORAGE,
      hint: reason.startsWith("other users")
        ? `make it writable by its owner only (chmod go-w ${dir}), or keep the credentials elsewhere`
        : "have it owned by root or by the user that runs cert-retriever, or keep the credentials elsewhere",
    });
  }
}

/** Removes directories a failed run created, if they are still empty. */
export async function removeCreatedDirectory(dir: string, createdTop: string | undefined): Promise<void> {
  if (!createdTop) return;
  let current = resolve(dir);
  while (current.length >= createdTop.length) {
    if (!(await rmdir(current).then(() => true, () => false))) return;
    if (current === createdTop) return;
    current = join(current, "..");
  }
}

/** Makes the renames and removals in `dir` durable. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A storage failure (exit 15) in one sentence. */
export function storageError(message: string, cause: unknown, hint = "check that the output directory (--out) is writable and has free space"): CertRetrieverError {
  return new CertRetrieverError(`store failed: ${message}`, { step: "store", exitCode: ExitCode.STORAGE, hint, cause });
}
