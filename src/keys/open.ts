/** Which key store a run uses, and how it is opened. The PKCS#11 modules load only when a token is named. */
import { CertRetrieverError } from "../errors.js";
import type { KeyStore } from "./key-store.js";
import type { Pkcs11Uri } from "./pkcs11-uri.js";
import type { CryptoProvider } from "./provider.js";

/** A token PIN's reader and, for messages, where it comes from (never the PIN). */
export interface PinSource {
  read: () => Promise<string>;
  where: string;
  /**
   * After the token refused the PIN read on `attempt` (from 1): whether to read it again (a PIN
   * typed at a terminal); `finalTry`: the token says one more wrong PIN locks it.
   */
  again?: (refused: CertRetrieverError, attempt: number, finalTry: boolean) => boolean;
}

/** Where a run's key is made and kept. */
export interface KeySettings {
  /** A `pkcs11:` URI (RFC 7512) naming the token, or a key file to certify; absent: software, or the token the stored key's URI names. */
  uri?: string;
  /** The PKCS#11 module when the URI has no `module-path=` (else PKCS11_MODULE_PATH). */
  modulePath?: string;
  /** The PIN of the token `uri` names, asked for only when it needs a login (its `pin-source=`, a variable, a prompt). */
  pin?: (uri: Pkcs11Uri) => PinSource | Promise<PinSource>;
  /** Refuse a `pin-value=` in the URI (it came from where others see it, such as argv). */
  refusePinValue?: boolean;
  /** Also put the certificate into the token, beside its key. */
  storeCertInToken?: boolean;
}

/** How a key store is opened: `login` for signing; `stored`: the URI was read from the stored credentials (a file). */
interface OpenOptions {
  login: boolean;
  stored?: boolean;
  crypto?: CryptoProvider;
}

/**
 * The key store for `uri`: a PKCS#11 token when it names one, else software. `login` opens the
 * token for signing (asking for the PIN if it needs one); without it only public objects are read.
 * A module that a `stored` URI names is loaded only if no other user could have put it there.
 */
export async function openKeyStore(
  settings: KeySettings,
  uri: string | undefined,
  { login, stored, crypto }: OpenOptions,
): Promise<KeyStore> {
  const { isPkcs11Uri, parsePkcs11Uri } = await import("./pkcs11-uri.js");
  if (uri === undefined) {
    const { SoftwareKeyStore } = await import("./key-store.js");
    return new SoftwareKeyStore(crypto);
  }
  if (!isPkcs11Uri(uri)) {
    // Not a token's URI: a key file, whose key an enrollment certifies.
    const { KeyFileStore } = await import("./key-file.js");
    return KeyFileStore.open(uri, crypto);
  }
  const parsed = parsePkcs11Uri(uri);
  const pin = await pinOf(settings, parsed);
  const { Pkcs11KeyStore } = await import("./pkcs11-store.js");
  return Pkcs11KeyStore.open(
    {
      uri,
      modulePath: settings.modulePath,
      pin: pin.read,
      pinSource: pin.where,
      pinAgain: pin.again,
      refusePinValue: Boolean(settings.refusePinValue),
      uriStored: stored,
    },
    login,
  );
}

/** The PIN source for a token: the settings', or none (a token that asks for one then fails, `missing-credentials`). */
export async function pinOf(settings: KeySettings, uri: Pkcs11Uri): Promise<PinSource> {
  if (settings.pin) return settings.pin(uri);
  const { tokenName } = await import("./pkcs11-uri.js");
  const missing = new CertRetrieverError(`token failed: no PIN for ${tokenName(uri)}`, {
    step: "token",
    reason: "missing-credentials",
  });
  return { read: () => Promise.reject(missing), where: "nowhere" };
}

/** The public keys a stored key record names: a PEM's own, or those of the token key its URI (or `settings.uri`) names, read without a login. */
export async function publicKeysOf(settings: KeySettings, record: string): Promise<Uint8Array[]> {
  const { isKeyUri } = await import("./pkcs11-uri.js");
  const stored = settings.uri === undefined && isKeyUri(record);
  const keyStore = await openKeyStore(settings, stored ? record.trim() : settings.uri, { login: false, stored });
  try {
    return await keyStore.publicKeysOf(record);
  } finally {
    await keyStore.close();
  }
}

/**
 * The token of a stored key, as a URI to make a new key with (its label and module, not its id), if
 * the stored key is in one; a key that was there before cert-retriever (kept) is named whole, so
 * that a renewal certifies it again rather than making another.
 */
export async function tokenOfKey(stored: string | undefined): Promise<string | undefined> {
  if (!stored?.startsWith("pkcs11:")) return undefined;
  const { formatPkcs11Uri, parsePkcs11Uri } = await import("./pkcs11-uri.js");
  const { id: _id, type: _type, kept, ...token } = parsePkcs11Uri(stored);
  if (kept) return stored;
  return formatPkcs11Uri(token);
}
