import { existsSync } from "node:fs";
import { lstat, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CertRetrieverError } from "../errors.js";
import { type KeySettings, openKeyStore, pinOf } from "./open.js";
import { modulePathOf, Pkcs11KeyStore } from "./pkcs11-store.js";
import { parsePkcs11Uri } from "./pkcs11-uri.js";

/** Where Debian, Fedora and others put OpenSSL 3's engines. */
const ENGINE_DIRS = [
  `/usr/lib/${process.arch === "arm64" ? "aarch64" : process.arch === "arm" ? "arm" : "x86_64"}-linux-gnu/engines-3`,
  "/usr/lib64/engines-3",
  "/usr/lib/engines-3",
  "/usr/local/lib/engines-3",
];

/**
 * What Node's TLS needs to use a key that stays in a token: OpenSSL's pkcs11 engine (libp11,
 * Debian's libengine-pkcs11-openssl) and the key's URI with the PIN. Node has no provider-based
 * way to take a key in hardware on Node 20 or 24, so this is the engine API (documented as
 * deprecated, DEP0183, and working on both). The token is opened first with our own PKCS#11 code:
 * a wrong PIN, a missing token or a missing key then gets its own exit code, and the engine is
 * never left to prompt on stdin. Node's own OpenSSL has no engines directory, so OPENSSL_ENGINES
 * is set (when unset) to the system's, and the module goes to the engine by PKCS11_MODULE_PATH.
 */
export async function tokenKeyForTls(
  settings: KeySettings,
  record: string,
): Promise<{ engine: { engine: string; identifier: string }; dispose(): Promise<void> }> {
  // The settings' URI, else the stored one (read from a file: its module is checked before it loads).
  const stored = settings.uri === undefined;
  const uri = settings.uri ?? record.trim();
  const parsed = parsePkcs11Uri(uri);
  const named = parsePkcs11Uri(record);
  const source = await pinOf(settings, parsed);
  const pin = parsed.pinValue ?? (await source.read());
  const keyStore = await openKeyStore(
    { ...settings, pin: () => ({ read: async () => pin, where: source.where }) },
    uri,
    {
      login: true,
      stored,
    },
  );
  try {
    if (!(keyStore instanceof Pkcs11KeyStore && keyStore.holds(record))) {
      throw new CertRetrieverError(
        `token failed: ${keyStore.location} no longer holds the key '${named.object ?? ""}' the stored credentials name`,
        { step: "token", reason: "token-key-missing" },
      );
    }
  } finally {
    // finalized before the engine initializes the module in this process
    await keyStore.close();
  }
  process.env.PKCS11_MODULE_PATH = modulePathOf(parsed, settings.modulePath);
  if (!process.env.OPENSSL_ENGINES) {
    const dir = ENGINE_DIRS.find((d) => existsSync(join(d, "pkcs11.so")));
    if (dir) process.env.OPENSSL_ENGINES = dir;
  }
  // The PIN reaches the engine in a file of its own (libp11 prints the URI it was given in some of
  // its errors, so the PIN is never in it), 0600 in a 0700 directory, removed as soon as the key is
  // loaded; one that a killed run left is removed here.
  const base = process.env.XDG_RUNTIME_DIR || tmpdir();
  await removeLeftPinFiles(base);
  const dir = await mkdtemp(join(base, PIN_DIR_PREFIX));
  const pinFile = join(dir, "pin");
  await writeFile(pinFile, pin, { mode: 0o600 }).catch(async (err: unknown) => {
    await rm(dir, { recursive: true, force: true });
    throw err;
  });
  const path = record.trim().replace(/\?.*$/, "");
  return {
    engine: { engine: "pkcs11", identifier: `${path};pin-source=${pinFile}` },
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
}

const PIN_DIR_PREFIX = "cert-retriever-pin-";

/**
 * Removes the PIN directories that this user's earlier runs, killed before removing their own, left:
 * those over a minute old (a running check removes its own within milliseconds of writing it).
 */
async function removeLeftPinFiles(base: string): Promise<void> {
  const names = await readdir(base).catch(() => [] as string[]);
  for (const name of names.filter((n) => n.startsWith(PIN_DIR_PREFIX))) {
    const path = join(base, name);
    const st = await lstat(path).catch(() => undefined);
    if (st?.isDirectory() && st.uid === process.getuid?.() && Date.now() - st.mtimeMs > 60_000)
      await rm(path, { recursive: true, force: true }).catch(() => undefined);
  }
}
