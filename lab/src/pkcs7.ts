/**
 * What only an EST server writes (RFC 7030): the "certs-only" PKCS#7 of `/cacerts`,
 * `/simpleenroll` and `/simplereenroll` (a CMS SignedData with certificates and no signers, RFC
 * 5272 §4.2), built with @peculiar/asn1-cms; and the CSR attributes of `/csrattrs` (§4.5.2), built
 * with asn1js. The agent reads both (its `certsFromPkcs7` and `decodeCsrAttrs`).
 */
import {
  CertificateChoices,
  CertificateSet,
  ContentInfo,
  EncapsulatedContentInfo,
  id_data,
  id_signedData,
  SignedData,
} from "@peculiar/asn1-cms";
import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate } from "@peculiar/asn1-x509";
import * as asn1js from "asn1js";

/** One entry of `/csrattrs`: an OID alone, or an attribute with its values (each DER). */
export type CsrAttr = { oid: string } | { attribute: string; values: Uint8Array[] };

/** A degenerate certs-only SignedData holding `certs` (DER), in the given order, DER-encoded. */
export function certsOnlyPkcs7(certs: Uint8Array[]): Uint8Array {
  const signedData = new SignedData({
    version: 1,
    encapContentInfo: new EncapsulatedContentInfo({ eContentType: id_data }),
    certificates: new CertificateSet(
      certs.map((der) => new CertificateChoices({ certificate: AsnConvert.parse(der, Certificate) })),
    ),
  });
  return new Uint8Array(
    AsnConvert.serialize(new ContentInfo({ contentType: id_signedData, content: AsnConvert.serialize(signedData) })),
  );
}

/** Builds `/csrattrs`' body, `CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID` (DER); an attribute's values are given as DER. */
export function encodeCsrAttrs(attrs: CsrAttr[]): Uint8Array {
  const items = attrs.map((a) =>
    "oid" in a
      ? new asn1js.ObjectIdentifier({ value: a.oid })
      : new asn1js.Sequence({
          value: [
            new asn1js.ObjectIdentifier({ value: a.attribute }),
            new asn1js.Set({ value: a.values.map((v) => asn1js.fromBER(v).result) }),
          ],
        }),
  );
  return new Uint8Array(new asn1js.Sequence({ value: items }).toBER());
}

/** An OID value as DER (for attribute values such as a curve). */
export function oidDer(oid: string): Uint8Array {
  return new Uint8Array(new asn1js.ObjectIdentifier({ value: oid }).toBER());
}
