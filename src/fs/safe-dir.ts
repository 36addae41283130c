import { mkdir, open, rename, rmdir, stat, unlink } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { CertRetrieverError, describeCause, errnoOf } from "../errors.js";
import { writableByOthers } from "./file-trust.js";

/**
 * Creates the credentials directory with mode 0700 if it is missing, and refuses it (`storage-unsafe`)
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
    const real = await mkdirError(dir, err);
    throw storageError(`cannot create the directory ${dir}: ${describeCause(real)}`, real, dir);
  }
  try {
    if (created)
      await refuseUntrusted(dirname(created), `refusing to create the output directory in ${dirname(created)}`, true);
    // `dir`, then each directory above it that this run created (0700, unless one was swapped meanwhile).
    for (let d = dir; ; d = dirname(d)) {
      await refuseUntrusted(
        d,
        d === dir ? `refusing the output directory ${d}` : `refusing the directory ${d}, made for the output directory`,
      );
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
    throw storageError(`cannot check who may write in ${dir}: ${describeCause(err)}`, err, dir);
  }
  if (reason)
    throw new CertRetrieverError(`store failed: ${what}: ${reason}`, {
      step: "store",
      reason: "storage-unsafe",
      facts: { path: dir },
    });
}

/** Removes directories a failed run created, if they are still empty. */
export async function removeCreatedDirectory(dir: string, createdTop: string | undefined): Promise<void> {
  if (!createdTop) return;
  let current = resolve(dir);
  while (current.length >= createdTop.length) {
    if (
      !(await rmdir(current).then(
        () => true,
        () => false,
      ))
    )
      return;
    if (current === createdTop) return;
    current = join(current, "..");
  }
}

/**
 * Replaces `path` whole with `text` (mode `mode`): written beside it, fsynced, renamed over it, the
 * directory synced. A reader sees the old file or the new one, never half of one.
 */
export async function replaceFile(path: string, text: string, mode: number): Promise<void> {
  const staged = `${path}.${process.pid}.tmp`;
  await unlink(staged).catch(() => undefined); // a crashed run's, with this pid
  try {
    const handle = await open(staged, "wx", mode);
    try {
      await handle.writeFile(text);
      await handle.chmod(mode); // the umask may have cleared bits
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(staged, path);
  } catch (err) {
    await unlink(staged).catch(() => undefined);
    throw err;
  }
  await syncDirectory(dirname(path));
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

/**
 * The error a recursive mkdir hides: libuv reports ENOENT for a missing directory on a read-only
 * file system (EROFS) or one we may not write (EACCES). Creating the first missing directory by
 * itself gives the true cause.
 */
async function mkdirError(dir: string, err: unknown): Promise<unknown> {
  if (errnoOf(err) !== "ENOENT") return err;
  let missing = dir;
  for (let parent = dirname(dir); parent !== missing; missing = parent, parent = dirname(parent)) {
    if (
      await stat(parent).then(
        () => true,
        () => false,
      )
    ) {
      return mkdir(missing, { mode: 0o700 }).then(
        async () => {
          await rmdir(missing).catch(() => undefined);
          return err;
        },
        (real: unknown) => real,
      );
    }
  }
  return err;
}

/** A storage failure in one sentence, with the system error and the path as facts. */
export function storageError(message: string, cause: unknown, path?: string): CertRetrieverError {
  return new CertRetrieverError(`store failed: ${message}`, {
    step: "store",
    reason: "storage-failed",
    facts: { errno: errnoOf(cause), ...(path ? { path } : {}) },
    cause,
  });
}
