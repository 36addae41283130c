/**
 * A CMP request as the lab's CMP server reads it: from the bytes received, so that the protection
 * and the proof of possession are checked over what the client signed, and so that a certificate
 * template with any of CRMF's fields (RFC 4211 §5: `openssl cmp -cert` puts the issuer in it) is
 * read for the three it needs: subject, public key and extensions.
 */
import { AsnConvert, BitString } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, Extensions } from "@peculiar/asn1-x509";
import * as asn1js from "asn1js";
import { CertificateList, PKIHeader } from "cert-retriever";

/** PKIBody's choices the lab takes (RFC 4210 §5.1.2), by their tag. */
export const BODY = { ir: 0, cr: 2, p10cr: 4, genm: 21, certConf: 24 } as const;

/** A request: its header, its body's tag and content, its protection and extraCerts, and ProtectedPart's DER. */
export interface CmpRequest {
  header: PKIHeader;
  tag: number;
  /** The body's content inside its explicit tag, as received. */
  content: Uint8Array;
  protection?: Uint8Array;
  extraCerts: ArrayBuffer[];
  /** ProtectedPart as the sender made it: a SEQUENCE of the header's and the body's bytes as received. */
  part: Uint8Array;
}

/** An element's bytes as received. */
function bytes(el: asn1js.AsnType): Uint8Array {
  return new Uint8Array(el.valueBeforeDecodeView);
}

/** The elements inside a constructed element. */
function inner(el: asn1js.AsnType | undefined): asn1js.AsnType[] {
  return el instanceof asn1js.Constructed || el instanceof asn1js.Sequence ? el.valueBlock.value : [];
}

/** One DER element, whole (throws when it is not). */
function element(der: Uint8Array): asn1js.AsnType {
  const parsed = asn1js.fromBER(der);
  if (parsed.offset !== der.byteLength) throw new Error("not one DER element");
  return parsed.result;
}

/** A PKIMessage (RFC 4210 §5.1), read; throws an Error when it is none. */
export function readRequest(der: Uint8Array): CmpRequest {
  const top = element(der);
  if (!(top instanceof asn1js.Sequence)) throw new Error("not a SEQUENCE");
  const [header, body, ...rest] = top.valueBlock.value;
  if (!header || !body || body.idBlock.tagClass !== 3) throw new Error("no header and body");
  const content = inner(body)[0];
  if (!content) throw new Error("an empty body");
  const tagged = (n: number) => inner(rest.find((e) => e.idBlock.tagClass === 3 && e.idBlock.tagNumber === n))[0];
  const protection = tagged(0);
  const extraCerts = tagged(1);
  const both = Buffer.concat([bytes(header), bytes(body)]);
  return {
    header: AsnConvert.parse(bytes(header), PKIHeader),
    tag: body.idBlock.tagNumber,
    content: bytes(content),
    protection: protection && new Uint8Array(AsnConvert.parse(bytes(protection), BitString).value),
    extraCerts: extraCerts ? [...AsnConvert.parse(bytes(extraCerts), CertificateList)] : [],
    part: new Uint8Array(Buffer.concat([Buffer.from([0x30, ...derLength(both.length)]), both])),
  };
}

/** A DER length. */
function derLength(n: number): number[] {
  if (n < 0x80) return [n];
  const out: number[] = [];
  for (let v = n; v > 0; v >>= 8) out.unshift(v & 0xff);
  return [0x80 | out.length, ...out];
}

/** What the lab reads of an ir's or cr's one CertReqMsg (RFC 4211 §3). */
export interface CertRequestParts {
  /** More than one CertReqMsg in the message. */
  several: boolean;
  certReqId: number;
  /** The CertRequest's DER as received: what a signature POP signs (RFC 4211 §4.1). */
  certReq: Uint8Array;
  /** The template's subject (a Name's DER) and public key (SubjectPublicKeyInfo's DER). */
  subject?: Uint8Array;
  spki?: Uint8Array;
  /** The subjectAltName extension's value, when the template asks for one. */
  sans?: ArrayBuffer;
  /** A signature POP without poposkInput: its algorithm and signature. */
  pop?: { alg: string; signature: Uint8Array };
}

/** Retags an IMPLICIT [n] SEQUENCE as the SEQUENCE it stands for. */
function asSequence(el: asn1js.AsnType): Uint8Array {
  const der = new Uint8Array(bytes(el));
  der[0] = 0x30;
  return der;
}

/** An ir's or cr's CertReqMessages, read for its first CertReqMsg. */
export function readCertRequest(content: Uint8Array): CertRequestParts {
  const messages = inner(element(content));
  const [certReq, popo] = inner(messages[0]);
  const [id, template] = inner(certReq);
  if (!certReq || !(id instanceof asn1js.Integer)) throw new Error("a CertReqMsg without its CertRequest");
  const parts: CertRequestParts = {
    several: messages.length > 1,
    certReqId: id.valueBlock.valueDec,
    certReq: bytes(certReq),
  };
  for (const field of inner(template)) {
    const n = field.idBlock.tagNumber;
    if (n === 5 && inner(field)[0]) parts.subject = bytes(inner(field)[0]!);
    if (n === 6) parts.spki = asSequence(field);
    if (n === 9) {
      const san = AsnConvert.parse(asSequence(field), Extensions).find((e) => e.extnID === "2.5.29.17");
      parts.sans = san?.extnValue.buffer;
    }
  }
  const [alg, signature] = popo?.idBlock.tagNumber === 1 ? inner(popo) : [];
  if (alg instanceof asn1js.Sequence && signature)
    parts.pop = {
      alg: AsnConvert.parse(bytes(alg), AlgorithmIdentifier).algorithm,
      signature: new Uint8Array(AsnConvert.parse(bytes(signature), BitString).value),
    };
  return parts;
}
