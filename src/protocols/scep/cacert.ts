/**
 * GetCACert's reply (RFC 8894 §4.2.1): one CA certificate (`application/x-x509-ca-cert`, DER), or
 * the CA with an RA and intermediates (`application/x-x509-ca-ra-cert`, a certs-only PKCS#7). Which
 * is the issuing CA, its chain up, and the RA that messages go to and come from.
 */
import { CertRetrieverError } from "../../errors.js";
import { sameBytes } from "../../keys/fingerprint.js";
import { certificatePems } from "../../keys/key-types.js";
import { certsFromPkcs7 } from "../../keys/pkcs7.js";
import type { CryptoProvider } from "../../keys/provider.js";
import * as x509 from "../../keys/x509.js";
import type { HttpBytesReply } from "../../transport/http.js";
import { malformed } from "./replies.js";

/** The CA side of a SCEP server: the issuing CA first and its issuers; the certificate messages are encrypted to and signed by. */
export interface ScepCa {
  chain: x509.X509Certificate[];
  /** The RA where there is one, else the CA (§2.2). */
  recipient: x509.X509Certificate;
}

const isCa = (c: x509.X509Certificate) => c.getExtension(x509.BasicConstraintsExtension)?.ca === true;

/** The certificates of a GetCACert reply, by its content type. */
function certificatesOf(reply: HttpBytesReply): x509.X509Certificate[] {
  const type = reply.contentType.split(";")[0]!.trim().toLowerCase();
  try {
    if (type === "application/x-x509-ca-cert")
      return [x509.readInFull(new x509.X509Certificate(new Uint8Array(reply.body)))];
    if (type === "application/x-x509-ca-ra-cert")
      return certsFromPkcs7(new Uint8Array(reply.body)).map((der) =>
        x509.readInFull(new x509.X509Certificate(new Uint8Array(der))),
      );
  } catch (err) {
    throw malformed(
      "fetch-ca",
      reply,
      `the CA certificate${type.endsWith("ra-cert") ? "s as a certs-only PKCS#7" : " in DER"} (${err instanceof Error ? err.message : String(err)})`,
    );
  }
  throw malformed(
    "fetch-ca",
    reply,
    `the CA certificate as application/x-x509-ca-cert or application/x-x509-ca-ra-cert, not ${type ? `'${type}'` : "a reply without a Content-Type"}`,
  );
}

/**
 * The CA and RA of a GetCACert reply. The issuing CA is the CA certificate that issued the RA, or
 * with no RA the one that issued no other CA of the reply; its issuers follow by name up to a
 * self-signed one (the fetch-ca step checks their signatures). An RA must be issued by the CA.
 */
export async function readCaCerts(reply: HttpBytesReply, crypto: CryptoProvider): Promise<ScepCa> {
  const certs = certificatesOf(reply);
  const cas = certs.filter(isCa);
  const ras = certs.filter((c) => !isCa(c));
  if (cas.length === 0 && certs.length === 1) return { chain: certs, recipient: certs[0]! }; // an old CA without basicConstraints
  const lowest = ras.length
    ? cas.filter((ca) => ras.some((ra) => ra.issuer === ca.subject))
    : cas.filter(
        (ca) => !cas.some((other) => other !== ca && other.issuer === ca.subject && other.subject !== ca.subject),
      );
  if (lowest.length !== 1)
    throw malformed(
      "fetch-ca",
      reply,
      `one issuing CA among the certificates (${lowest.length === 0 ? "none" : "several"} of ${certs.length} fit)`,
    );
  const chain = [lowest[0]!];
  for (let at = lowest[0]!; at.subject !== at.issuer; ) {
    const up = cas.find((c) => c.subject === at.issuer && !chain.includes(c));
    if (!up) break;
    chain.push(up);
    at = up;
  }
  const ra = ras.find((r) => r.issuer === chain[0]!.subject);
  if (ra && !(await ra.verify({ publicKey: chain[0]!.publicKey, signatureOnly: true }, crypto).catch(() => false)))
    throw malformed(
      "fetch-ca",
      reply,
      `an RA certificate issued by the CA ('${ra.subject}' is not signed by '${chain[0]!.subject}')`,
    );
  return { chain, recipient: ra ?? chain[0]! };
}

/**
 * Without a pin, the CA chain must be the one stored with the device's credentials: SCEP runs over
 * plain HTTP too, where nothing else vouches for the server. Throws `pin-mismatch` otherwise.
 */
export function checkStoredChain(chain: x509.X509Certificate[], storedCaPem: string): void {
  const stored = certificatePems(storedCaPem).map((pem) => new x509.X509Certificate(pem));
  if (chain.some((c) => stored.some((s) => sameBytes(s.rawData, c.rawData)))) return;
  throw new CertRetrieverError(
    `fetch-ca failed: the SCEP server's CA ('${chain[0]!.subject}') is none of the CA certificates stored with this device's credentials, and no pin vouches for it; nothing was written`,
    { step: "fetch-ca", reason: "pin-mismatch", facts: { protocol: "scep" } },
  );
}
