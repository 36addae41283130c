import * as asn1js from "asn1js";
import { CertRetrieverError, describeCause, type Reason, type Step } from "../errors.js";
import { sha256ColonHex } from "../keys/fingerprint.js";
import { certificatePems } from "../keys/key-types.js";
import * as x509 from "../keys/x509.js";
import type { RevokeTarget } from "../protocols/types.js";

/**
 * Parses DER (or PEM) as an X.509 certificate, or fails at `step` for `reason`, naming `what`.
 * Bytes after the certificate's end are refused: they would be stored, and the fingerprint printed
 * (and pinned) would not be the one openssl computes for the certificate.
 */
export function parseCertificate(
  data: Uint8Array | string,
  what: string,
  step: Step,
  reason: Reason,
): x509.X509Certificate {
  let cert: x509.X509Certificate;
  try {
    cert = x509.readInFull(new x509.X509Certificate(typeof data === "string" ? data : new Uint8Array(data)));
  } catch (err) {
    throw new CertRetrieverError(`${step} failed: ${what} is not an X.509 certificate (${describeCause(err)})`, {
      step,
      reason,
      cause: err,
    });
  }
  const der = new Uint8Array(cert.rawData);
  const end = asn1js.fromBER(der).offset;
  if (end !== der.byteLength) {
    throw new CertRetrieverError(
      `${step} failed: ${what} has ${der.byteLength - end} bytes after the end of the certificate`,
      { step, reason },
    );
  }
  return cert;
}

/** SHA-256 of the DER, as uppercase hex pairs joined by colons (the form openssl and dojot print). */
export function sha256Fingerprint(cert: x509.X509Certificate): string {
  return sha256ColonHex(cert.rawData);
}

/** The first CN of a certificate's subject, if any. */
export function commonName(cert: x509.X509Certificate): string | undefined {
  return cert.subjectName.getField("CN")[0];
}

/** A DN as text with the names openssl prints, UID included (x509-identity-mgmt's CA carries one). */
export function displayName(name: x509.Name): string {
  return new x509.Name(name.toJSON(), { UID: "0.9.2342.19200300.100.1.1" }).toString();
}

/**
 * A CA file's certificates, in order: the CA that issues the device's certificate first, then its
 * issuers (EST stores the chain; dojot has a single CA). Fails like {@link parseCertificate}.
 */
export function parseCaChain(pem: string, what: string, step: Step, reason: Reason): x509.X509Certificate[] {
  const found = certificatePems(pem);
  const blocks = found.length > 0 ? found : [pem];
  return blocks.map((block, i) =>
    parseCertificate(block, blocks.length > 1 ? `certificate ${i + 1} of ${what}` : what, step, reason),
  );
}

/** A certificate as a platform's revocation names it: fingerprint, serial and issuer. */
export function revokeTarget(cert: x509.X509Certificate, reason?: "superseded"): RevokeTarget {
  return {
    sha256Fingerprint: sha256Fingerprint(cert),
    serialNumber: cert.serialNumber,
    issuer: cert.issuer,
    ...(reason ? { reason } : {}),
  };
}
