/**
 * The settings recorded at enrollment as a layer of settings: below flags, the environment and the
 * config file, above the defaults. A setting given otherwise that differs from the recorded one
 * wins, and the difference is said; a record that is damaged or of another version is said and not used.
 */
import { resolve } from "node:path";
import type { Command } from "commander";
import type { DeviceRecord, RecordedSettings } from "../store/device-record.js";
import { type CommonFlags, resolveDeviceId } from "./agent-settings.js";
import { flagName } from "./names.js";
import { version } from "./version.js";

/** The source commander is told for a value that came from the record. */
const RECORDED = "recorded";

/** The option that is given for each recorded setting. */
const OPTION_OF: Record<keyof RecordedSettings, string> = {
  platform: "platform",
  api: "api",
  caName: "caName",
  keyType: "keyType",
  key: "key",
  pkcs11Module: "pkcs11Module",
  store: "store",
  profile: "profile",
  uriDomain: "uriDomain",
};

/**
 * Fills the options of `cmd` that no flag, variable or config file set from the device's record,
 * when the device id is given (a flag or a file; never asked for here). Says each recorded setting
 * that something else overrides, and a record it does not use. Returns the record read, if any.
 */
export async function applyRecorded(cmd: Command, warn: (line: string) => void): Promise<DeviceRecord | undefined> {
  const flags = cmd.opts<CommonFlags>();
  const deviceId = await givenDeviceId(cmd, flags);
  if (deviceId === undefined || flags.out === undefined) return undefined;
  // Loaded only when a device is named: --help and --version load none of this.
  const [{ credentialPaths }, { RECORDED_KEYS, readDeviceRecord }, { DEFAULT_PROTOCOL, findProtocol }, pkcs11] =
    await Promise.all([
      import("../store/names.js"),
      import("../store/device-record.js"),
      import("../protocols/registry.js"),
      import("../keys/pkcs11-uri.js"),
    ]);
  // The record's name depends on the device only: the CA's name may be one of the settings it holds.
  const path = credentialPaths(flags.out, deviceId, "-").settings;
  const record = await readDeviceRecord(path, deviceId);
  if (!record) return undefined;
  if ("problem" in record) {
    warn(
      `warning: not using the settings recorded in ${record.path}: ${record.problem}; give them as flags (the next enrollment records them again)`,
    );
    return record;
  }
  const known = new Set(cmd.options.map((o) => o.attributeName()));
  for (const key of RECORDED_KEYS) {
    const value = record.settings[key];
    const option = OPTION_OF[key];
    if (value === undefined || !known.has(option)) continue;
    const source = cmd.getOptionValueSource(option);
    if (source === "cli" || source === "env" || source === "config") {
      const given = cmd.getOptionValue(option) as unknown;
      if (!sameSetting(key, given, value, { DEFAULT_PROTOCOL, findProtocol, pkcs11 }))
        warn(
          `note: ${flagName(option)} ${JSON.stringify(given)} overrides ${JSON.stringify(value)}, recorded when device '${deviceId}' was enrolled`,
        );
      continue;
    }
    cmd.setOptionValueWithSource(option, value, RECORDED);
  }
  return record;
}

/** The settings an enrollment records: what was asked (the API is filled by the agent, as the one that answered). */
export async function settingsToRecord(
  flags: CommonFlags & {
    keyType?: string;
    key?: string;
    pkcs11Module?: string;
    profile?: string;
    uriDomain?: string;
  },
  platform: URL,
): Promise<{ settings: RecordedSettings; writtenBy: string }> {
  const pkcs11 = await import("../keys/pkcs11-uri.js");
  const settings: RecordedSettings = {
    platform: platform.href,
    caName: flags.caName,
    keyType: flags.keyType,
    key: flags.key === undefined ? undefined : withoutPin(flags.key, pkcs11),
    pkcs11Module: flags.pkcs11Module,
    store: flags.store,
    profile: flags.profile,
    uriDomain: flags.uriDomain,
  };
  return { settings, writtenBy: `cert-retriever ${version()}` };
}

/**
 * Whether a value given otherwise says what the record says: a key URI with a PIN is the URI
 * recorded without one; an API of detection (`auto`) or an alias asks for the API recorded.
 */
function sameSetting(
  key: keyof RecordedSettings,
  given: unknown,
  recorded: string,
  modules: {
    DEFAULT_PROTOCOL: string;
    findProtocol: (name: string) => { name: string } | undefined;
    pkcs11: Pkcs11Module;
  },
): boolean {
  if (given === recorded) return true;
  if (typeof given !== "string") return false;
  if (key === "key") return withoutPin(given, modules.pkcs11) === recorded;
  // Recorded as the URL's normal form: `https://host` is the `https://host/` recorded.
  if (key === "platform") return URL.canParse(given) && new URL(given).href === recorded;
  if (key === "api") {
    const plugin = modules.findProtocol(given);
    return plugin?.name === modules.DEFAULT_PROTOCOL || plugin?.name === recorded;
  }
  return false;
}

type Pkcs11Module = typeof import("../keys/pkcs11-uri.js");

/** A `pkcs11:` URI without its `pin-value` (a record holds no secret); a key file by its absolute path. */
function withoutPin(uri: string, pkcs11: Pkcs11Module): string {
  if (!pkcs11.isPkcs11Uri(uri)) return resolve(uri);
  try {
    return pkcs11.formatPkcs11Uri({ ...pkcs11.parsePkcs11Uri(uri), pinValue: undefined });
  } catch {
    return uri.replace(/[;?&]?pin-value=[^&;]*/gi, "");
  }
}

/** The device id given by --device-id or --device-id-file (never asked for here); undefined when none names a usable one. */
async function givenDeviceId(cmd: Command, flags: CommonFlags): Promise<string | undefined> {
  if (flags.deviceId === undefined && flags.deviceIdFile === undefined) return undefined;
  // The command says what is wrong with a bad one, in its own words.
  return resolveDeviceId(flags, (key) => cmd.getOptionValueSource(key)).catch(() => undefined);
}
