import type { Stats } from "node:fs";
import { lstat, readdir, readFile, rename, rm, unlink } from "node:fs/promises";
import { basename, isAbsolute, join } from "node:path";
import { CertRetrieverError, describeCause } from "../errors.js";
import { storageError, syncDirectory } from "../fs/safe-dir.js";
import { type CredentialPaths, STAGING_PREFIX } from "./names.js";

/** Name of the mark, inside a staging directory, that makes its write the one to finish. */
export const COMMIT_MARK = "COMMIT";

/**
 * The text of a commit mark: the names of the written files, in the order of `new-<i>`, relative
 * to the credentials directory (so that the directory can be moved).
 */
export function commitMark(targets: string[]): string {
  return JSON.stringify(targets.map((t) => basename(t)));
}

/** What a `.staging-*` entry is to this store. */
type Staging =
  /** Not a directory of ours that only we can write (a link, a file, another user's): never touched. */
  | { kind: "foreign"; name: string }
  /** Ours, without a (whole) commit mark: nothing was renamed yet, so it is removed. */
  | { kind: "unfinished"; name: string; path: string }
  /** Ours, its mark names this store's own files: rolled forward. */
  | { kind: "committed"; name: string; path: string; targets: string[] }
  /** Ours, but its mark or its files are not this store's: left alone. */
  | { kind: "refused"; name: string; reason: string };

/**
 * Finishes or undoes the writes that a killed process left in the credentials directory (call it
 * holding the lock). Only a staging directory of ours that only we can write is touched; one
 * without a commit mark is removed; one whose mark names this store's own files, and whose staged
 * files are ours, is rolled forward onto those files; any other is left alone with a note. Returns
 * what it did, for the run's notes; a file-system error is a storage error, and the next run retries.
 */
export async function recoverInterruptedWrites(paths: CredentialPaths): Promise<string[]> {
  const notes: string[] = [];
  for (const s of await stagingEntries(paths)) {
    const shown = JSON.stringify(s.name);
    if (s.kind === "foreign") {
      notes.push(
        `ignored ${shown} in ${paths.dir}: it is not a staging directory of this user's (a link, a file, another user's, or one others can write)`,
      );
    } else if (s.kind === "refused") {
      notes.push(`left ${shown} in ${paths.dir} alone: ${s.reason}`);
    } else if (s.kind === "committed") {
      await rollForward(paths, s.path, s.targets);
      notes.push(`completed a write that an earlier run committed but did not finish (${s.name})`);
    } else {
      await rm(s.path, { recursive: true, force: true }).catch((err: unknown) => {
        throw storageError(
          `cannot remove the unfinished write ${s.path} of an earlier run: ${describeCause(err)}`,
          err,
        );
      });
      notes.push(`removed an unfinished write of an earlier run (${s.name}); the previous files were never touched`);
    }
  }
  return notes;
}

/** Whether a write to this store's files was left unfinished (one that recovery would finish or undo). */
export async function hasInterruptedWrite(paths: CredentialPaths): Promise<boolean> {
  return (await stagingEntries(paths)).some((s) => s.kind === "unfinished" || s.kind === "committed");
}

/**
 * After a write's renames: the key file of the other kind goes (a token key's URI replaces a key
 * file, and a key file a URI), so that the certificate and the key named beside it always belong
 * together. Part of the committed write: a run killed before it is finished by the next.
 */
export async function removeOtherKeyKind(paths: CredentialPaths, targets: string[]): Promise<void> {
  const other = otherKeyKind(paths, targets);
  if (other) {
    await unlink(other).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
  }
}

/** The key file of the kind a write does not write, if it writes a key. */
export function otherKeyKind(paths: CredentialPaths, targets: string[]): string | undefined {
  return targets.includes(paths.keyUri) ? paths.key : targets.includes(paths.key) ? paths.keyUri : undefined;
}

async function rollForward(paths: CredentialPaths, staging: string, targets: string[]): Promise<void> {
  const dir = paths.dir;
  try {
    for (const [i, target] of targets.entries()) {
      // A staged file that is gone was renamed into place before the crash.
      await rename(join(staging, `new-${i}`), target).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "ENOENT") throw err;
      });
    }
    await removeOtherKeyKind(paths, targets);
    await syncDirectory(dir);
    await rm(staging, { recursive: true, force: true });
  } catch (err) {
    throw storageError(
      `cannot complete the write an earlier run committed in ${dir}: ${describeCause(err)}; the next run tries again`,
      err,
    );
  }
}

async function stagingEntries(paths: CredentialPaths): Promise<Staging[]> {
  try {
    const entries = await readdir(paths.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT" || err.code === "ENOTDIR") return [] as string[]; // no directory, no write
      throw err;
    });
    const names = entries.filter((n) => n.startsWith(STAGING_PREFIX)).sort();
    return await Promise.all(names.map((name) => classify(paths, name)));
  } catch (err) {
    if (err instanceof CertRetrieverError) throw err;
    throw storageError(`cannot look for unfinished writes in ${paths.dir}: ${describeCause(err)}`, err);
  }
}

async function classify(paths: CredentialPaths, name: string): Promise<Staging> {
  const path = join(paths.dir, name);
  const dirStat = await lstatIfAny(path);
  if (!dirStat?.isDirectory() || !ours(dirStat)) return { kind: "foreign", name };
  const markStat = await lstatIfAny(join(path, COMMIT_MARK));
  if (!markStat) return { kind: "unfinished", name, path };
  const notOurs = { kind: "refused", name, reason: "it holds a file that is not this user's" } as const;
  if (!markStat.isFile() || !ours(markStat)) return notOurs;
  let entries: unknown;
  try {
    entries = JSON.parse(await readFile(join(path, COMMIT_MARK), "utf8"));
  } catch (err) {
    if (err instanceof SyntaxError) return { kind: "unfinished", name, path }; // cut short by the crash: written before any rename
    throw err;
  }
  const files = markedTargets(paths, entries);
  if (!files)
    return {
      kind: "refused",
      name,
      reason: "its commit mark names files that are not this device's (another device's write, or not one of ours)",
    };
  for (const i of files.keys()) {
    const staged = await lstatIfAny(join(path, `new-${i}`));
    if (staged && !(staged.isFile() && ours(staged))) return notOurs;
  }
  return { kind: "committed", name, path, targets: files };
}

/**
 * The files a commit mark names, if each is one of this store's own: a bare name (as this version
 * writes them) or, from a mark of the previous version, exactly one of the store's absolute paths.
 * Anything else (another path, "..", another device's file, a repeat) refuses the whole mark.
 */
function markedTargets(paths: CredentialPaths, entries: unknown): string[] | undefined {
  if (!Array.isArray(entries) || entries.length === 0) return undefined;
  const own = [paths.ca, paths.certificate, paths.key, paths.keyUri, paths.profile, ...Object.values(paths.der)];
  const files: string[] = [];
  for (const entry of entries) {
    if (typeof entry !== "string") return undefined;
    const file = own.find((p) => (isAbsolute(entry) ? p === entry : basename(p) === entry));
    if (!file || files.includes(file)) return undefined;
    files.push(file);
  }
  return files;
}

/** Owned by the user we run as, and writable by nobody else. */
function ours(st: Stats): boolean {
  const me = process.getuid?.();
  return me === undefined || (st.uid === me && (st.mode & 0o022) === 0);
}

async function lstatIfAny(path: string): Promise<Stats | undefined> {
  return lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT" || err.code === "ENOTDIR") return undefined;
    throw err;
  });
}
