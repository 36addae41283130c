/**
 * Lightweight CMP messages (RFC 9483) as this client sends and reads them: a header with the
 * transaction's ID and nonces, protected by the shared secret's PasswordBasedMac; and the reading
 * of an answer, whose protection is checked against the bytes received before anything in it is trusted.
 */
import { createPrivateKey, type KeyObject, randomBytes, sign, verify, X509Certificate } from "node:crypto";
import { AsnConvert, BitString, OctetString } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, GeneralName, Name } from "@peculiar/asn1-x509";
import * as asn1js from "asn1js";
import type { SigningKey } from "../../keys/key-store.js";
import { certificatePems } from "../../keys/key-types.js";
import * as x509 from "../../keys/x509.js";
import { CertificateList, type PKIBody, PKIHeader, PKIMessage, type PKIStatusInfo, ProtectedPart } from "./asn1.js";
import { ecdsaDer } from "./ecdsa.js";
import { macMatches, newPbmAlgorithm, newPbmac1Algorithm, passwordBasedMac } from "./protection.js";

/** The shared secret and its reference (the header's senderKID). */
export interface SharedSecret {
  reference: string;
  secret: string;
}

/** How our messages are protected: the algorithm, the key's identifier, the protection of ProtectedPart, and the certificates to send. */
export interface Protector {
  alg(): AlgorithmIdentifier;
  senderKID?: Uint8Array;
  /** The sender's name (the certificate's subject, for a signature). */
  sender?: Name;
  /** The protection of ProtectedPart's DER (a token key signs asynchronously). */
  protect(alg: AlgorithmIdentifier, part: Uint8Array): Uint8Array | Promise<Uint8Array>;
  extraCerts?: ArrayBuffer[];
  /** A signature's certificate: the bootstrap one (a first enrollment) or the current one (kur); none: the shared secret. */
  by?: "bootstrap" | "current";
}

/** Protection by the shared secret: PasswordBasedMac, or PBMAC1 (RFC 9481 §6.1.1). */
export function macProtector(auth: SharedSecret, mac: "pbm" | "pbmac1" = "pbm"): Protector {
  return {
    alg: mac === "pbmac1" ? newPbmac1Algorithm : newPbmAlgorithm,
    senderKID: Buffer.from(auth.reference, "utf8"),
    protect: (alg, part) => passwordBasedMac(alg, auth.secret, part),
  };
}

/** Signature algorithms by key: their OIDs, and the hash Node signs with. */
const SIGNATURE_ALGS: Record<string, { oid: string; hash: string; rsa?: true }> = {
  prime256v1: { oid: "1.2.840.10045.4.3.2", hash: "sha256" },
  secp384r1: { oid: "1.2.840.10045.4.3.3", hash: "sha384" },
  rsa: { oid: "1.2.840.113549.1.1.11", hash: "sha256", rsa: true },
};
/** The hash of each signature algorithm an answer may be signed with. */
const SIGNATURE_HASH: Record<string, string> = {
  "1.2.840.10045.4.3.2": "sha256",
  "1.2.840.10045.4.3.3": "sha384",
  "1.2.840.10045.4.3.4": "sha512",
  "1.2.840.113549.1.1.11": "sha256",
  "1.2.840.113549.1.1.12": "sha384",
  "1.2.840.113549.1.1.13": "sha512",
};

/**
 * Protection by a signature with a certificate's key (RFC 9483 §3.2): kur by the current certificate,
 * or a first enrollment by a bootstrap certificate (a manufacturer's IDevID). The certificate, then the
 * rest of the chain its PEM holds, go first in extraCerts; senderKID is its SubjectKeyIdentifier, sender its subject.
 */
export function signatureProtector(
  creds: { certificatePem: string; keyPem: string },
  what = "the current key",
): Protector {
  const key = createPrivateKey(creds.keyPem);
  const kind =
    key.asymmetricKeyType === "ec" ? (key.asymmetricKeyDetails?.namedCurve ?? "") : String(key.asymmetricKeyType);
  const sig = SIGNATURE_ALGS[kind];
  if (!sig) throw new Error(`${what} (${kind}) cannot sign a CMP message here`);
  return {
    ...signedBy(creds.certificatePem, what),
    alg: () => signatureAlg(sig),
    protect: (_alg, part) => sign(sig.hash, part, key),
  };
}

/** WebCrypto's names of the keys a token signs with -> those of {@link SIGNATURE_ALGS}. */
const WEBCRYPTO_KINDS: Record<string, string> = {
  "ECDSA P-256": "prime256v1",
  "ECDSA P-384": "secp384r1",
  "RSASSA-PKCS1-v1_5": "rsa",
};

/**
 * The same protection by a key that stays in a token (a manufacturer's bootstrap key): WebCrypto
 * signs inside the token, and ECDSA's r||s becomes the DER that X.509 signatures carry.
 */
