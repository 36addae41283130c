import { signingAlgorithm } from "../keys/key-types.js";
import type { CryptoProvider } from "../keys/provider.js";
import * as x509 from "../keys/x509.js";

/** Subject alternative names requested in the CSR. */
export interface SubjectAltNames {
  dns: string[];
  ip: string[];
  uri: string[];
}

/**
 * Builds the PKCS#10 request as dojot's Certificate Retriever does: subject `CN=<device id>`,
 * keyUsage and basicConstraints CA:FALSE (not critical), the SANs asked for, signed with SHA-256
 * (SHA-384 for P-384). With `renewing`, its subject and subjectAltName instead (an EST
 * re-enrollment, RFC 7030 §4.2.2).
 */
export async function buildCsr(
  deviceId: string,
  keys: CryptoKeyPair,
  sans: SubjectAltNames,
  crypto: CryptoProvider,
  renewing?: x509.X509Certificate,
): Promise<x509.Pkcs10CertificateRequest> {
  const isEc = keys.privateKey.algorithm.name === "ECDSA";
  const usages = isEc
    ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.nonRepudiation | x509.KeyUsageFlags.keyAgreement
    : x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.nonRepudiation | x509.KeyUsageFlags.keyEncipherment;
  const extensions: x509.Extension[] = [
    new x509.KeyUsagesExtension(usages, false),
    new x509.BasicConstraintsExtension(false, undefined, false),
  ];
  const names = sanList(sans);
  const kept = renewing?.getExtension(x509.SubjectAlternativeNameExtension);
  if (renewing) {
    if (kept) extensions.push(new x509.Extension(kept.type, kept.critical, kept.value));
  } else if (names.length > 0) {
    extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
  }
  return x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: renewing ? renewing.subjectName : [{ CN: [deviceId] }],
      keys,
      signingAlgorithm: signingAlgorithm(keys.privateKey),
      extensions,
    },
    crypto,
  );
}

/** The SANs as @peculiar/x509 general names. */
export function sanList(sans: SubjectAltNames): x509.JsonGeneralName[] {
  return [
    ...sans.dns.map((value) => ({ type: "dns" as const, value })),
    ...sans.ip.map((value) => ({ type: "ip" as const, value })),
    ...sans.uri.map((value) => ({ type: "url" as const, value })),
  ];
}
