/** EST's /cacerts: which of the certificates a server sends is the CA chain of this device. */
import { CertRetrieverError, type Reason } from "../../errors.js";
import { sameBytes, sha256ColonHex } from "../../keys/fingerprint.js";
import { certificatePems } from "../../keys/key-types.js";
import type { CryptoProvider } from "../../keys/provider.js";
import * as x509 from "../../keys/x509.js";
import { EST } from "./name.js";

/**
 * The most certificates /cacerts may hold. A root changing over sends four (RFC 7030 §4.1.3), and a
 * few intermediates come on top; putting them in order verifies signatures pair by pair, which a
 * server sending hundreds would turn into minutes of work past any deadline.
 */
const MAX_CACERTS = 32;

/** Whether a certificate may issue others: CA:TRUE, and a key usage (if any) that allows signing certificates (RFC 5280 §4.2.1.3). */
function isCa(cert: x509.X509Certificate): boolean {
  const usage = cert.getExtension(x509.KeyUsagesExtension);
  return (
    cert.getExtension(x509.BasicConstraintsExtension)?.ca === true &&
    (usage === null || usage === undefined || (usage.usages & x509.KeyUsageFlags.keyCertSign) !== 0)
  );
}

const selfSigned = (c: x509.X509Certificate) => c.subject === c.issuer;

/** The CA certificates of the bag (once each), and for each the others whose key verifies its signature, self-signed ones first. */
async function issuersIn(
  certs: x509.X509Certificate[],
  crypto: CryptoProvider,
): Promise<{ cas: x509.X509Certificate[]; issuersOf: (c: x509.X509Certificate) => x509.X509Certificate[] }> {
  const cas = certs.filter((c, i) => isCa(c) && certs.findIndex((d) => sameBytes(d.rawData, c.rawData)) === i);
  const signs = new Map<x509.X509Certificate, x509.X509Certificate[]>();
  for (const cert of cas) {
    const issuers: x509.X509Certificate[] = [];
    for (const candidate of cas) {
      if (candidate === cert || candidate.subject !== cert.issuer) continue;
      if (await signedBy(cert, candidate, crypto)) issuers.push(candidate);
    }
    signs.set(
      cert,
      issuers.sort((a, b) => Number(selfSigned(b)) - Number(selfSigned(a))),
    );
  }
  return { cas, issuersOf: (c) => signs.get(c) ?? [] };
}

/** Whether `issuer`'s key verifies `cert`'s signature; a key or signature that cannot be read does not. */
async function signedBy(
  cert: x509.X509Certificate,
  issuer: x509.X509Certificate,
  crypto: CryptoProvider,
): Promise<boolean> {
  try {
    return await cert.verify({ publicKey: issuer.publicKey, signatureOnly: true }, crypto);
  } catch {
    return false;
  }
}

/** Subjects for a message: the first three, and how many more. */
function subjects(certs: x509.X509Certificate[]): string {
  const named = certs.slice(0, 3).map((c) => `'${c.subject.length > 80 ? `${c.subject.slice(0, 77)}...` : c.subject}'`);
  return certs.length > 3 ? `${named.join(", ")} and ${certs.length - 3} more` : named.join(", ");
}

/** A /cacerts that gives no chain to use. */
function refused(what: string, reason: Reason, advice = ""): CertRetrieverError {
  return new CertRetrieverError(
    `fetch-ca failed: the EST server's /cacerts holds ${what}, and one device needs exactly one CA chain${advice}; nothing was written`,
    { step: "fetch-ca", reason, facts: { protocol: EST } },
  );
}

/**
 * The CA certificates of /cacerts in order: the CA that issues devices first, then its issuers up
 * to a root. Certificates that are no CA (a server's own, say, or one whose key usage forbids
 * signing certificates) are left out; an issuer is one whose key verifies the signature, a
 * self-signed one preferred (a root changing over sends the new root cross-signed by the old one
 * too). The lowest CA is the one that issues no other; where there are several such chains, the
 * one holding a certificate `known` (pinned, or stored) is taken, and otherwise one device cannot
 * choose. More than {@link MAX_CACERTS} certificates, and CAs that issue one another in a loop
 * (no root above them, which RFC 7030 §4.1.3 requires), are refused.
 */
export async function orderCaBag(
  certs: x509.X509Certificate[],
  crypto: CryptoProvider,
  known: (c: x509.X509Certificate) => boolean,
): Promise<x509.X509Certificate[]> {
  if (certs.length > MAX_CACERTS)
    throw refused(`${certs.length} certificates (more than ${MAX_CACERTS} is no CA chain)`, "reply-malformed");
  const { cas, issuersOf } = await issuersIn(certs, crypto);
  const lowest = cas.filter((c) => !cas.some((other) => issuersOf(other).includes(c)));
  if (cas.length > 0 && lowest.length === 0)
    throw refused(`CA certificates that only issue one another in a loop (${subjects(cas)})`, "reply-malformed");
  const chains = lowest.map((low) => {
    const chain = [low];
    // Up to a self-signed certificate: a root's cross-signed twin (same name and key) verifies it too.
    for (let at = low; !selfSigned(at); ) {
      const issuers = issuersOf(at);
      const next = issuers.find((i) => !chain.includes(i));
      if (!next && issuers.length === 0) break;
      if (!next)
        throw refused(
          `CA certificates that issue one another in a loop with no root (${subjects(chain)})`,
          "reply-malformed",
        );
      chain.push(next);
      at = next;
    }
    return chain;
  });
  const vouched = chains.filter((chain) => chain.some(known));
  const chosen = chains.length === 1 ? chains[0] : vouched.length === 1 ? vouched[0] : undefined;
  if (chosen) return chosen;
  if (chains.length === 0)
    throw refused("no CA certificate (none with CA:TRUE that may sign certificates)", "reply-malformed");
  throw refused(
    `${chains.length} separate CA chains (${subjects(chains.map((c) => c[0]!))}), none of them singled out by a pin or the stored chain`,
    "not-supported",
  );
}

/**
 * The explicit trust anchors of an EST run (RFC 7030 §4.1.1) from the stored CA file: its
 * certificates, which vouch for the server once a device is enrolled, unless a pin names none of
 * them (a CA that changed, another platform's CA): then the pin decides, as on a first run.
 */
export function explicitAnchors(storedCaPem: string | undefined, pin: string | undefined): string[] {
  const anchors = storedCaPem === undefined ? [] : certificatePems(storedCaPem);
  if (pin === undefined) return anchors;
  const fingerprint = (pem: string) => {
    try {
      return sha256ColonHex(new x509.X509Certificate(pem).rawData).replace(/:/g, "");
    } catch {
      return undefined;
    }
  };
  return anchors.some((pem) => fingerprint(pem) === pin) ? anchors : [];
}
