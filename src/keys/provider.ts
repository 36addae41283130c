import { webcrypto } from "node:crypto";

/**
 * The crypto seam: every key operation goes through a standard WebCrypto `Crypto` object passed
 * explicitly, never through a global, so that a PKCS#11-backed `Crypto` (non-extractable keys in
 * a secure element) can replace the software one without touching the pipeline.
 */
export type CryptoProvider = Crypto;

/** The runtime's own WebCrypto: keys generated in software on the device. */
export function softwareCrypto(): CryptoProvider {
  return webcrypto as unknown as CryptoProvider;
}
