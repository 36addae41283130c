/**
 * What a TLS connection trusts and presents: the system's CAs plus any given, or only the given
 * ones, and a client certificate. Read when a TLS connection is first made, never before: plain
 * http never reads the system's CA store, which costs some 50 ms on Node 24.
 */
import { readFileSync } from "node:fs";
import * as tls from "node:tls";
import { type ClientTlsOptions, checkServerFirst } from "./server-first.js";

/** TLS material for the connection to the server (PEM texts). */
export interface TlsSettings {
  /** Extra CA certificates trusted for the server, beside the system's. */
  ca?: string[];
  /** Client certificate and key, for gateways that require one. */
  cert?: string;
  key?: string;
  /**
   * false: the server's certificate is not verified. Only for EST's provisional fetch of /cacerts
   * (RFC 7030 §4.1.1), whose answer is then checked against the pinned fingerprint before
   * anything else is sent.
   */
  verify?: boolean;
  /** false: only `ca` is trusted, not the system's CAs (EST's explicit trust anchors). */
  system?: boolean;
}

/**
 * Node's TLS options for `settings`: trusted CAs, client certificate, and whether to verify. A
 * server that is not verified is never shown the client certificate; one that is, is checked before
 * the certificate goes out (server-first.ts).
 */
export function tlsOptionsOf(settings: TlsSettings = {}): ClientTlsOptions {
  const ca = [...(settings.system === false ? [] : systemCaCertificates()), ...(settings.ca ?? [])];
  if (settings.verify === false) return { ca, rejectUnauthorized: false };
  return checkServerFirst({ ca, cert: settings.cert, key: settings.key });
}

let systemCas: string[] | undefined;

/** The system's trusted CAs (the OS store where Node can read it, else Debian's bundle) plus Node's own. */
function systemCaCertificates(): string[] {
  if (!systemCas) {
    const getCa = (tls as unknown as { getCACertificates?: (kind: string) => string[] }).getCACertificates;
    systemCas = [...tls.rootCertificates, ...(getCa ? getCa("system") : bundleOnDisk())];
  }
  return systemCas;
}

/** The first CA bundle found where Linux distributions keep it (Node 20 cannot read the OS store). */
function bundleOnDisk(): string[] {
  for (const bundle of [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
  ]) {
    try {
      return [readFileSync(bundle, "utf8")];
    } catch {
      // try the next location
    }
  }
  return [];
}