export function tokenSignatureProtector(certificatePem: string, key: SigningKey, what: string): Protector {
  const algorithm = key.algorithm as EcKeyAlgorithm;
  const name = algorithm.name === "ECDSA" ? `ECDSA ${algorithm.namedCurve}` : algorithm.name;
  const sig = SIGNATURE_ALGS[WEBCRYPTO_KINDS[name] ?? ""];
  if (!sig) throw new Error(`${what} (${name}, ${key.where}) cannot sign a CMP message here`);
  const ecdsa = algorithm.name === "ECDSA";
  const params = ecdsa
    ? { name: "ECDSA", hash: sig.hash === "sha384" ? "SHA-384" : "SHA-256" }
    : { name: algorithm.name };
  return {
    ...signedBy(certificatePem, what),
    alg: () => signatureAlg(sig),
    protect: async (_alg, part) => {
      const signed = await key.sign(params, part);
      return ecdsa ? ecdsaDer(signed) : signed;
    },
  };
}

/** A signature algorithm's identifier (RSA's with its NULL parameters). */
function signatureAlg(sig: { oid: string; rsa?: true }): AlgorithmIdentifier {
  return new AlgorithmIdentifier({
    algorithm: sig.oid,
    parameters: sig.rsa ? new Uint8Array([5, 0]).buffer : undefined,
  });
}

/** What a signed message says of its signer: its certificate's SubjectKeyIdentifier and subject, and the certificate and chain sent. */
function signedBy(certificatePem: string, what: string): Pick<Protector, "senderKID" | "sender" | "extraCerts"> {
  const [cert, ...chain] = certificatePems(certificatePem).map((pem) => new x509.X509Certificate(pem));
  if (!cert) throw new Error(`${what}'s certificate holds no PEM certificate`);
  const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  return {
    senderKID: ski ? Buffer.from(ski, "hex") : undefined,
    sender: AsnConvert.parse(cert.subjectName.toArrayBuffer(), Name),
    extraCerts: [cert.rawData, ...chain.map((c) => c.rawData)],
  };
}

/** One transaction: its ID, and the server's last nonce (which our next message echoes). */
export interface Transaction {
  id: Uint8Array;
  /** The sender of our messages (the requested subject; NULL-DN before there is one). */
  sender: Name;
  serverNonce?: Uint8Array;
}

/** A new transaction (RFC 9483 §3.1: a random 128-bit ID). */
export function newTransaction(sender: Name = new Name()): Transaction {
  return { id: randomBytes(16), sender };
}

/** A request of the transaction, protected by the secret's PasswordBasedMac; returns its DER and its nonce. */
export async function protectedRequest(
  body: PKIBody,
  tx: Transaction,
  protector: Protector,
): Promise<{ der: Uint8Array; nonce: Uint8Array }> {
  const nonce = randomBytes(16);
  const messageTime = new Date();
  messageTime.setMilliseconds(0);
  const header = new PKIHeader({
    pvno: 2,
    sender: new GeneralName({ directoryName: protector.sender ?? tx.sender }),
    recipient: new GeneralName({ directoryName: new Name() }),
    messageTime,
    protectionAlg: protector.alg(),
    senderKID: protector.senderKID ? new OctetString(protector.senderKID) : undefined,
    transactionID: new OctetString(tx.id),
    senderNonce: new OctetString(nonce),
    recipNonce: tx.serverNonce ? new OctetString(tx.serverNonce) : undefined,
  });
  const part = new Uint8Array(AsnConvert.serialize(new ProtectedPart({ header, body })));
  const protection = await protector.protect(header.protectionAlg!, part);
  const message = new PKIMessage({
    header,
    body,
    protection: new BitString(new Uint8Array(protection)),
    extraCerts: protector.extraCerts ? new CertificateList(protector.extraCerts) : undefined,
  });
  return { der: new Uint8Array(AsnConvert.serialize(message)), nonce };
}

/** An answer, read: the message, and whether its protection verified. */
export interface Answer {
  message: PKIMessage;
  /** "verified": the MAC or signature verifies; "none": unprotected; "mismatch": it does not verify (or its signer is not trusted); "other": an algorithm not checked here. */
  protection: "verified" | "none" | "mismatch" | "other";
  /** A MAC or a signature. */
  kind?: "mac" | "signature";
  /** What the protection was, for messages. */
  protectionAlg?: string;
}

/** What an answer's protection is checked with: the shared secret (a MAC), the trusted CA (a signature by it or a certificate it issued). */
export interface AnswerCheck {
  secret?: string;
  /** The trusted issuing CA, DER. */
  trusted?: Uint8Array;
}

