/**
 * A key the device already has, in a PEM file (PKCS#8, or the PKCS#1 and SEC1 forms openssl
 * writes): enrollment certifies it instead of generating one, for keys made at manufacturing.
 */
import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { readFile } from "node:fs/promises";
import { CertRetrieverError, describeCause } from "../errors.js";
import { type KeyHandle, type KeyStore, type KeyTransaction, type SigningKey, SoftwareKeyStore } from "./key-store.js";
import { type KeyType, privateKeyPem, spkiDer } from "./key-types.js";
import { type CryptoProvider, softwareCrypto } from "./provider.js";

/** The key type of a key, or why it is none this client signs with. */
export function keyTypeOf(key: KeyObject): KeyType | string {
  const d = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === "rsa") {
    const bits = d.modulusLength;
    return bits === 2048 || bits === 3072 || bits === 4096 ? (`rsa-${bits}` as KeyType) : `an RSA key of ${bits} bits`;
  }
  if (key.asymmetricKeyType === "ec") {
    if (d.namedCurve === "prime256v1") return "ec-p256";
    if (d.namedCurve === "secp384r1") return "ec-p384";
    return `an EC key on curve ${d.namedCurve}`;
  }
  return `a ${key.asymmetricKeyType} key`;
}

/** The failure to use the key file, as a settings error (exit 3). */
function keyFileError(path: string, why: string, cause?: unknown): CertRetrieverError {
  return new CertRetrieverError(`generate-key failed: the key file ${path} ${why}; nothing was written`, {
    step: "generate-key",
    reason: "config",
    facts: { path },
    cause,
  });
}

/** Software keys, except that an enrollment takes the key in `path` instead of generating one. */
export class KeyFileStore implements KeyStore {
  readonly location: string;
  readonly tlsWhileOpen = true;
  private readonly software: SoftwareKeyStore;

  private constructor(
    private readonly handle: KeyHandle,
    path: string,
    crypto: CryptoProvider,
  ) {
    this.software = new SoftwareKeyStore(crypto);
    this.location = `the key file ${path}`;
  }

  /** Reads and imports the key in `path`; throws a `config` error naming what is wrong with it. */
  static async open(path: string, crypto: CryptoProvider = softwareCrypto()): Promise<KeyFileStore> {
    let key: KeyObject;
    try {
      key = createPrivateKey(await readFile(path));
    } catch (err) {
      throw keyFileError(path, `could not be read as a PEM private key (${describeCause(err)})`, err);
    }
    const type = keyTypeOf(key);
    if (!type.startsWith("rsa-") && !type.startsWith("ec-"))
      throw keyFileError(
        path,
        `holds ${type}, and only RSA (2048, 3072, 4096 bits) and EC P-256 or P-384 keys are taken`,
      );
    const alg = type.startsWith("rsa-")
      ? { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }
      : { name: "ECDSA", namedCurve: type === "ec-p256" ? "P-256" : "P-384" };
    const pkcs8 = new Uint8Array(key.export({ type: "pkcs8", format: "der" }));
    const spki = new Uint8Array(createPublicKey(key).export({ type: "spki", format: "der" }));
    const keys: CryptoKeyPair = {
      privateKey: await crypto.subtle.importKey("pkcs8", pkcs8, alg, true, ["sign"]),
      publicKey: await crypto.subtle.importKey("spki", spki, alg, true, ["verify"]),
    };
    const handle: KeyHandle = {
      keys,
      crypto,
      type: type as KeyType,
      where: `read from ${path} (not generated)`,
      record: () => privateKeyPem(keys.privateKey, crypto),
      spki: () => spkiDer(keys.publicKey, crypto),
    };
    return new KeyFileStore(handle, path, crypto);
  }

  async begin(): Promise<KeyTransaction> {
    const tx = await this.software.begin();
    return { ...tx, generate: async () => this.handle };
  }

  publicKeysOf(record: string): Promise<Uint8Array[]> {
    return this.software.publicKeysOf(record);
  }

  /** The stored key signs as any software key does. */
  signingKey(record: string, pss?: boolean): Promise<SigningKey> {
    return this.software.signingKey(record, pss);
  }

  async close(): Promise<void> {}
}
