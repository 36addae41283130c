import { timingSafeEqual } from "node:crypto";
import { CertRetrieverError, type Reason, type Step } from "../errors.js";
import type { CryptoProvider } from "../keys/provider.js";
import * as x509 from "../keys/x509.js";
import { type SubjectAltNames, sanList } from "./build-csr.js";
import { commonName } from "./certificate.js";

/** What an issued (or stored) certificate is checked against. */
export interface ValidationInput {
  cert: x509.X509Certificate;
  ca: x509.X509Certificate;
  /** DER SubjectPublicKeyInfo of the device's key. */
  publicKeySpki: Uint8Array;
  deviceId: string;
  /** The CNs the platform is known to issue for this device (default: the device id). */
  commonNames?: string[];
  now: Date;
  /** Platform time minus local time, when a reply told it. */
  clockSkewMs?: number;
}

/**
 * The extensions OpenSSL may find critical and still accept (`X509_supported_extension` in
 * crypto/x509/v3_purp.c): Netscape cert type, key usage, subject alt name, basic constraints,
 * certificate policies, CRL distribution points, extended key usage, RFC 3779 IP and AS blocks,
 * policy constraints, proxy cert info, name constraints, policy mappings, inhibit any policy.
 */
const TLS_CRITICAL_EXTENSIONS = new Set([
  "2.16.840.1.113730.1.1",
  "2.5.29.15",
  "2.5.29.17",
  "2.5.29.19",
  "2.5.29.32",
  "2.5.29.31",
  "2.5.29.37",
  "1.3.6.1.5.5.7.1.7",
  "1.3.6.1.5.5.7.1.8",
  "2.5.29.36",
  "1.3.6.1.5.5.7.1.14",
  "2.5.29.30",
  "2.5.29.33",
  "2.5.29.54",
]);

/** A clock further than this from the platform's is reported. */
export const CLOCK_TOLERANCE_MS = 5 * 60_000;

/**
 * Checks, before anything is written, the path from the CA to the certificate: the certificate
 * carries our key; the CA is a CA (basicConstraints CA:TRUE, keyCertSign) and valid now; it signed
 * the certificate; the certificate is not a CA, is valid now, and names the device (CN = device
 * id, as EJBCA's end entity sets it). Throws `cert-invalid` naming the first check that fails,
 * `cert-out-of-date` when it is not valid now, or `clock-skew` when only the device's clock is wrong.
 */
export async function validateCertificate(
  input: ValidationInput,
  crypto: CryptoProvider,
  step: Step = "validate",
): Promise<void> {
  const fail = (message: string) =>
    new CertRetrieverError(`${step} failed: ${message}${step === "validate" ? "; nothing was written" : ""}`, {
      step,
      reason: "cert-invalid",
    });
  const { cert, ca, deviceId } = input;
  const certSpki = new Uint8Array(cert.publicKey.rawData);
  if (certSpki.length !== input.publicKeySpki.length || !timingSafeEqual(certSpki, input.publicKeySpki)) {
    throw fail("the certificate's public key is not the key generated for this device");
  }
  const caConstraints = ca.getExtension(x509.BasicConstraintsExtension);
  if (!caConstraints?.ca) throw fail(`the CA certificate '${ca.subject}' is not a CA (no basicConstraints CA:TRUE)`);
  const caUsage = ca.getExtension(x509.KeyUsagesExtension);
  if (caUsage && !(caUsage.usages & x509.KeyUsageFlags.keyCertSign)) {
    throw fail(`the CA certificate '${ca.subject}' may not sign certificates (its keyUsage lacks keyCertSign)`);
  }
  const signedByCa =
    cert.issuerName.toString() === ca.subjectName.toString() &&
    (await cert.verify({ publicKey: ca.publicKey, signatureOnly: true }, crypto));
  if (!signedByCa) {
    throw fail(`the certificate is not signed by the CA '${ca.subject}' (its issuer is '${cert.issuer}')`);
  }
  if (cert.getExtension(x509.BasicConstraintsExtension)?.ca)
    throw fail("the device certificate is a CA certificate (basicConstraints CA:TRUE)");
  for (const [c, what] of [
    [ca, "the CA certificate"],
    [cert, "the certificate"],
  ] as const) {
    const unknown = c.extensions.find((e) => e.critical && !TLS_CRITICAL_EXTENSIONS.has(e.type));
    if (unknown)
      throw fail(`${what} has a critical extension TLS peers do not know (${unknown.type}), so they would refuse it`);
  }
  checkValidity(ca, "the CA certificate", input, step);
  checkValidity(cert, "the certificate", input, step);
  const cn = commonName(cert);
  const expected = input.commonNames ?? [deviceId];
  if (!cn || !expected.includes(cn)) {
    throw fail(`the certificate's subject CN is '${cn ?? ""}', not ${expected.map((c) => `'${c}'`).join(" or ")}`);
  }
}

/**
 * The pre-flight of the clock, before any key is made or request sent: the CA must be valid now,
 * and the device's clock within CLOCK_TOLERANCE_MS of the platform's (its Date header), else the run
 * stops with `clock-skew` (or `cert-out-of-date` for a CA that is not valid on either clock).
 */
/** What a failure of the pre-flight left undone. */
const BEFORE_KEY = "; no key was made and no certificate requested";

