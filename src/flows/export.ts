/** Export: copies of the stored credentials, for programs that need files, from whichever store holds them. */
import { stat } from "node:fs/promises";
import { type SettingNamer, usageError } from "../errors.js";
import { isKeyUri, withoutPinValue } from "../keys/pkcs11-uri.js";
import { type CopyFormat, FilesStore } from "../store/files-store.js";
import type { CredentialStore, WriteObserver } from "../store/types.js";
import { completeCredentials } from "./stored.js";

/** What an export wrote. */
export interface ExportResult {
  deviceId: string;
  /** The store the credentials were read from. */
  from: { kind: string; location: string };
  format: CopyFormat;
  /** The copies: their directory, and each file (`key` for a key file, `keyUri` for a key that stays in a token). */
  files: { dir: string; certificate: string; ca: string; key?: string; keyUri?: string; profile?: string };
  /** The `pkcs11:` URI (without a PIN) of a key that lives in a token and never leaves it: no key file was written. */
  keyInToken?: string;
}

/** What an export needs: the device's store, and where and how to write the copies. */
export interface ExportContext {
  deviceId: string;
  caName: string;
  store: CredentialStore;
  /** The directory the copies go to (made 0700 if missing). */
  to: string;
  format: CopyFormat;
  name: SettingNamer;
  observer?: WriteObserver;
}

/**
 * Copies the stored credentials into `to`, as one write: the key file 0600 (PKCS#8), the
 * certificate and the CA chain; of a key in a token, its URI instead (the key never leaves the
 * token). Credentials that are incomplete, or a write to them left unfinished, are `not-enrolled`.
 */
export async function exportCredentials(ctx: ExportContext): Promise<ExportResult> {
  const { store } = ctx;
  const stored = await completeCredentials(store, ctx.deviceId, "export");
  const copies = new FilesStore(ctx.to, ctx.deviceId, ctx.caName, { observer: ctx.observer });
  if (store instanceof FilesStore && (await sameDirectory(store.paths.dir, copies.paths.dir)))
    throw usageError(
      `${ctx.name("to")} ${copies.paths.dir} is where the credentials are stored: export writes its copies elsewhere`,
      "to",
    );
  const inToken = isKeyUri(stored.pems.key) ? withoutPinValue(stored.pems.key.trim()) : undefined;
  const pems = inToken ? { ...stored.pems, key: inToken } : stored.pems;
  const opened = await copies.open();
  let ok = false;
  let written: Awaited<ReturnType<FilesStore["writeCopy"]>>;
  try {
    written = await copies.writeCopy(pems, ctx.format);
    ok = true;
  } finally {
    await opened.close(ok);
  }
  const { key, ...others } = written;
  return {
    deviceId: ctx.deviceId,
    from: { kind: store.kind, location: store.location },
    format: ctx.format,
    files: { dir: copies.paths.dir, ...others, ...(inToken ? { keyUri: key } : { key }) },
    ...(inToken ? { keyInToken: inToken } : {}),
  };
}

/** Whether two paths name one directory (a link or a relative path included); false if either does not exist. */
async function sameDirectory(a: string, b: string): Promise<boolean> {
  if (a === b) return true;
  const [sa, sb] = await Promise.all([stat(a).catch(() => undefined), stat(b).catch(() => undefined)]);
  return sa !== undefined && sb !== undefined && sa.dev === sb.dev && sa.ino === sb.ino;
}
