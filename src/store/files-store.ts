import { link, mkdtemp, open, rename, rm, statfs, unlink } from "node:fs/promises";
import { join } from "node:path";
import { CertRetrieverError, describeCause, usageError } from "../errors.js";
import { acquireLock } from "../fs/lock.js";
import {
  checkDirectory,
  prepareDirectory,
  readTrustedFile,
  removeCreatedDirectories,
  storageError,
  syncDirectory,
} from "../fs/safe-dir.js";
import { isKeyUri } from "../keys/pkcs11-uri.js";
import { type CredentialPaths, credentialPaths, fileNamesProblem, STAGING_PREFIX } from "./names.js";
import {
  COMMIT_MARK,
  commitMark,
  hasInterruptedWrite,
  otherKeyKind,
  recoverInterruptedWrites,
  removeOtherKeyKind,
} from "./recovery.js";
import type {
  CredentialPems,
  CredentialStore,
  OpenStore,
  Sidecars,
  StoredCredentials,
  WriteObserver,
} from "./types.js";

export { type CredentialPaths, credentialPaths } from "./names.js";
export type { CredentialPems } from "./types.js";

/** The free space a run needs in the credentials directory before it makes a key (a few staged files, with room to spare). */
const MIN_FREE_BYTES = 256 * 1024;
/** The free inodes it needs: the staging directory, its files, the records beside them. */
const MIN_FREE_INODES = 16;

/** Credentials as PEM files in a directory, written crash-safely under a lock. */
export class FilesStore implements CredentialStore {
  readonly kind = "files";
  readonly paths: CredentialPaths;
  readonly sidecars: Sidecars;

  /** Refuses (`usage`) a device id and CA name whose files would collide or not fit a file name. `observer` sees each point of a write. */
  constructor(
    outDir: string,
    deviceId: string,
    caName: string,
    private readonly options: { observer?: WriteObserver } = {},
  ) {
    const problem = fileNamesProblem(deviceId, caName);
    if (problem) throw usageError(problem, "fileNames");
    this.paths = credentialPaths(outDir, deviceId, caName);
    this.sidecars = {
      keyJournal: `${this.paths.key}.pending`,
      crlCache: join(outDir, `${caName}.crl`),
      caReplacedMark: join(outDir, `${caName}.replaced`),
      settingsRecord: this.paths.settings,
      issueJournal: `${join(this.paths.dir, deviceId)}.issue.pending`,
      contactRecord: `${join(this.paths.dir, deviceId)}.contact.json`,
    };
  }

  get location(): string {
    return this.paths.dir;
  }

  async read(): Promise<StoredCredentials> {
    // Nothing in a directory another user could have written is read, let alone acted on.
    const exists = await checkDirectory(this.paths.dir);
    const read = async (p: string) => (exists ? readTrustedFile(p) : undefined);
    const [keyPem, keyUri, certificatePem, caPem, profileJson] = await Promise.all(
      [this.paths.key, this.paths.keyUri, this.paths.certificate, this.paths.ca, this.paths.profile].map(read),
    );
    // A completed write leaves one of the two; the URI is the newer kind.
    const key = keyUri ?? keyPem;
    const parts = { key, certificatePem, caPem };
    const present = (Object.keys(parts) as Array<keyof typeof parts>).filter((k) => parts[k] !== undefined);
    // Unreadable counts as interrupted: enrolling then reports the cause.
    const interrupted = await hasInterruptedWrite(this.paths).catch(() => true);
    return {
      pems:
        key !== undefined && certificatePem !== undefined && caPem !== undefined
          ? { key, certificatePem, caPem, profileJson }
          : undefined,
      present,
      parts,
      where: {
        key: keyUri !== undefined ? this.paths.keyUri : this.paths.key,
        certificatePem: this.paths.certificate,
        caPem: this.paths.ca,
      },
      interrupted,
    };
  }

  /**
   * Room for the credentials, before any key is made: the staged copies of key, certificate, chain
   * and the files beside them take some kilobytes; a file system with less than this free is refused.
   */
  async preflight(): Promise<void> {
    const dir = this.paths.dir;
    const fs = await statfs(dir).catch((err: unknown) => {
      throw storageError(`cannot see how much space is free in ${dir}: ${describeCause(err)}`, err, dir);
    });
    const free = fs.bavail * fs.bsize;
    if (free >= MIN_FREE_BYTES && fs.ffree >= MIN_FREE_INODES) return;
    const what =
      free < MIN_FREE_BYTES
        ? `${Math.floor(free / 1024)} KiB free, and storing the credentials needs at least ${MIN_FREE_BYTES / 1024} KiB`
        : `${fs.ffree} free inodes, and storing the credentials needs at least ${MIN_FREE_INODES}`;
    throw new CertRetrieverError(
      `store failed: pre-flight: the file system of ${dir} has ${what}; no key was made and no certificate requested`,
      { step: "store", reason: "storage-failed", facts: { errno: "ENOSPC", path: dir } },
    );
  }

