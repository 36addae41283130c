import { existsSync } from "node:fs";
import { join } from "node:path";
import { CertRetrieverError } from "../errors.js";
import { openKeyStore, tokenName, tokenPin, type KeyFlags, type SourceOf } from "./context.js";

/** Where Debian, Fedora and others put OpenSSL 3's engines. */
const ENGINE_DIRS = [`/usr/lib/${process.arch === "arm64" ? "aarch64" : process.arch === "arm" ? "arm" : "x86_64"}-linux-gnu/engines-3`, "/usr/lib64/engines-3", "/usr/lib/engines-3", "/usr/local/lib/engines-3"];

/**
 * What Node's TLS needs to use a key that stays in a token: OpenSSL's pkcs11 engine (libp11,
 * Debian's libengine-pkcs11-openssl) and the key's URI with the PIN. Node has no provider-based
 * way to take a key in hardware on Node 20 or 24, so this is the engine API (documented as
 * deprecated, DEP0183, and working on both). The token is opened first with our own PKCS#11 code:
 * a wrong PIN, a missing token or a missing key then gets its own exit code, and the engine is
 * never left to prompt on stdin. Node's own OpenSSL has no engines directory, so OPENSSL_ENGINES
 * is set (when unset) to the system's, and the module goes to the engine by PKCS11_MODULE_PATH.
 */
export async function tokenKeyForTls(flags: KeyFlags, uri: string, record: string, source?: SourceOf): Promise<{ engine: string; identifier: string }> {
  const { parsePkcs11Uri } = await import("../crypto/pkcs11-uri.js");
  const { modulePathOf } = await import("../crypto/pkcs11-store.js");
  const parsed = parsePkcs11Uri(uri);
  const named = parsePkcs11Uri(record.trim());
  const pinSource = await tokenPin(parsed, flags, tokenName(parsed));
  const pin = parsed.pinValue ?? (await pinSource.read());
  const keyStore = await openKeyStore(flags, uri, { login: true, source, pin: { read: async () => pin, where: pinSource.where } });
  try {
    if ((await keyStore.publicKeysOf(record)).length === 0) {
      throw new CertRetrieverError(`token failed: ${keyStore.location} no longer holds the key ${named.object ?? ""} the stored credentials name`, { step: "token", reason: "token-key-missing" });
    }
  } finally {
    // finalized before the engine initializes the module in this process
    await keyStore.close();
  }
  process.env.PKCS11_MODULE_PATH = modulePathOf(parsed, flags.pkcs11Module);
  if (!process.env.OPENSSL_ENGINES) {
    const dir = ENGINE_DIRS.find((d) => existsSync(join(d, "pkcs11.so")));
    if (dir) process.env.OPENSSL_ENGINES = dir;
  }
  const path = record.trim().replace(/\?.*$/, "");
  return { engine: "pkcs11", identifier: `${path};pin-value=${encodeURIComponent(pin)}` };
}