export function checkClock(ca: x509.X509Certificate, now: Date, clockSkewMs: number | undefined, step: Step): void {
  checkValidity(ca, "the CA certificate", { now, clockSkewMs }, step);
  if (clockSkewMs === undefined || Math.abs(clockSkewMs) <= CLOCK_TOLERANCE_MS) return;
  throw new CertRetrieverError(
    `${step} failed: this device's clock (${now.toISOString()}) is ${describeSkew(clockSkewMs)} the platform's, so a certificate issued now would look ${clockSkewMs > 0 ? "not yet valid" : "expired"} here${BEFORE_KEY}`,
    { step, reason: "clock-skew" },
  );
}

function checkValidity(
  cert: x509.X509Certificate,
  what: string,
  input: Pick<ValidationInput, "now" | "clockSkewMs">,
  step: Step,
): void {
  const { now, clockSkewMs } = input;
  const within = (t: number) => t >= cert.notBefore.getTime() && t <= cert.notAfter.getTime();
  if (within(now.getTime())) return;
  const range = `valid from ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()}`;
  const written = step === "validate" ? "; nothing was written" : step === "fetch-ca" ? BEFORE_KEY : "";
  if (clockSkewMs !== undefined && Math.abs(clockSkewMs) > CLOCK_TOLERANCE_MS && within(now.getTime() + clockSkewMs)) {
    throw new CertRetrieverError(
      `${step} failed: this device's clock (${now.toISOString()}) is ${describeSkew(clockSkewMs)} the platform's, so ${what}, ${range}, looks ${now < cert.notBefore ? "not yet valid" : "expired"} here${step === "fetch-ca" ? BEFORE_KEY : ""}`,
      {
        step,
        reason: "clock-skew",
      },
    );
  }
  throw new CertRetrieverError(
    `${step} failed: ${what} is ${range}, which does not include now (${now.toISOString()})${written}`,
    {
      step,
      reason: "cert-out-of-date",
    },
  );
}

/** "3 h 20 min behind" / "12 s ahead of": two units at most, the smaller one rounded. */
export function describeSkew(skewMs: number): string {
  const units = [
    ["d", 86_400],
    ["h", 3_600],
    ["min", 60],
    ["s", 1],
  ] as const;
  const raw = Math.abs(skewMs) / 1000;
  const top = units.findIndex(([, size]) => raw >= size);
  const precision = units[Math.min(Math.max(top, 0) + 1, units.length - 1)]![1];
  let s = Math.round(raw / precision) * precision;
  const parts: string[] = [];
  for (const [unit, size] of units) {
    if (s >= size && parts.length < 2) {
      parts.push(`${Math.floor(s / size)} ${unit}`);
      s %= size;
    }
  }
  return `${parts.join(" ") || "0 s"} ${skewMs > 0 ? "behind" : "ahead of"}`;
}

/**
 * A profile's identity element must be in the certificate as the broker reads it: amqtt's
 * CertificateAuthPlugin takes the device from the first URI SAN (`spiffe://<domain>/device/<id>`).
 * A platform that drops the CSR's SANs (EJBCA with "Allow Extension Override" off) would issue a
 * certificate the broker refuses: a validation failure, before anything is written.
 */
export function checkProfileIdentity(cert: x509.X509Certificate, profile: string, requested: SubjectAltNames): void {
  const wanted = requested.uri[0];
  if (profile !== "amqtt" || !wanted) return;
  const uris = (cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON() ?? [])
    .filter((n) => n.type === "url")
    .map((n) => n.value);
  if (uris[0] === wanted) return;
  const found = uris.length === 0 ? "it has no URI SAN" : `its first URI SAN is ${uris[0]}`;
  throw new CertRetrieverError(
    `validate failed: the certificate lacks the URI SAN ${wanted} that the amqtt broker identifies the device by (${found}); nothing was written`,
    {
      step: "validate",
      reason: "san-dropped",
    },
  );
}

/** The requested SANs that the issued certificate does not carry (profiles may drop some). */
export function missingSans(cert: x509.X509Certificate, requested: SubjectAltNames): string[] {
  const ext = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const present = new Set((ext?.names.toJSON() ?? []).map((n) => `${n.type}:${n.value}`));
  return sanList(requested)
    .map((n) => `${n.type}:${n.value}`)
    .filter((n) => !present.has(n));
}

/**
 * The CA chain a platform sent (EST's /cacerts), in order: each a CA, valid now, and signed by the
 * next; the last one self-signed, or an intermediate whose issuers the server left out (the pin
 * then says whether it is trusted).
 */
export async function validateCaChain(
  chain: x509.X509Certificate[],
  crypto: CryptoProvider,
  now: Date,
  step: Step,
  reason: Reason,
  what: string,
): Promise<void> {
  for (const [i, cert] of chain.entries()) {
    const issuer = chain[i + 1] ?? (cert.issuer === cert.subject ? cert : undefined);
    let problem: string | undefined;
    if (!cert.getExtension(x509.BasicConstraintsExtension)?.ca) problem = "is not a CA (no basicConstraints CA:TRUE)";
    else if (now < cert.notBefore || now > cert.notAfter)
      problem = `is valid from ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()}, which does not include now (${now.toISOString()})`;
    else if (
      issuer &&
      (cert.issuer !== issuer.subject ||
        !(await cert.verify({ publicKey: issuer.publicKey, signatureOnly: true }, crypto)))
    ) {
      problem =
        issuer === cert ? "does not verify as self-signed" : `is not signed by the next one, '${issuer.subject}'`;
    }
    if (problem)
      throw new CertRetrieverError(`${step} failed: in ${what}, '${cert.subject}' ${problem}`, { step, reason });
  }
}
