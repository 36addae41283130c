/**
 * SCEP's pkiMessage (RFC 8894 §3.2): a CMS SignedData whose content is the pkcsPKIEnvelope and
 * whose signer carries the SCEP attributes (messageType, transactionID, nonces, pkiStatus,
 * failInfo) as authenticated attributes. Built and read with @peculiar/asn1-cms; signatures
 * made and checked with Node's RSA (PKCS #1 v1.5).
 */
import { createHash, createPublicKey, type KeyObject, sign, verify } from "node:crypto";
import {
  Attribute,
  CertificateChoices,
  CertificateSet,
  ContentInfo,
  DigestAlgorithmIdentifier,
  DigestAlgorithmIdentifiers,
  EncapsulatedContent,
  EncapsulatedContentInfo,
  id_data,
  id_signedData,
  SignatureAlgorithmIdentifier,
  SignedData,
  SignerIdentifier,
  SignerInfo,
  SignerInfos,
} from "@peculiar/asn1-cms";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import * as asn1js from "asn1js";
import * as x509 from "../../keys/x509.js";
import type { Digest } from "./caps.js";
import { issuerAndSerial } from "./envelope.js";

/** The SCEP attributes (§3.2.1) and CMS's own two, by OID. */
const ATTR = {
  contentType: "1.2.840.113549.1.9.3",
  messageDigest: "1.2.840.113549.1.9.4",
  messageType: "2.16.840.1.113733.1.9.2",
  pkiStatus: "2.16.840.1.113733.1.9.3",
  failInfo: "2.16.840.1.113733.1.9.4",
  senderNonce: "2.16.840.1.113733.1.9.5",
  recipientNonce: "2.16.840.1.113733.1.9.6",
  transactionID: "2.16.840.1.113733.1.9.7",
} as const;

const DIGEST_OIDS: Record<Digest, string> = {
  sha256: "2.16.840.1.101.3.4.2.1",
  sha384: "2.16.840.1.101.3.4.2.2",
  sha512: "2.16.840.1.101.3.4.2.3",
  sha1: "1.3.14.3.2.26",
  md5: "1.2.840.113549.2.5",
};
const RSA_ENCRYPTION = "1.2.840.113549.1.1.1";
/** Signature algorithms that name their digest, as some servers write them instead of rsaEncryption. */
const RSA_WITH: Record<string, Digest> = {
  "1.2.840.113549.1.1.11": "sha256",
  "1.2.840.113549.1.1.12": "sha384",
  "1.2.840.113549.1.1.13": "sha512",
  "1.2.840.113549.1.1.5": "sha1",
  "1.2.840.113549.1.1.4": "md5",
};

/** The digest an OID names, or undefined. */
function digestOf(oid: string): Digest | undefined {
  return (Object.keys(DIGEST_OIDS) as Digest[]).find((d) => DIGEST_OIDS[d] === oid);
}

/** The SCEP attributes a message carries: PrintableStrings, and the nonces as bytes. */
export interface ScepAttributes {
  messageType: string;
  transactionID: string;
  senderNonce?: Uint8Array;
  recipientNonce?: Uint8Array;
  pkiStatus?: string;
  failInfo?: string;
}

/** One attribute of one value (DER). */
function attribute(type: string, value: asn1js.BaseBlock): Attribute {
  return new Attribute({ attrType: type, attrValues: [value.toBER()] });
}

