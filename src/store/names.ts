import { join, resolve } from "node:path";
import { LOCK_FILE } from "../fs/lock.js";

/** Prefix of the staging directory that a write works in (see writeCredentials). */
export const STAGING_PREFIX = ".staging-";

/** The longest file name that Linux file systems take (NAME_MAX), in bytes. */
const NAME_MAX_BYTES = 255;

/** The names of a device's files inside its credentials directory. */
interface CredentialNames {
  key: string;
  keyUri: string;
  certificate: string;
  ca: string;
  profile: string;
  settings: string;
  issueJournal: string;
  keyDer: string;
  certificateDer: string;
  caDer: string;
}

/** The file names of a device's credentials (the names dojot's retriever and the mosquitto_pub examples use). */
function credentialNames(deviceId: string, caName: string): CredentialNames {
  return {
    key: `${deviceId}.key`,
    keyUri: `${deviceId}.key.uri`,
    certificate: `${deviceId}.crt`,
    ca: `${caName}.crt`,
    profile: `${deviceId}.profile.json`,
    settings: `${deviceId}.settings.json`,
    issueJournal: `${deviceId}.issue.pending`,
    keyDer: `${deviceId}.key.der`,
    certificateDer: `${deviceId}.crt.der`,
    caDer: `${caName}.p7b`,
  };
}

/** Where a device's credentials live: the names dojot's retriever and the mosquitto_pub examples use. */
export interface CredentialPaths {
  dir: string;
  /** `<device-id>.key`, PKCS#8 PEM, mode 0600. */
  key: string;
  /** `<device-id>.key.uri`: instead of the key, the `pkcs11:` URI of a key that stays in a token. */
  keyUri: string;
  /** `<device-id>.crt`, PEM. */
  certificate: string;
  /** `<ca-name>.crt`, PEM. */
  ca: string;
  /** `<device-id>.profile.json`: the identity profile, when one other than generic was used. */
  profile: string;
  /** `<device-id>.settings.json`: the settings the device was enrolled with (see device-record.ts). */
  settings: string;
  /** The copies `export --format der` writes: `<device-id>.key.der` (PKCS#8, 0600), `<device-id>.crt.der`, `<ca-name>.p7b` (the CA chain, PKCS#7). */
  der: { key: string; certificate: string; ca: string };
}

/** The paths of a device's credentials in `outDir`. */
export function credentialPaths(outDir: string, deviceId: string, caName: string): CredentialPaths {
  const dir = resolve(outDir);
  const names = credentialNames(deviceId, caName);
  return {
    dir,
    key: join(dir, names.key),
    keyUri: join(dir, names.keyUri),
    certificate: join(dir, names.certificate),
    ca: join(dir, names.ca),
    profile: join(dir, names.profile),
    settings: join(dir, names.settings),
    der: { key: join(dir, names.keyDer), certificate: join(dir, names.certificateDer), ca: join(dir, names.caDer) },
  };
}

/** Names of the store's own files start so: a device or CA named alike would be taken for one (and removed). */
const RESERVED_PREFIXES = [STAGING_PREFIX, LOCK_FILE];

/**
 * Why a device id and a CA name cannot share a credentials directory as this store lays it out,
 * in one sentence, or undefined: a name that starts like the store's own files, a device whose
 * certificate would be the CA's file, or a file name longer than NAME_MAX bytes (UTF-8, not characters).
 */
export function fileNamesProblem(deviceId: string, caName: string): string | undefined {
  for (const [what, name] of [
    ["device id", deviceId],
    ["CA name", caName],
  ] as const) {
    if (RESERVED_PREFIXES.some((p) => name.startsWith(p))) {
      return `the ${what} ${JSON.stringify(name)} is not usable: names starting with ${RESERVED_PREFIXES.map((p) => JSON.stringify(p)).join(" or ")} are the store's own files`;
    }
  }
  // Letter case aside: on macOS and Windows file systems IOTmidCA.crt and iotmidca.crt are one file.
  if (deviceId.toLowerCase() === caName.toLowerCase()) {
    return `the device id and the CA name are both ${JSON.stringify(deviceId)}: the device's certificate and the CA's would be one file, ${caName}.crt`;
  }
  for (const name of Object.values(credentialNames(deviceId, caName))) {
    const bytes = Buffer.byteLength(name, "utf8");
    if (bytes > NAME_MAX_BYTES)
      return `the file name ${JSON.stringify(name)} is ${bytes} bytes long, over the ${NAME_MAX_BYTES} bytes a file name may have`;
  }
  return undefined;
}
