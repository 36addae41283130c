import type { CryptoProvider } from "./provider.js";

/** The PEM certificate blocks in a text (a chain, a bundle), in order. */
export function certificatePems(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
}

/** Key algorithms a device can generate, by their CLI name. */
export const KEY_TYPES = {
  "rsa-2048": { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048 },
  "rsa-3072": { name: "RSASSA-PKCS1-v1_5", modulusLength: 3072 },
  "rsa-4096": { name: "RSASSA-PKCS1-v1_5", modulusLength: 4096 },
  "ec-p256": { name: "ECDSA", namedCurve: "P-256" },
  "ec-p384": { name: "ECDSA", namedCurve: "P-384" },
} as const;

/** A key type name such as `rsa-2048` or `ec-p256`. */
export type KeyType = keyof typeof KEY_TYPES;

/** Whether `value` names a supported key type. */
export function isKeyType(value: string): value is KeyType {
  return Object.hasOwn(KEY_TYPES, value);
}

/** The WebCrypto algorithm for generating a key of `type`, SHA-256 hashed. */
export function keyAlgorithm(type: KeyType): RsaHashedKeyGenParams | EcKeyGenParams {
  const spec = KEY_TYPES[type];
  return "modulusLength" in spec
    ? { ...spec, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" }
    : { ...spec };
}

/** The signature algorithm that goes with a key: SHA-256 for RSA and P-256, SHA-384 for P-384. */
export function signingAlgorithm(key: CryptoKey): Algorithm | EcdsaParams {
  if (key.algorithm.name === "ECDSA") {
    const curve = (key.algorithm as EcKeyAlgorithm).namedCurve;
    return { name: "ECDSA", hash: curve === "P-384" ? "SHA-384" : "SHA-256" } as EcdsaParams;
  }
  return key.algorithm;
}

/** Generates a signing key pair of `type` with the given provider. The private key is extractable only so it can be stored. */
export async function generateKeyPair(type: KeyType, crypto: CryptoProvider): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(keyAlgorithm(type), true, ["sign", "verify"]) as Promise<CryptoKeyPair>;
}

/** Encodes DER as PEM with 64-column lines and a trailing newline, as openssl writes it. */
export function toPem(der: ArrayBuffer | Uint8Array, label: string): string {
  const b64 = Buffer.from(der instanceof ArrayBuffer ? new Uint8Array(der) : der).toString("base64");
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** The private key as unencrypted PKCS#8 PEM (`BEGIN PRIVATE KEY`), which openssl, mosquitto and Node's TLS read. */
export async function privateKeyPem(key: CryptoKey, crypto: CryptoProvider): Promise<string> {
  return toPem(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

/** The DER SubjectPublicKeyInfo of a public key, for comparing it with a certificate's. */
export async function spkiDer(key: CryptoKey, crypto: CryptoProvider): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.exportKey("spki", key));
}