/** The authenticated attributes of a message about `content`. */
function signedAttributes(attrs: ScepAttributes, content: Uint8Array, digest: Digest): Attribute[] {
  const list = [
    attribute(ATTR.contentType, new asn1js.ObjectIdentifier({ value: id_data })),
    attribute(ATTR.messageDigest, new asn1js.OctetString({ valueHex: createHash(digest).update(content).digest() })),
    attribute(ATTR.messageType, new asn1js.PrintableString({ value: attrs.messageType })),
    attribute(ATTR.transactionID, new asn1js.PrintableString({ value: attrs.transactionID })),
  ];
  const optional: [string, string | Uint8Array | undefined][] = [
    [ATTR.senderNonce, attrs.senderNonce],
    [ATTR.recipientNonce, attrs.recipientNonce],
    [ATTR.pkiStatus, attrs.pkiStatus],
    [ATTR.failInfo, attrs.failInfo],
  ];
  for (const [type, value] of optional) {
    if (value === undefined) continue;
    list.push(
      attribute(
        type,
        typeof value === "string" ? new asn1js.PrintableString({ value }) : new asn1js.OctetString({ valueHex: value }),
      ),
    );
  }
  // DER orders a SET OF by its elements' encodings (X.690 §11.6), and verifiers re-encode it so (Go's asn1).
  const der = (a: Attribute) => Buffer.from(AsnConvert.serialize(a));
  return list.sort((a, b) => Buffer.compare(der(a), der(b)));
}

/** The DER of a SET OF attributes, as the signature covers it (RFC 5652 §5.4). */
function attributeSet(attrs: Attribute[]): Buffer {
  return Buffer.from(
    new asn1js.Set({ value: attrs.map((a) => asn1js.fromBER(AsnConvert.serialize(a)).result) }).toBER(),
  );
}

/** A pkiMessage: `content` (the envelope, DER) signed by `signer` with the SCEP attributes; a ContentInfo, DER. */
export function signedMessage(
  content: Uint8Array,
  attrs: ScepAttributes,
  signer: { cert: x509.X509Certificate; key: KeyObject; digest: Digest },
): Uint8Array {
  const signedAttrs = signedAttributes(attrs, content, signer.digest);
  const signature = sign(signer.digest, attributeSet(signedAttrs), signer.key);
  const digestAlgorithm = new DigestAlgorithmIdentifier({ algorithm: DIGEST_OIDS[signer.digest] });
  const signedData = new SignedData({
    version: 1,
    digestAlgorithms: new DigestAlgorithmIdentifiers([digestAlgorithm]),
    encapContentInfo: new EncapsulatedContentInfo({
      eContentType: id_data,
      eContent: new EncapsulatedContent({ single: new OctetString(content) }),
    }),
    certificates: new CertificateSet([AsnConvert.parse(signer.cert.rawData, CertificateChoices)]),
    signerInfos: new SignerInfos([
      new SignerInfo({
        version: 1,
        sid: new SignerIdentifier({ issuerAndSerialNumber: issuerAndSerial(signer.cert) }),
        digestAlgorithm,
        signedAttrs,
        signatureAlgorithm: new SignatureAlgorithmIdentifier({
          algorithm: RSA_ENCRYPTION,
          parameters: new Uint8Array([5, 0]).buffer,
        }),
        signature: new OctetString(signature),
      }),
    ]),
  });
  return new Uint8Array(
    AsnConvert.serialize(new ContentInfo({ contentType: id_signedData, content: AsnConvert.serialize(signedData) })),
  );
}

/** A pkiMessage read and checked: its content, its attributes, and the digest its signer used. */
export interface ReadMessage {
  content: Uint8Array;
  attrs: ScepAttributes;
  digest: Digest;
}

/**
 * Reads a pkiMessage signed by one of `signers` (the certificates GetCACert gave, which the pin
 * or the stored chain vouched for), checking its signature and its messageDigest. Throws an Error
 * saying what is wrong.
 */
