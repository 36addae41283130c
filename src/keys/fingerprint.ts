import { createHash } from "node:crypto";

/** Whether two DER encodings (certificates, names) are the same bytes. */
export function sameBytes(a: Uint8Array | ArrayBuffer, b: Uint8Array | ArrayBuffer): boolean {
  return Buffer.compare(new Uint8Array(a), new Uint8Array(b)) === 0;
}

/** SHA-256 of DER as uppercase hex pairs joined by colons: the form openssl prints and x509-identity-mgmt writes. */
export function sha256ColonHex(der: Uint8Array | ArrayBuffer): string {
  return createHash("sha256")
    .update(der instanceof ArrayBuffer ? new Uint8Array(der) : der)
    .digest("hex")
    .toUpperCase()
    .match(/../g)!
    .join(":");
}

/** Normalises a pin (`sha256:AB:CD…`, `abcd…`) to uppercase hex without colons, or undefined if it is not one. */
export function normalizeFingerprint(pin: string): string | undefined {
  const hex = pin
    .trim()
    .replace(/^sha256:/i, "")
    .replace(/:/g, "")
    .toUpperCase();
  return /^[0-9A-F]{64}$/.test(hex) ? hex : undefined;
}
