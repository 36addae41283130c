/**
 * Who an EST request comes from (RFC 7030 §3.2.3, §3.3.2): a TLS client certificate checked
 * against the CAs a route accepts, at the lab's clock, or HTTP Basic credentials of a lab user.
 */
import { X509Certificate as NodeCertificate } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { TLSSocket } from "node:tls";
import { checkPassword, loadState } from "./state.js";
import * as x509 from "./x509.js";

/** Who is asking: an `auth` record and, on re-enrollment, the certificate being renewed; or a refusal. */
export type Authenticated = { auth: string; renewing?: NodeCertificate } | { status: 401 | 403; why: string };

/**
 * RFC 7030 §3.3.2 and §3.2.3: `/simpleenroll` takes a TLS client certificate from the issuing CA
 * or a bootstrap CA, or HTTP Basic credentials of a lab user; `/simplereenroll` only the current
 * certificate from the issuing CA (§4.2.2: the one being renewed). Validity is judged by the lab's clock.
 */
export async function authenticate(
  req: IncomingMessage,
  reenroll: boolean,
  ctx: { dir: string; issuing: NodeCertificate; bootstrap: NodeCertificate[] },
): Promise<Authenticated> {
  const chain = peerChain(req);
  const { issuing } = ctx;
  if (reenroll) {
    if (chain.length === 0)
      return { status: 401, why: "simplereenroll needs the TLS client certificate being renewed (RFC 7030 4.2.2)" };
    const verdict = chainsTo(chain, [issuing], Date.now());
    if (typeof verdict === "string") return { status: 403, why: `the TLS client certificate ${verdict}` };
    // Renewed is what was enrolled: a certificate of the issuing CA that EST never issued (a broker's, say) is not a device's.
    const serial = serialOf(chain[0]!);
    const enrolled = (await loadState(ctx.dir))?.estIssued?.some((r) => r.serial.toLowerCase() === serial);
    if (!enrolled)
      return {
        status: 403,
        why: `the TLS client certificate ${serial} was not issued by this EST server, so there is nothing to renew`,
      };
    return { auth: `reenroll:${serial}`, renewing: chain[0]! };
  }
  let refused = "";
  if (chain.length > 0) {
    const verdict = chainsTo(chain, [issuing, ...ctx.bootstrap], Date.now());
    if (typeof verdict !== "string") return { auth: `client-cert:${serialOf(chain[0]!)}` };
    refused = `the TLS client certificate ${verdict}, and `;
  }
  const user = await basicUser(req.headers.authorization, ctx.dir);
  if (user) return { auth: `basic:${user}` };
  return {
    status: 401,
    why: `${refused}${req.headers.authorization ? "the HTTP Basic credentials are wrong" : "no HTTP Basic credentials came with the request"}`,
  };
}

/** The lab user whose HTTP Basic credentials (RFC 7617) these are, if they are right. */
async function basicUser(header: string | undefined, dir: string): Promise<string | undefined> {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? "");
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon < 0) return undefined;
  const name = decoded.slice(0, colon).toLowerCase();
  const user = (await loadState(dir))?.users[name];
  return user?.active && checkPassword(user, decoded.slice(colon + 1)) ? name : undefined;
}

/** The certificates the TLS client presented, its own first. */
function peerChain(req: IncomingMessage): NodeCertificate[] {
  const chain: NodeCertificate[] = [];
  const seen = new Set<string>();
  let cert = (req.socket as TLSSocket).getPeerCertificate?.(true);
  while (cert?.raw && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    chain.push(new NodeCertificate(cert.raw));
    cert = cert.issuerCertificate;
  }
  return chain;
}

/** The anchor `chain` leads to, through the CA certificates it carries, all valid at `now`; or why not. */
function chainsTo(chain: NodeCertificate[], anchors: NodeCertificate[], now: number): NodeCertificate | string {
  // As OpenSSL's "sslclient" purpose (libest) and Go's crypto/tls check it: an EKU, if any, must allow clientAuth, a key usage digitalSignature (or keyAgreement).
  const leaf = new x509.X509Certificate(chain[0]!.raw);
  const eku = leaf.getExtension(x509.ExtendedKeyUsageExtension);
  if (eku && !eku.usages.some((u) => u === x509.ExtendedKeyUsage.clientAuth || u === "2.5.29.37.0"))
    return `'${leaf.subject}' may not authenticate a TLS client (its extendedKeyUsage lacks clientAuth)`;
  const usage = leaf.getExtension(x509.KeyUsagesExtension);
  if (usage && !(usage.usages & (x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement)))
    return `'${leaf.subject}' may not sign for a TLS client (its keyUsage lacks digitalSignature)`;
  const signedBy = (cert: NodeCertificate, issuer: NodeCertificate) =>
    cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  const valid = (cert: NodeCertificate) => Date.parse(cert.validFrom) <= now && now <= Date.parse(cert.validTo);
  let cert: NodeCertificate | undefined = chain[0];
  for (let depth = 0; cert && depth < 5; depth++) {
    if (!valid(cert))
      return `'${cert.subject.replace(/\n/g, ", ")}' is not valid now (${cert.validFrom} to ${cert.validTo})`;
    const current: NodeCertificate = cert;
    const anchor = anchors.find((a) => signedBy(current, a));
    if (anchor) return valid(anchor) ? anchor : `is from a CA that is not valid now`;
    cert = chain.slice(1).find((c) => c.ca && c !== current && signedBy(current, c));
  }
  return `'${chain[0]!.subject.replace(/\n/g, ", ")}' is not from a CA this server accepts for this operation`;
}

/** The certificate's serial as hex, lower case, as the lab writes serials. */
function serialOf(cert: NodeCertificate): string {
  return cert.serialNumber.toLowerCase();
}
