/** EST's /cacerts: which of the certificates a server sends is the CA chain of this device. */
import { CertRetrieverError } from "../../errors.js";
import { sameBytes, sha256ColonHex } from "../../keys/fingerprint.js";
import { certificatePems } from "../../keys/key-types.js";
import type { CryptoProvider } from "../../keys/provider.js";
import * as x509 from "../../keys/x509.js";
import { EST } from "./name.js";

/**
 * The CA certificates of /cacerts in order: the CA that issues devices first, then its issuers up
 * to a root. Certificates that are no CA (a server's own, say) are left out; an issuer is one whose
 * key verifies the signature, a self-signed one preferred (a root changing over sends the new root
 * cross-signed by the old one too). The lowest CA is the one that issues no other; where there are
 * several such chains, the one holding a certificate `known` (pinned, or stored) is taken, and
 * otherwise one device cannot choose.
 */
export async function orderCaBag(
  certs: x509.X509Certificate[],
  crypto: CryptoProvider,
  known: (c: x509.X509Certificate) => boolean,
): Promise<x509.X509Certificate[]> {
  const cas = certs.filter(
    (c, i) =>
      c.getExtension(x509.BasicConstraintsExtension)?.ca &&
      certs.findIndex((d) => sameBytes(d.rawData, c.rawData)) === i,
  );
  const selfSigned = (c: x509.X509Certificate) => c.subject === c.issuer;
  const signs = new Map<x509.X509Certificate, x509.X509Certificate[]>();
  for (const cert of cas) {
    const issuers: x509.X509Certificate[] = [];
    for (const candidate of cas) {
      if (candidate === cert ? !selfSigned(cert) : candidate.subject !== cert.issuer) continue;
      if (await cert.verify({ publicKey: candidate.publicKey, signatureOnly: true }, crypto).catch(() => false))
        issuers.push(candidate);
    }
    signs.set(
      cert,
      issuers.sort((a, b) => Number(selfSigned(b)) - Number(selfSigned(a))),
    );
  }
  const issuersOf = (c: x509.X509Certificate) => (signs.get(c) ?? []).filter((i) => i !== c);
  const lowest = cas.filter((c) => !cas.some((other) => other !== c && issuersOf(other).includes(c)));
  const chains = lowest.map((low) => {
    const chain = [low];
    // Up to a self-signed certificate: a root's cross-signed twin (same name and key) verifies it too.
    for (let at = low; !selfSigned(at); ) {
      const next = issuersOf(at)[0];
      if (!next || chain.includes(next)) break;
      chain.push(next);
      at = next;
    }
    return chain;
  });
  const vouched = chains.filter((chain) => chain.some(known));
  const chosen = chains.length === 1 ? chains[0] : vouched.length === 1 ? vouched[0] : undefined;
  if (!chosen) {
    const what =
      chains.length === 0
        ? "no CA certificate"
        : `${chains.length} separate CA chains (${chains.map((c) => `'${c[0]!.subject}'`).join(", ")}), none of them singled out by a pin or the stored chain`;
    throw new CertRetrieverError(
      `fetch-ca failed: the EST server's /cacerts holds ${what}, and one device needs exactly one`,
      { step: "fetch-ca", reason: "not-supported", facts: { protocol: EST } },
    );
  }
  return chosen;
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
