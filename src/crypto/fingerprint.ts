import { createHash } from "node:crypto";

/** SHA-256 of DER as uppercase hex pairs joined by colons: the form openssl prints and x509-identity-mgmt writes. */
export function sha256ColonHex(der: Uint8Array | ArrayBuffer): string {
  return createHash("sha256").update(der instanceof ArrayBuffer ? new Uint8Array(der) : der).digest("hex").toUpperCase().match(/../g)!.join(":");
}