  async open(): Promise<OpenStore> {
    const createdDir = await prepareDirectory(this.paths.dir);
    let release: () => Promise<void>;
    try {
      release = await acquireLock(this.paths.dir);
    } catch (err) {
      await removeCreatedDirectories(createdDir);
      throw err;
    }
    let notes: string[];
    try {
      notes = await recoverInterruptedWrites(this.paths);
    } catch (err) {
      await release();
      await removeCreatedDirectories(createdDir);
      throw err;
    }
    return {
      notes,
      close: async (succeeded) => {
        await release();
        if (!succeeded) await removeCreatedDirectories(createdDir);
      },
    };
  }

  async write(pems: CredentialPems): Promise<void> {
    await writeCredentials(this.paths, pems, this.options.observer);
    // A profile recorded by an earlier enrollment must not outlive one made without it.
    if (pems.profileJson === undefined) await unlink(this.paths.profile).catch(() => undefined);
  }

  /**
   * Writes copies of `pems` for other programs, as one write (all or nothing): PEM as this store
   * keeps them, or DER (see {@link CredentialPaths.der}); a key in a token is its URI in either.
   * Returns the files written (`key`: the key file, or the token key's URI file).
   */
  async writeCopy(
    pems: CredentialPems,
    format: CopyFormat,
  ): Promise<{ ca: string; certificate: string; key: string; profile?: string }> {
    // Loaded only for DER: @peculiar/x509 takes a while to load, and no other write needs it.
    const plan =
      format === "pem" ? planOf(this.paths, pems) : derPlanOf(this.paths, pems, await import("../keys/x509.js"));
    if (format === "pem") await this.write(pems);
    else await writeCredentials(this.paths, pems, this.options.observer, plan);
    const [ca, certificate, key, profile] = plan.map((p) => p.target) as [string, string, string, string?];
    return { ca, certificate, key, ...(profile ? { profile } : {}) };
  }
}

/** The formats {@link FilesStore.writeCopy} writes. */
export type CopyFormat = "pem" | "der";

/** The DER copies: the key PKCS#8 (or its token URI), the certificate, the CA chain as PKCS#7 certs-only. */
function derPlanOf(paths: CredentialPaths, pems: CredentialPems, x509: typeof import("../keys/x509.js")): PlanItem[] {
  const certs = x509.PemConverter.decode(pems.caPem).map((der) => new x509.X509Certificate(der));
  return [
    { target: paths.der.ca, text: new Uint8Array(new x509.X509Certificates(certs).export("raw")), mode: 0o644 },
    {
      target: paths.der.certificate,
      text: new Uint8Array(x509.PemConverter.decodeFirst(pems.certificatePem)),
      mode: 0o644,
    },
    isKeyUri(pems.key)
      ? { target: paths.keyUri, text: pems.key, mode: 0o644 }
      : { target: paths.der.key, text: new Uint8Array(x509.PemConverter.decodeFirst(pems.key)), mode: 0o600 },
  ];
}

/** One file of a write: staged as `new-<i>`, its previous version kept as `old-<i>`. */
interface PlanItem {
  target: string;
  text: string | Uint8Array;
  mode: number;
}

/** The files of a write, in this order: the CA chain, the certificate, the key (or its URI), the profile if there is one. */
function planOf(paths: CredentialPaths, pems: CredentialPems): PlanItem[] {
  const plan = [
    { target: paths.ca, text: pems.caPem, mode: 0o644 },
    { target: paths.certificate, text: pems.certificatePem, mode: 0o644 },
    isKeyUri(pems.key)
      ? { target: paths.keyUri, text: pems.key, mode: 0o644 }
      : { target: paths.key, text: pems.key, mode: 0o600 },
  ];
  if (pems.profileJson !== undefined) plan.push({ target: paths.profile, text: pems.profileJson, mode: 0o644 });
  return plan;
}

