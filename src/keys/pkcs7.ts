/**
 * EST's two binary bodies (RFC 7030), as a client reads them: the "certs-only" PKCS#7 of
 * `/cacerts`, `/simpleenroll` and `/simplereenroll` (a CMS SignedData with certificates and no
 * signers, RFC 5272 §4.2), with @peculiar/asn1-cms; and the CSR attributes of `/csrattrs`
 * (§4.5.2), with asn1js. Both travel base64-encoded (§4.1.3, RFC 8951). Building them is a
 * server's business (the lab's).
 */
import { ContentInfo, id_signedData, SignedData } from "@peculiar/asn1-cms";
import { AsnConvert } from "@peculiar/asn1-schema";
import * as asn1js from "asn1js";

/**
 * The certificates (DER, in the order sent) of a certs-only PKCS#7. Throws an Error saying what
 * is wrong with anything else: not CMS, not SignedData, signers present, or no certificate.
 */
export function certsFromPkcs7(der: Uint8Array): Uint8Array[] {
  let signedData: SignedData;
  try {
    const info = AsnConvert.parse(der, ContentInfo);
    if (info.contentType !== id_signedData)
      throw new Error(`it is CMS content of type ${info.contentType}, not SignedData`);
    signedData = AsnConvert.parse(info.content, SignedData);
  } catch (err) {
    throw new Error(`not a PKCS#7 certs-only message: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (signedData.signerInfos.length > 0) throw new Error("a signed PKCS#7 message where a certs-only one belongs");
  const certs: Uint8Array[] = [];
  const bytes = Buffer.from(der);
  for (const choice of signedData.certificates ?? []) {
    if (!choice.certificate) continue; // attribute certificates and others: not ours
    const cert = new Uint8Array(AsnConvert.serialize(choice.certificate));
    // Re-encoded: the bytes must be the ones sent (DER), or fingerprints would name another encoding.
    if (bytes.indexOf(cert) < 0) throw new Error("a certificate in it is not DER-encoded");
    certs.push(cert);
  }
  if (certs.length === 0) throw new Error("the PKCS#7 message holds no certificate");
  return certs;
}

/** One entry of `/csrattrs`: an OID alone, or an attribute with its values (each DER). */
export type CsrAttr = { oid: string } | { attribute: string; values: Uint8Array[] };

/** Reads `CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID` (RFC 7030 §4.5.2); throws an Error on anything else. */
export function decodeCsrAttrs(der: Uint8Array): CsrAttr[] {
  const parsed = asn1js.fromBER(der);
  if (parsed.offset === -1 || parsed.offset !== der.byteLength || !(parsed.result instanceof asn1js.Sequence)) {
    throw new Error("not a DER SEQUENCE of CSR attributes");
  }
  return parsed.result.valueBlock.value.map((item, i) => {
    if (item instanceof asn1js.ObjectIdentifier) return { oid: item.valueBlock.toString() };
    const [type, set] = item instanceof asn1js.Sequence ? item.valueBlock.value : [];
    if (type instanceof asn1js.ObjectIdentifier && set instanceof asn1js.Set) {
      return {
        attribute: type.valueBlock.toString(),
        values: set.valueBlock.value.map((v) => new Uint8Array(v.toBER())),
      };
    }
    throw new Error(`CSR attribute ${i + 1} is neither an OID nor an attribute`);
  });
}

/** The OID in a DER value, or undefined if it is not one. */
export function oidOf(der: Uint8Array): string | undefined {
  const parsed = asn1js.fromBER(der);
  return parsed.result instanceof asn1js.ObjectIdentifier ? parsed.result.valueBlock.toString() : undefined;
}

/** The small INTEGER in a DER value, or undefined if it is not one. */
export function integerOf(der: Uint8Array): number | undefined {
  const parsed = asn1js.fromBER(der);
  return parsed.result instanceof asn1js.Integer ? parsed.result.valueBlock.valueDec : undefined;
}

/** The OIDs cert-retriever reads in `/csrattrs`. */
export const OIDS = {
  ecPublicKey: "1.2.840.10045.2.1",
  secp256r1: "1.2.840.10045.3.1.7",
  secp384r1: "1.3.132.0.34",
  rsaEncryption: "1.2.840.113549.1.1.1",
  ecdsaWithSHA256: "1.2.840.10045.4.3.2",
  ecdsaWithSHA384: "1.2.840.10045.4.3.3",
  challengePassword: "1.2.840.113549.1.9.7",
  extensionRequest: "1.2.840.113549.1.9.14",
} as const;
