/**
 * The single entry point to @peculiar/x509: its dependency injection needs the Reflect metadata
 * polyfill loaded first, so every module imports x509 from here, never from the package.
 */
import "reflect-metadata";

export * from "@peculiar/x509";

import type { X509Certificate } from "@peculiar/x509";

/**
 * The certificate, its names, dates and extensions read now: @peculiar/x509 parses them when first
 * asked, so that a broken extension (a basicConstraints that is no BasicConstraints) would throw
 * later, outside whatever refuses a malformed certificate, as an error of no known reason.
 */
export function readInFull(cert: X509Certificate): X509Certificate {
  void [cert.subject, cert.issuer, cert.notBefore, cert.notAfter, cert.extensions];
  return cert;
}
