/**
 * The settings a device was enrolled with, recorded beside its credentials
 * (`<out>/<device-id>.settings.json`, mode 0600): the platform, the API that answered, the CA's
 * name, the key type and where the key lives, the profile. Nothing secret is in it. `check`,
 * renewal, `verify`, `status` and `export` read it so that `--device-id` (and `--out`) suffice.
 */
import { describeCause } from "../errors.js";
import { readTrustedFile, replaceFile } from "../fs/safe-dir.js";

/** What a record says of `format`, so that another file of the same name is not taken for one. */
const FORMAT = "cert-retriever device settings";

/** The version of the record's layout this build writes and reads. */
const DEVICE_RECORD_VERSION = 1;

/** The recorded settings: each one a setting's name (as the config file names it) and its value. */
export interface RecordedSettings {
  /** The platform's URL (the EST server's, with its label). */
  platform?: string;
  /** The API that answered (never `auto`: the one it detected). */
  api?: string;
  caName?: string;
  /** The key type asked for, when one was. */
  keyType?: string;
  /** The `pkcs11:` URI of the token the key was made in, without any PIN. */
  key?: string;
  pkcs11Module?: string;
  /** `files` or `keychain`. */
  store?: string;
  profile?: string;
  uriDomain?: string;
}

/** The keys a record may hold, in the order they are said. */
export const RECORDED_KEYS: ReadonlyArray<keyof RecordedSettings> = [
  "platform",
  "api",
  "caName",
  "keyType",
  "key",
  "pkcs11Module",
  "store",
  "profile",
  "uriDomain",
];

/** A record as read: its settings, or why it is not used (damaged, another version's, not a record). */
export type DeviceRecord =
  | { path: string; settings: RecordedSettings; recordedAt?: string; writtenBy?: string }
  | { path: string; problem: string };

/**
 * Reads the record at `path`: undefined when there is none. A record that is damaged or of another
 * version is returned with its problem, never used. A file others could write is refused
 * (`storage-unsafe`), as every file in the credentials directory is.
 */
export async function readDeviceRecord(path: string, deviceId: string): Promise<DeviceRecord | undefined> {
  const text = await readTrustedFile(path);
  if (text === undefined) return undefined;
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return { path, problem: "it is not valid JSON (a damaged file)" };
  }
  if (!isObject(data) || data.format !== FORMAT) return { path, problem: "it is not a cert-retriever settings record" };
  const by = typeof data.writtenBy === "string" ? ` (written by ${data.writtenBy})` : "";
  if (data.version !== DEVICE_RECORD_VERSION)
    return {
      path,
      problem: `it is a version ${JSON.stringify(data.version)} record${by}, and this cert-retriever reads version ${DEVICE_RECORD_VERSION}`,
    };
  if (data.deviceId !== deviceId)
    return { path, problem: `it records device ${JSON.stringify(data.deviceId)}, not ${JSON.stringify(deviceId)}` };
  if (!isObject(data.settings)) return { path, problem: "its settings are missing (a damaged file)" };
  const settings: RecordedSettings = {};
  for (const [key, value] of Object.entries(data.settings)) {
    if (!(RECORDED_KEYS as readonly string[]).includes(key) || typeof value !== "string")
      return { path, problem: `its setting ${JSON.stringify(key)} is not one this version records (a damaged file)` };
    settings[key as keyof RecordedSettings] = value;
  }
  return {
    path,
    settings,
    ...(typeof data.recordedAt === "string" ? { recordedAt: data.recordedAt } : {}),
    ...(typeof data.writtenBy === "string" ? { writtenBy: data.writtenBy } : {}),
  };
}

/** Writes the record whole (staged, synced, renamed; mode 0600). Returns a note when it could not be written. */
export async function writeDeviceRecord(
  path: string,
  deviceId: string,
  settings: RecordedSettings,
  meta: { now: Date; writtenBy: string },
): Promise<string | undefined> {
  const defined = Object.fromEntries(
    RECORDED_KEYS.filter((k) => settings[k] !== undefined).map((k) => [k, settings[k]]),
  );
  const text = `${JSON.stringify(
    {
      format: FORMAT,
      version: DEVICE_RECORD_VERSION,
      writtenBy: meta.writtenBy,
      recordedAt: meta.now.toISOString(),
      deviceId,
      settings: defined,
    },
    null,
    2,
  )}\n`;
  try {
    await replaceFile(path, text, 0o600);
    return undefined;
  } catch (err) {
    return `the settings this enrollment used could not be recorded in ${path} (${describeCause(err)}); later commands need them as flags`;
  }
}

/** Whether `value` is a JSON object (not null, not an array). */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