export function readMessage(der: Uint8Array, signers: x509.X509Certificate[]): ReadMessage {
  const info = AsnConvert.parse(der, ContentInfo);
  if (info.contentType !== id_signedData)
    throw new Error(`it is CMS content of type ${info.contentType}, not SignedData`);
  const signedData = AsnConvert.parse(info.content, SignedData);
  const [signerInfo] = signedData.signerInfos;
  if (!signerInfo?.signedAttrs || !signerInfo.sid.issuerAndSerialNumber)
    throw new Error("it has no signer with authenticated attributes");
  const sid = Buffer.from(AsnConvert.serialize(signerInfo.sid.issuerAndSerialNumber));
  const signer = signers.find((c) => sid.equals(Buffer.from(AsnConvert.serialize(issuerAndSerial(c)))));
  if (!signer) throw new Error("it is signed by a certificate other than the CA's or RA's that GetCACert gave");
  const digest = digestOf(signerInfo.digestAlgorithm.algorithm);
  const sigDigest =
    RSA_WITH[signerInfo.signatureAlgorithm.algorithm] ??
    (signerInfo.signatureAlgorithm.algorithm === RSA_ENCRYPTION ? digest : undefined);
  if (!digest || sigDigest !== digest)
    throw new Error(
      `its signature algorithm is not one this client checks (${signerInfo.signatureAlgorithm.algorithm} with ${signerInfo.digestAlgorithm.algorithm})`,
    );
  const publicKey = createPublicKey({ key: Buffer.from(signer.publicKey.rawData), format: "der", type: "spki" });
  const signed = attributeSet(signerInfo.signedAttrs);
  if (!verify(digest, signed, publicKey, new Uint8Array(signerInfo.signature.buffer)))
    throw new Error("its signature does not verify with the CA's or RA's key");
  const content = eContent(signedData);
  const values = attributeValues(signerInfo.signedAttrs);
  const messageDigest = values.get(ATTR.messageDigest);
  if (!(messageDigest instanceof Uint8Array) || !createHash(digest).update(content).digest().equals(messageDigest))
    throw new Error("its messageDigest does not match its content");
  const text = (oid: string) => (typeof values.get(oid) === "string" ? (values.get(oid) as string) : undefined);
  const bytes = (oid: string) => (values.get(oid) instanceof Uint8Array ? (values.get(oid) as Uint8Array) : undefined);
  return {
    content,
    digest,
    attrs: {
      messageType: text(ATTR.messageType) ?? "",
      transactionID: text(ATTR.transactionID) ?? "",
      senderNonce: bytes(ATTR.senderNonce),
      recipientNonce: bytes(ATTR.recipientNonce),
      pkiStatus: text(ATTR.pkiStatus),
      failInfo: text(ATTR.failInfo),
    },
  };
}

/** The encapsulated content's bytes (empty when absent: a FAILURE or PENDING CertRep has none). */
function eContent(signedData: SignedData): Uint8Array {
  const e = signedData.encapContentInfo.eContent;
  if (e?.single) return new Uint8Array(e.single.buffer);
  if (e?.any) {
    // A constructed OCTET STRING: its parts, joined.
    const parsed = asn1js.fromBER(e.any).result;
    return parsed instanceof asn1js.OctetString ? new Uint8Array(parsed.getValue()) : new Uint8Array(e.any);
  }
  return new Uint8Array(0);
}

/** Each attribute's first value: text (PrintableString, UTF8String...) or bytes (OCTET STRING). */
function attributeValues(attrs: Attribute[]): Map<string, string | Uint8Array> {
  const values = new Map<string, string | Uint8Array>();
  for (const a of attrs) {
    const first = a.attrValues[0];
    if (!first) continue;
    const parsed = asn1js.fromBER(first).result;
    if (parsed instanceof asn1js.OctetString) values.set(a.attrType, new Uint8Array(parsed.getValue()));
    else if (parsed instanceof asn1js.BaseStringBlock) values.set(a.attrType, parsed.getValue());
  }
  return values;
}

/** The certificates a pkiMessage carries (a request's signer: a server reads them, then checks the signature by them). */
export function includedCertificates(der: Uint8Array): x509.X509Certificate[] {
  const signedData = AsnConvert.parse(AsnConvert.parse(der, ContentInfo).content, SignedData);
  return (signedData.certificates ?? [])
    .filter((c) => c.certificate)
    .map((c) => new x509.X509Certificate(AsnConvert.serialize(c.certificate!)));
}
