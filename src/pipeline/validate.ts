import { timingSafeEqual } from "node:crypto";
import * as x509 from "../crypto/x509.js";
import { CertRetrieverError, type Step } from "../errors.js";
import { ExitCode } from "../exit-codes.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { commonName } from "./certificate.js";
import { sanList, type SubjectAltNames } from "./build-csr.js";

/** What an issued (or stored) certificate is checked against. */
export interface ValidationInput {
  cert: x509.X509Certificate;
  ca: x509.X509Certificate;
  /** DER SubjectPublicKeyInfo of the device's key. */
  publicKeySpki: Uint8Array;
  deviceId: string;
  now: Date;
}

/**
 * Checks, before anything is written, that the certificate carries our key, is signed by the CA,
 * is valid now, and names the device (CN = device id, as EJBCA's end entity sets it).
 * Throws a validation error (exit 14) naming the first check that fails.
 */
export async function validateCertificate(
  input: ValidationInput,
  crypto: CryptoProvider,
  step: Step = "validate",
): Promise<void> {
  const fail = (message: string, hint?: string) =>
    new CertRetrieverError(`${step} failed: ${message}; nothing was written`, {
      step,
      exitCode: ExitCode.VALIDATION,
      hint,
    });
  const { cert, ca, deviceId, now } = input;
  const certSpki = new Uint8Array(cert.publicKey.rawData);
  if (certSpki.length !== input.publicKeySpki.length || !timingSafeEqual(certSpki, input.publicKeySpki)) {
    throw fail("the certificate's public key is not the key generated for this device");
  }
  const signedByCa =
    cert.issuerName.toString() === ca.subjectName.toString() &&
    (await cert.verify({ publicKey: ca.publicKey, signatureOnly: true }, crypto));
  if (!signedByCa) {
    throw fail(`the certificate is not signed by the CA '${ca.subject}' (its issuer is '${cert.issuer}')`, "check --ca-name: the CA fetched must be the one that signs device certificates");
  }
  if (now < cert.notBefore || now > cert.notAfter) {
    throw fail(
      `the certificate is valid from ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()}, which does not include now (${now.toISOString()})`,
      "check the device clock",
    );
  }
  const cn = commonName(cert);
  if (cn !== deviceId) {
    throw fail(`the certificate's subject CN is '${cn ?? ""}', not the device id '${deviceId}'`);
  }
}

/** The requested SANs that the issued certificate does not carry (profiles may drop some). */
export function missingSans(cert: x509.X509Certificate, requested: SubjectAltNames): string[] {
  const ext = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const present = new Set((ext?.names.toJSON() ?? []).map((n) => `${n.type}:${n.value}`));
  return sanList(requested)
    .map((n) => `${n.type}:${n.value}`)
    .filter((n) => !present.has(n));
}
