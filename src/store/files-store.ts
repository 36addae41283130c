import { link, mkdir, mkdtemp, open, readdir, readFile, rename, rm, rmdir, stat, unlink } from "node:fs/promises";
import { join, resolve } from "node:path";
import { CertRetrieverError, describeCause } from "../errors.js";
import { ExitCode } from "../exit-codes.js";
import { faultPoint } from "../fault.js";
import { acquireLock } from "./lock.js";
import type { CredentialPems, CredentialStore, OpenStore, StoredCredentials } from "./types.js";

/** Where a device's credentials live: the names dojot's retriever and the mosquitto_pub examples use. */
export interface CredentialPaths {
  dir: string;
  /** `<device-id>.key`, PKCS#8 PEM, mode 0600. */
  key: string;
  /** `<device-id>.crt`, PEM. */
  certificate: string;
  /** `<ca-name>.crt`, PEM. */
  ca: string;
  /** `<device-id>.profile.json`: the identity profile, when one other than generic was used. */
  profile: string;
}

export type { CredentialPems } from "./types.js";

/** The paths of a device's credentials in `dir`. */
export function credentialPaths(outDir: string, deviceId: string, caName: string): CredentialPaths {
  const dir = resolve(outDir);
  return { dir, key: join(dir, `${deviceId}.key`), certificate: join(dir, `${deviceId}.crt`), ca: join(dir, `${caName}.crt`), profile: join(dir, `${deviceId}.profile.json`) };
}

/** Credentials as PEM files in a directory, written crash-safely under a lock. */
export class FilesStore implements CredentialStore {
  readonly kind = "files";
  readonly paths: CredentialPaths;

  constructor(outDir: string, deviceId: string, caName: string) {
    this.paths = credentialPaths(outDir, deviceId, caName);
  }

  get location(): string {
    return this.paths.dir;
  }

  async read(): Promise<StoredCredentials> {
    const read = (p: string) =>
      readFile(p, "utf8").catch((err: NodeJS.ErrnoException) => {
        if (err.code === "ENOENT" || err.code === "ENOTDIR") return undefined;
        throw storageError(`cannot read ${p}: ${describeCause(err)}`, err);
      });
    const [keyPem, certificatePem, caPem, profileJson] = await Promise.all([read(this.paths.key), read(this.paths.certificate), read(this.paths.ca), read(this.paths.profile)]);
    const parts = { keyPem, certificatePem, caPem };
    const present = (Object.keys(parts) as Array<keyof typeof parts>).filter((k) => parts[k] !== undefined);
    const interrupted = (await readdir(this.paths.dir).catch(() => [] as string[])).some((n) => n.startsWith(STAGING_PREFIX));
    return {
      pems: keyPem !== undefined && certificatePem !== undefined && caPem !== undefined ? { keyPem, certificatePem, caPem, profileJson } : undefined,
      present,
      where: { keyPem: this.paths.key, certificatePem: this.paths.certificate, caPem: this.paths.ca },
      interrupted,
    };
  }

  async open(): Promise<OpenStore> {
    const createdDir = await ensureDirectory(this.paths.dir);
    let release: () => Promise<void>;
    try {
      release = await acquireLock(this.paths.dir);
    } catch (err) {
      await removeCreatedDirectory(this.paths.dir, createdDir);
      throw err;
    }
    const notes = await recoverInterruptedWrites(this.paths.dir);
    return {
      notes,
      close: async (succeeded) => {
        await release();
        if (!succeeded) await removeCreatedDirectory(this.paths.dir, createdDir);
      },
    };
  }

  async write(pems: CredentialPems): Promise<void> {
    await writeCredentials(this.paths, pems);
    // A profile recorded by an earlier enrollment must not outlive one made without it.
    if (pems.profileJson === undefined) await unlink(this.paths.profile).catch(() => undefined);
  }
}

/**
 * Creates the credentials directory with mode 0700 if it is missing. Returns the topmost
 * directory it created, so that a failed run can remove it again, or undefined.
 */
export async function ensureDirectory(dir: string): Promise<string | undefined> {
  try {
    return await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw storageError(`cannot create the directory ${dir}: ${describeCause(err)}`, err);
  }
}

/** Removes directories a failed run created, if they are still empty. */
export async function removeCreatedDirectory(dir: string, createdTop: string | undefined): Promise<void> {
  if (!createdTop) return;
  let current = dir;
  while (current.length >= createdTop.length) {
    if (!(await rmdir(current).then(() => true, () => false))) return;
    if (current === createdTop) return;
    current = join(current, "..");
  }
}

const STAGING_PREFIX = ".staging-";
const COMMIT_MARK = "COMMIT";

/** One file of a write: staged as `new-<i>`, its previous version kept as `old-<i>`. */
interface PlanItem {
  target: string;
  text: string;
  mode: number;
}

