import { constants } from "node:fs";
import { type FileHandle, open, rename, rmdir, stat, unlink } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { CertRetrieverError, describeCause, errnoOf } from "../errors.js";
import { writableByOthers } from "./file-trust.js";
import { type PathProblem, type PathWalk, problemOnPath, walkPath } from "./trusted-path.js";

/**
 * Creates the credentials directory (and each missing one above it) with mode 0700 if it is
 * missing, and refuses it (`storage-unsafe`) unless every directory from / down to it belongs to
 * root or to us and no one else can write it (a sticky one such as /tmp is fine on the way): crash
 * recovery renames files found there, and a link planted on the way would send the key elsewhere.
 * Returns the directories it created, top first, so that a failed run can remove them again.
 */
export async function prepareDirectory(outDir: string, what = "the output directory"): Promise<string[]> {
  const dir = resolve(outDir);
  let walk: PathWalk;
  try {
    walk = await walkPath(dir, { expect: "directory", create: true });
  } catch (err) {
    const doing =
      (err as NodeJS.ErrnoException).syscall === "mkdir" ? "create the directory" : "check who may write in";
    throw storageError(`cannot ${doing} ${dir}: ${describeCause(err)}`, err, dir);
  }
  if (!walk.problem) return walk.created;
  await removeCreatedDirectories(walk.created);
  throw await directoryRefused(dir, walk.problem, what);
}

/**
 * Refuses (`storage-unsafe`) a directory that is read or written without being made, as
 * {@link prepareDirectory} would; whether it exists.
 */
export async function checkDirectory(dir: string, what = "the output directory"): Promise<boolean> {
  const path = resolve(dir);
  const walk = await walkPath(path, { expect: "directory" }).catch((err: unknown) => {
    throw storageError(`cannot check who may write in ${path}: ${describeCause(err)}`, err, path);
  });
  if (walk.problem) throw await directoryRefused(path, walk.problem, what);
  return walk.exists;
}

/**
 * The refusal of the directory `dir` (absolute) for `problem`: when none of it is there, the
 * directory it would have been made in is the one named.
 */
async function directoryRefused(dir: string, problem: PathProblem, what: string): Promise<CertRetrieverError> {
  const exists = await stat(dir).then(
    () => true,
    () => false,
  );
  if (exists) return unsafeError(`refusing ${what} ${dir}`, problem, dir);
  const { path, via } = problem;
  return unsafeError(`refusing to create ${what} in ${path}${via ? ` (through the link ${via})` : ""}`, problem, path);
}

/** Refuses (`storage-unsafe`) a file to be written, such as a token, whose directories another user could swap; a missing file is fine. */
export async function checkFilePath(file: string, what: string): Promise<void> {
  const path = resolve(file);
  const walk = await walkPath(path, { expect: "file" }).catch((err: unknown) => {
    throw storageError(`cannot check who may write in ${dirname(path)}: ${describeCause(err)}`, err, path);
  });
  if (walk.problem) throw unsafeError(`refusing ${what} ${path}`, walk.problem, path);
}

/** `storage-unsafe`: `message`, then the walk's problem as it concerns `subject` (see {@link problemOnPath}). */
function unsafeError(message: string, problem: PathProblem, subject: string): CertRetrieverError {
  return new CertRetrieverError(`store failed: ${message}${problemOnPath(problem, subject)}`, {
    step: "store",
    reason: "storage-unsafe",
    facts: { path: problem.path },
  });
}

/**
 * Reads a file of a trusted directory, one that is acted on (credentials, a journal, a cached
 * CRL): opened without following a link and without blocking (a FIFO in its place is refused at
 * once instead of holding the run past its deadline), and refused (`storage-unsafe`) unless it is
 * a regular file of root's or ours that no one else can write. Undefined when there is none.
 */
export async function readTrustedFile(path: string): Promise<string | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | (constants.O_NOFOLLOW ?? 0));
  } catch (err) {
    const code = errnoOf(err);
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    if (code === "ELOOP") throw unsafeError(`refusing ${path}`, { path, reason: "it is a symbolic link" }, path);
    throw storageError(`cannot read ${path}: ${describeCause(err)}`, err, path);
  }
  try {
    const st = await handle.stat();
    if (!st.isFile())
      throw storageError(`${path} is not a regular file, where cert-retriever keeps one (remove it)`, undefined, path);
    const reason = writableByOthers(st);
    if (reason) throw unsafeError(`refusing ${path}`, { path, reason }, path);
    return await handle.readFile("utf8");
  } finally {
    await handle.close();
  }
}

/** Removes the directories a failed run created (listed top first), deepest first, while they are empty. */
export async function removeCreatedDirectories(created: readonly string[]): Promise<void> {
  for (const dir of [...created].reverse()) {
    if (
      !(await rmdir(dir).then(
        () => true,
        () => false,
      ))
    )
      return;
  }
}

/**
 * Replaces `path` whole with `text` (mode `mode`): written beside it, fsynced, renamed over it, the
 * directory synced. A reader sees the old file or the new one, never half of one.
 */
export async function replaceFile(path: string, text: string | Uint8Array, mode: number): Promise<void> {
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

/** A storage failure in one sentence, with the system error and the path as facts. */
export function storageError(message: string, cause: unknown, path?: string): CertRetrieverError {
  return new CertRetrieverError(`store failed: ${message}`, {
    step: "store",
    reason: "storage-failed",
    facts: { errno: errnoOf(cause), ...(path ? { path } : {}) },
    cause,
  });
}