/** Reads an answer (throws an Error saying why it is no PKIMessage) and checks its protection. */
export function readAnswer(der: Uint8Array, check: AnswerCheck): Answer {
  const message = AsnConvert.parse(der, PKIMessage);
  const alg = message.header.protectionAlg;
  if (!alg || !message.protection) return { message, protection: "none" };
  const part = protectedPart(der);
  const value = new Uint8Array(message.protection.value);
  const hash = SIGNATURE_HASH[alg.algorithm];
  if (hash) {
    const signer = message.extraCerts?.[0];
    if (!check.trusted || !signer)
      return { message, protection: "other", kind: "signature", protectionAlg: alg.algorithm };
    const ok = signedByTrusted(new Uint8Array(signer), check.trusted, (key) => verify(hash, part, key, value));
    return { message, protection: ok ? "verified" : "mismatch", kind: "signature", protectionAlg: alg.algorithm };
  }
  if (check.secret === undefined) return { message, protection: "other", kind: "mac", protectionAlg: alg.algorithm };
  let matches: boolean;
  try {
    matches = macMatches(alg, check.secret, part, value);
  } catch {
    return { message, protection: "other", protectionAlg: alg.algorithm };
  }
  return { message, protection: matches ? "verified" : "mismatch", kind: "mac", protectionAlg: alg.algorithm };
}

/** Whether the signer is the trusted CA or a certificate it issued, and its key verifies the signature. */
function signedByTrusted(
  signerDer: Uint8Array,
  trustedDer: Uint8Array,
  verifies: (key: KeyObject) => boolean,
): boolean {
  try {
    const signer = new X509Certificate(signerDer);
    const trusted = new X509Certificate(trustedDer);
    const vouched = signer.raw.equals(trusted.raw) || (signer.checkIssued(trusted) && signer.verify(trusted.publicKey));
    return vouched && verifies(signer.publicKey);
  } catch {
    return false;
  }
}

/** The DER of ProtectedPart as the sender made it: a SEQUENCE of the header's and the body's bytes as received. */
function protectedPart(der: Uint8Array): Uint8Array {
  const parsed = asn1js.fromBER(der);
  if (parsed.offset === -1 || !(parsed.result instanceof asn1js.Sequence)) throw new Error("not a SEQUENCE");
  const [header, body] = parsed.result.valueBlock.value;
  if (!header || !body) throw new Error("no header and body");
  const content = Buffer.concat([Buffer.from(header.valueBeforeDecodeView), Buffer.from(body.valueBeforeDecodeView)]);
  return Buffer.concat([Buffer.from([0x30]), derLength(content.length), content]);
}

/** A DER length. */
function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** PKIFailureInfo's bits (RFC 4210 §5.2.3, RFC 9480), by number. */
const FAIL_INFO = [
  "badAlg",
  "badMessageCheck",
  "badRequest",
  "badTime",
  "badCertId",
  "badDataFormat",
  "wrongAuthority",
  "incorrectData",
  "missingTimeStamp",
  "badPOP",
  "certRevoked",
  "certConfirmed",
  "wrongIntegrity",
  "badRecipientNonce",
  "timeNotAvailable",
  "unacceptedPolicy",
  "unacceptedExtension",
  "addInfoNotAvailable",
  "badSenderNonce",
  "badCertTemplate",
  "signerNotTrusted",
  "transactionIdInUse",
  "unsupportedVersion",
  "notAuthorized",
  "systemUnavail",
  "systemFailure",
  "duplicateCertReq",
];

/** PKIStatus values (RFC 4210 §5.2.3). */
export const PKI_STATUS = { accepted: 0, grantedWithMods: 1, rejection: 2, waiting: 3 } as const;
const STATUS_NAMES = [
  "accepted",
  "grantedWithMods",
  "rejection",
  "waiting",
  "revocationWarning",
  "revocationNotification",
  "keyUpdateWarning",
];

/** The failure bits set in a PKIStatusInfo, by name. */
export function failInfoNames(info: PKIStatusInfo): string[] {
  const bytes = info.failInfo ? new Uint8Array(info.failInfo.value) : new Uint8Array();
  return FAIL_INFO.filter((_, i) => i >> 3 < bytes.length && (bytes[i >> 3]! & (0x80 >> (i & 7))) !== 0);
}

/** A PKIStatusInfo in words: its status, failure bits and text. */
export function describeStatus(info: PKIStatusInfo, more: string[] = []): string {
  const bits = failInfoNames(info);
  const text = [...(info.statusString ?? []), ...more].join("; ");
  return `${STATUS_NAMES[info.status] ?? `status ${info.status}`}${bits.length ? ` (${bits.join(", ")})` : ""}${text ? `: ${text}` : ""}`;
}

/** The name of a PKIBody's choice. */
export function bodyType(body: PKIBody): string {
  return Object.keys(body).find((k) => (body as unknown as Record<string, unknown>)[k] !== undefined) ?? "empty";
}