function planOf(paths: CredentialPaths, pems: CredentialPems): PlanItem[] {
  const plan = [
    { target: paths.ca, text: pems.caPem, mode: 0o644 },
    { target: paths.certificate, text: pems.certificatePem, mode: 0o644 },
    { target: paths.key, text: pems.keyPem, mode: 0o600 },
  ];
  if (pems.profileJson !== undefined) plan.push({ target: paths.profile, text: pems.profileJson, mode: 0o644 });
  return plan;
}

/**
 * Writes the three files so that a reader never sees a missing file and a failure at any point
 * leaves the previous credentials as they were. Each file is written to a staging directory
 * beside the targets (created exclusively, the key with mode 0600) and fsynced; a COMMIT mark,
 * naming the targets, is the point of no return; then each file is renamed over its target. The
 * old files are kept as hard links until all renames succeed, and put back if one fails. A process
 * killed after the mark is completed by the next run ({@link recoverInterruptedWrites}); one killed
 * before it leaves only a staging directory that the next run removes.
 */
export async function writeCredentials(paths: CredentialPaths, pems: CredentialPems): Promise<void> {
  let staging: string;
  try {
    staging = await mkdtemp(join(paths.dir, STAGING_PREFIX));
  } catch (err) {
    throw storageError(`cannot write in ${paths.dir}: ${describeCause(err)}`, err);
  }
  const plan = planOf(paths, pems).map((item, i) => ({
    ...item,
    staged: join(staging, `new-${i}`),
    backup: join(staging, `old-${i}`),
    hadOld: false,
    replaced: false,
  }));
  try {
    for (const item of plan) await writeSynced(item.staged, item.text, item.mode);
    faultPoint("store:staged");
    for (const item of plan) {
      item.hadOld = await link(item.target, item.backup).then(
        () => true,
        (err: NodeJS.ErrnoException) => {
          if (err.code === "ENOENT") return false;
          throw err;
        },
      );
    }
    await writeSynced(join(staging, COMMIT_MARK), JSON.stringify(plan.map((p) => p.target)), 0o600);
    await syncDirectory(staging);
    faultPoint("store:committed");
    for (const [i, item] of plan.entries()) {
      await rename(item.staged, item.target);
      item.replaced = true;
      faultPoint(`store:renamed-${i + 1}`);
    }
    await syncDirectory(paths.dir);
  } catch (err) {
    for (const item of plan.filter((p) => p.replaced)) {
      await (item.hadOld ? rename(item.backup, item.target) : unlink(item.target)).catch(() => undefined);
    }
    await syncDirectory(paths.dir).catch(() => undefined);
    await rm(staging, { recursive: true, force: true }).catch(() => undefined);
    throw storageError(`writing the credentials in ${paths.dir} failed: ${describeCause(err)}; the previous files are unchanged`, err);
  }
  await rm(staging, { recursive: true, force: true }).catch(() => undefined);
}

/**
 * Finishes or undoes writes that a killed process left in `dir` (call it holding the lock): a
 * staging directory with a COMMIT mark is rolled forward (its remaining files renamed into place),
 * one without is removed. Returns what it did, for the run's notes.
 */
export async function recoverInterruptedWrites(dir: string): Promise<string[]> {
  const notes: string[] = [];
  const entries = await readdir(dir).catch(() => [] as string[]);
  for (const name of entries.filter((n) => n.startsWith(STAGING_PREFIX))) {
    const staging = join(dir, name);
    const mark = await readFile(join(staging, COMMIT_MARK), "utf8").catch(() => undefined);
    let targets: unknown;
    try {
      targets = mark === undefined ? undefined : JSON.parse(mark);
    } catch {
      targets = undefined;
    }
    if (Array.isArray(targets)) {
      for (const [i, target] of targets.entries()) {
        const staged = join(staging, `new-${i}`);
        if (typeof target === "string" && (await stat(staged).then(() => true, () => false))) await rename(staged, target);
      }
      await syncDirectory(dir);
      notes.push(`completed a write that an earlier run committed but did not finish (${name})`);
    } else {
      notes.push(`removed an unfinished write of an earlier run (${name}); the previous files were never touched`);
    }
    await rm(staging, { recursive: true, force: true });
  }
  return notes;
}

async function writeSynced(path: string, text: string, mode: number): Promise<void> {
  const handle = await open(path, "wx", mode);
  try {
    await handle.writeFile(text);
    await handle.chmod(mode); // the umask may have cleared bits of a 0644 file
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function storageError(message: string, cause: unknown): CertRetrieverError {
  return new CertRetrieverError(`store failed: ${message}`, {
    step: "store",
    exitCode: ExitCode.STORAGE,
    hint: "check that the output directory (--out) is writable and has free space",
    cause,
  });
}
