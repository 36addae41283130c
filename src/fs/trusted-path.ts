/**
 * The path walk OpenSSH does for authorized_keys (auth_secure_path): a path is trusted only if
 * every directory from / down to it, and it, belong to root or to the user we run as and no one
 * else can write them. Otherwise another user could swap a directory on the way (a link planted
 * in a parent) or put files where we read and write.
 */
import type { Stats } from "node:fs";
import { lstat, mkdir, readlink } from "node:fs/promises";
import { dirname, isAbsolute, join, resolve, sep } from "node:path";
import { writableByOthers } from "./file-trust.js";

/** Where a walk found a path untrusted: the entry that failed, why, and the last link that led there. */
export interface PathProblem {
  path: string;
  reason: string;
  via?: string;
}

/** What a walk found: the path with every link resolved, whether it exists, the directories it made (top first), or the problem. */
export interface PathWalk {
  real: string;
  exists: boolean;
  created: string[];
  problem?: PathProblem;
}

/** What the walked path must be, and whether its missing directories are made (mode 0700). */
export interface WalkOptions {
  expect: "directory" | "file";
  create?: boolean;
}

/** Links followed before a walk gives up, as the kernel does (ELOOP). */
const MAX_LINKS = 40;

interface Walk {
  real: string;
  pending: string[];
  links: number;
  via?: string;
  created: string[];
}

/**
 * Walks `path` (made absolute, `..` taken lexically as the callers join paths) from / down, as
 * OpenSSH checks authorized_keys: each directory must belong to root or to us and be writable by no
 * one else; a sticky directory writable by all (/tmp) is fine on the way, since the next entry is
 * then checked to be root's or ours. A link must be root's or ours, and its target is walked the
 * same way (from / for an absolute one). The last entry must be a directory or a regular file, as
 * `opts.expect` says, and writable by no one else even if sticky. Missing directories are made one
 * at a time with mode 0700 when `opts.create` says so (one planted meanwhile is judged as found),
 * else the walk stops there (`exists` false). File-system errors are thrown. On a system without
 * user ids (Windows) nothing is judged.
 */
export async function walkPath(path: string, opts: WalkOptions): Promise<PathWalk> {
  const target = resolve(path);
  if (process.getuid === undefined) return unjudged(target, opts);
  const walk: Walk = { real: sep, pending: components(target), links: 0, created: [] };
  const rootProblem = judge(await lstat(sep), walk.pending.length === 0, opts.expect);
  if (rootProblem) return found(walk, true, { path: sep, reason: rootProblem });
  while (walk.pending.length > 0) {
    const name = walk.pending.shift()!;
    if (name === "..") {
      walk.real = join(walk.real, "..");
      continue;
    }
    const next = join(walk.real, name);
    const st = await entry(next, walk, opts);
    if (!st) return { real: join(next, ...walk.pending), exists: false, created: walk.created };
    const problem = st.isSymbolicLink()
      ? await followLink(next, st, walk)
      : judge(st, walk.pending.length === 0, opts.expect);
    if (problem) return found(walk, true, { path: next, reason: problem, ...(walk.via ? { via: walk.via } : {}) });
    if (!st.isSymbolicLink()) walk.real = next;
  }
  return found(walk, true);
}

/** Where there are no user ids to judge by: the path made if asked, and whether it exists. */
async function unjudged(target: string, opts: WalkOptions): Promise<PathWalk> {
  const top = opts.create ? await mkdir(target, { recursive: true, mode: 0o700 }) : undefined;
  const exists = await lstat(target).then(
    () => true,
    () => false,
  );
  const created: string[] = [];
  for (let d = target; top && d.length >= top.length; d = dirname(d)) created.unshift(d);
  return { real: target, exists, created };
}

/** The walk's result so far. */
function found(walk: Walk, exists: boolean, problem?: PathProblem): PathWalk {
  return { real: walk.real, exists, created: walk.created, ...(problem ? { problem } : {}) };
}

/** The components of an absolute path or a link's text, `.` and empty ones left out. */
function components(path: string): string[] {
  return path.split(sep).filter((c) => c !== "" && c !== ".");
}

/** The entry `path` as lstat sees it; a missing one is made (a directory, 0700) when asked, else undefined. */
async function entry(path: string, walk: Walk, opts: WalkOptions): Promise<Stats | undefined> {
  const st = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
  if (st || !opts.create) return st;
  const made = await mkdir(path, { mode: 0o700 }).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === "EEXIST") return false; // planted meanwhile: judged below like any other
      throw err;
    },
  );
  if (made) walk.created.push(path);
  return lstat(path);
}

/** Why a link is not to be followed (another user's, or one link too many), or undefined after queuing its target's components. */
async function followLink(path: string, st: Stats, walk: Walk): Promise<string | undefined> {
  const owner = ownerProblem(st);
  if (owner) return owner;
  if (++walk.links > MAX_LINKS) return "it is one of too many symbolic links (a loop?)";
  const text = await readlink(path);
  if (isAbsolute(text)) walk.real = sep;
  walk.pending.unshift(...components(text));
  walk.via = path;
  return undefined;
}

/** Why the entry `st` cannot be trusted, if it cannot: of the wrong kind, or another user's, or writable by others. */
function judge(st: Stats, last: boolean, expect: WalkOptions["expect"]): string | undefined {
  if (last && expect === "file") {
    if (!st.isFile()) return "it is not a regular file";
  } else if (!st.isDirectory()) return "it is not a directory";
  return writableByOthers(st, !last);
}

/** A link's mode means nothing; who owns it does (in a sticky directory, another user may have made it). */
function ownerProblem(st: Stats): string | undefined {
  return writableByOthers({ mode: 0, uid: st.uid });
}

/**
 * A walk's problem as the end of a sentence about `subject`: `: <reason>` when `subject` itself
 * failed, else ` because of <entry> (through the link <link>) on its path: <reason>`.
 */
export function problemOnPath(problem: PathProblem, subject: string): string {
  if (problem.path === subject) return `: ${problem.reason}`;
  const through = problem.via ? ` (through the link ${problem.via})` : "";
  return ` because of ${problem.path}${through} on its path: ${problem.reason}`;
}