/**
 * Writes the three files so that a reader never sees a missing file and a failure at any point
 * leaves the previous credentials as they were. Each file is written to a staging directory
 * beside the targets (created exclusively, the key with mode 0600) and fsynced; a COMMIT mark,
 * naming the targets relative to the directory, is the point of no return; then each file is
 * renamed over its target. The
 * old files are kept as hard links until all renames succeed, and put back if one fails. A process
 * killed after the mark is completed by the next run ({@link recoverInterruptedWrites}); one killed
 * before it leaves only a staging directory that the next run removes.
 */
export async function writeCredentials(
  paths: CredentialPaths,
  pems: CredentialPems,
  observe: WriteObserver = () => {},
  files: PlanItem[] = planOf(paths, pems),
): Promise<void> {
  let staging: string;
  try {
    staging = await mkdtemp(join(paths.dir, STAGING_PREFIX));
  } catch (err) {
    throw storageError(`cannot write in ${paths.dir}: ${describeCause(err)}`, err);
  }
  const plan: StagedItem[] = files.map((item, i) => ({
    ...item,
    staged: join(staging, `new-${i}`),
    backup: join(staging, `old-${i}`),
    hadOld: false,
    replaced: false,
  }));
  let otherRemoved = false;
  try {
    const hadOther = await stage(plan, staging, paths, observe);
    for (const [i, item] of plan.entries()) {
      await rename(item.staged, item.target);
      item.replaced = true;
      observe(`renamed-${i + 1}`);
    }
    await removeOtherKeyKind(
      paths,
      plan.map((p) => p.target),
    );
    otherRemoved = hadOther;
    observe("other-kind-removed");
    await syncDirectory(paths.dir);
  } catch (err) {
    await rollBack(plan, paths, staging, otherRemoved);
    throw storageError(
      `writing the credentials in ${paths.dir} failed: ${describeCause(err)}; the previous files are unchanged`,
      err,
    );
  }
  await rm(staging, { recursive: true, force: true }).catch(() => undefined);
}

/** A file of a write, with where it is staged, where its previous version is kept, and how far it got. */
interface StagedItem extends PlanItem {
  staged: string;
  backup: string;
  hadOld: boolean;
  replaced: boolean;
}

/**
 * Up to the point of no return: every file staged and fsynced, the previous ones (and the key file
 * of the other kind) kept as hard links, then the COMMIT mark. Returns whether the other kind's key existed.
 */
async function stage(plan: StagedItem[], staging: string, paths: CredentialPaths, observe: WriteObserver) {
  for (const item of plan) await writeSynced(item.staged, item.text, item.mode);
  observe("staged");
  for (const item of plan) item.hadOld = await linkIfPresent(item.target, item.backup);
  // The key file of the other kind goes with this write: kept here too, to be put back if it fails.
  const other = otherKeyKind(
    paths,
    plan.map((p) => p.target),
  );
  const hadOther = other !== undefined && (await linkIfPresent(other, join(staging, "old-other")));
  await writeSynced(join(staging, COMMIT_MARK), commitMark(plan.map((p) => p.target)), 0o600);
  await syncDirectory(staging);
  observe("committed");
  return hadOther;
}

/** A hard link of `target` at `backup`; false when there is no `target`. */
function linkIfPresent(target: string, backup: string): Promise<boolean> {
  return link(target, backup).then(
    () => true,
    (err: NodeJS.ErrnoException) => (err.code === "ENOENT" ? false : Promise.reject(err)),
  );
}

/** After a failed write: every file replaced is put back (or removed if it is new), then the staging directory goes. */
async function rollBack(plan: StagedItem[], paths: CredentialPaths, staging: string, otherRemoved: boolean) {
  for (const item of plan.filter((p) => p.replaced)) {
    await (item.hadOld ? rename(item.backup, item.target) : unlink(item.target)).catch(() => undefined);
  }
  const other = otherKeyKind(
    paths,
    plan.map((p) => p.target),
  );
  if (otherRemoved && other) await rename(join(staging, "old-other"), other).catch(() => undefined);
  await syncDirectory(paths.dir).catch(() => undefined);
  await rm(staging, { recursive: true, force: true }).catch(() => undefined);
}

async function writeSynced(path: string, text: string | Uint8Array, mode: number): Promise<void> {
  const handle = await open(path, "wx", mode);
  try {
    await handle.writeFile(text);
    await handle.chmod(mode); // the umask may have cleared bits of a 0644 file
    await handle.sync();
  } finally {
    await handle.close();
  }
}
