import { CertRetrieverError, describeCause } from "../errors.js";
import { normalizeFingerprint } from "../keys/fingerprint.js";
import type { CryptoProvider } from "../keys/provider.js";
import type * as x509 from "../keys/x509.js";
import type { CredentialStore, StoredCredentials } from "../store/types.js";
import { commonName, parseCaChain, parseCertificate, sha256Fingerprint } from "./certificate.js";
import { describeRevocation, type RevocationVerdict } from "./revocation.js";
import { validateCertificate } from "./validate.js";

/** What is asked of stored credentials. */
export interface InspectOptions {
  deviceId: string;
  crypto: CryptoProvider;
  caFingerprint?: string;
  /** The SubjectPublicKeyInfo of each key a stored key record names (a PEM's, or the token keys a URI names). */
  publicKeysOf: (record: string) => Promise<Uint8Array[]>;
  /** When credentials are due for renewal: this long before they expire, or at this fraction of their lifetime left. */
  renewBefore: RenewWindow;
  now: Date;
  /** Whether a certificate that is otherwise valid was revoked (see revocation.ts); absent: not asked. */
  revocation?: (cert: x509.X509Certificate, ca: x509.X509Certificate) => Promise<RevocationVerdict>;
  /** Whether the platform's CA is known to have replaced `ca` (as `check` found it). */
  caReplaced?: (ca: x509.X509Certificate) => Promise<boolean>;
}

/** The renewal window: a duration before expiry (`30d`), or a fraction of the lifetime left (`33%`, as step-ca renews at 2/3). */
export type RenewWindow = { ms: number } | { fraction: number };

/** When `cert` becomes due for renewal under `window`. */
export function renewalStart(cert: { notBefore: Date; notAfter: Date }, window: RenewWindow): Date {
  const end = cert.notAfter.getTime();
  const before = "ms" in window ? window.ms : (end - cert.notBefore.getTime()) * window.fraction;
  return new Date(end - before);
}

/** The verdict on stored credentials: valid (with when renewal is due), or why enrollment is needed. */
export type Inspection =
  | {
      state: "valid";
      cert: x509.X509Certificate;
      ca: x509.X509Certificate;
      renewFrom: Date;
      profiled: boolean;
      revocation?: RevocationVerdict;
    }
  | {
      state: "missing" | "partial" | "invalid" | "expiring" | "interrupted" | "revoked" | "ca-changed";
      reason: string;
      cert?: x509.X509Certificate;
      cacheError?: string;
    };

/**
 * Whether the stored credentials are whole and valid now: all three parts present, the key
 * matches the certificate, the stored CA signed it (and matches the pin), the device is named,
 * it does not expire within the renewal window, and (when asked) no CRL lists it. The answer of `check` and of `enroll`'s
 * "nothing to do".
 */
export async function inspectCredentials(store: CredentialStore, opts: InspectOptions): Promise<Inspection> {
  const stored = await store.read();
  if (!stored.pems || stored.interrupted) return incomplete(stored, store.location, opts.deviceId);
  const { pems } = stored;
  let cert: x509.X509Certificate | undefined;
  let ca: x509.X509Certificate;
  try {
    cert = parseCertificate(pems.certificatePem, stored.where.certificatePem, "check-existing", "cert-invalid");
    const chain = parseCaChain(pems.caPem, stored.where.caPem, "check-existing", "cert-invalid");
    ca = chain[0]!;
    checkPin(chain, opts.caFingerprint, `the stored CA ${stored.where.caPem}`);
    let candidates: Uint8Array[];
    try {
      candidates = await opts.publicKeysOf(pems.key);
    } catch (err) {
      if (err instanceof CertRetrieverError && err.step === "token") throw err; // enrolling again would not help (below too)
      return { state: "invalid", reason: `${stored.where.key} is not a usable key (${describeCause(err)})`, cert };
    }
    if (candidates.length === 0)
      return { state: "invalid", reason: `the token no longer holds the key ${stored.where.key} names`, cert };
    const certSpki = Buffer.from(cert.publicKey.rawData);
    const spki = candidates.find((c) => certSpki.equals(c)) ?? candidates[0]!;
    const commonNames = commonNamesOf(cert, opts.deviceId);
    await validateCertificate(
      { cert, ca, publicKeySpki: spki, deviceId: opts.deviceId, commonNames, now: opts.now },
      opts.crypto,
      "check-existing",
    );
  } catch (err) {
    if (err instanceof CertRetrieverError && err.step === "token") throw err;
    const reason = describeCause(err).replace(/^[a-z-]+ failed: /, "");
    return { state: cert && cert.notAfter < opts.now ? "expiring" : "invalid", reason, cert };
  }
  const renewFrom = renewalStart(cert, opts.renewBefore);
  if (opts.now >= renewFrom) {
    return {
      state: "expiring",
      reason: `the certificate expires at ${cert.notAfter.toISOString()}, within the renewal window`,
      cert,
    };
  }
  if (await opts.caReplaced?.(ca))
    return { state: "ca-changed", reason: "the platform's CA is no longer the stored one (found by check)", cert };
  const revocation = await opts.revocation?.(cert, ca);
  if (revocation?.state === "revoked")
    return { state: "revoked", reason: describeRevocation(revocation, cert), cert, cacheError: revocation.cacheError };
  return { state: "valid", cert, ca, renewFrom, profiled: pems.profileJson !== undefined, revocation };
}

/** Stored credentials that are not all there: an interrupted write, none, or half of them. */
function incomplete(stored: StoredCredentials, location: string, deviceId: string): Inspection {
  if (stored.interrupted)
    return {
      state: "interrupted",
      reason: `a write to ${location} was interrupted; the next enrollment finishes or undoes it`,
    };
  if (stored.present.length === 0)
    return { state: "missing", reason: `no credentials for '${deviceId}' in ${location}` };
  // Devices that share a directory share its CA certificate: a CA alone is no half state of this device.
  if (stored.present.length === 1 && stored.present[0] === "caPem") {
    return {
      state: "missing",
      reason: `no credentials for '${deviceId}' in ${location} (only the CA certificate, which devices there share)`,
    };
  }
  const missing = (["key", "certificatePem", "caPem"] as const).filter((k) => !stored.present.includes(k));
  return { state: "partial", reason: `half state: ${missing.map((k) => stored.where[k]).join(" and ")} missing` };
}

/** The common names that name the device: its id, and (dojot v0.5-v0.6 issue CN=<tenant>:<device>) the id under any tenant prefix. */
function commonNamesOf(cert: x509.X509Certificate, deviceId: string): string[] {
  const cn = commonName(cert);
  return [deviceId, ...(cn && /^[^:]+:/.test(cn) && cn.endsWith(`:${deviceId}`) ? [cn] : [])];
}

/** Stops the run (`pin-mismatch`) if no certificate of the CA chain `ca` (the issuing CA first) matches the pin. */
export function checkPin(
  ca: x509.X509Certificate | x509.X509Certificate[],
  pin: string | undefined,
  what: string,
): void {
  if (!pin) return;
  const chain = Array.isArray(ca) ? ca : [ca];
  const actual = chain.map(sha256Fingerprint);
  if (!actual.some((fp) => fp.replace(/:/g, "") === normalizeFingerprint(pin))) {
    const has =
      actual.length === 1
        ? `has SHA-256 fingerprint ${actual[0]}`
        : `holds no certificate with that fingerprint (its chain: ${actual.join(", ")})`;
    throw new CertRetrieverError(`fetch-ca failed: ${what} ${has}, not the pinned ${pin}`, {
      step: "fetch-ca",
      reason: "pin-mismatch",
    });
  }
}
