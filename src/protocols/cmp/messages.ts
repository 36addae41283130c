/**
 * Lightweight CMP messages (RFC 9483) as this client sends and reads them: a header with the
 * transaction's ID and nonces, protected by the shared secret's PasswordBasedMac; and the reading
 * of an answer, whose protection is checked against the bytes received before anything in it is trusted.
 */
import { randomBytes } from "node:crypto";
import { AsnConvert, BitString, OctetString } from "@peculiar/asn1-schema";
import { GeneralName, Name } from "@peculiar/asn1-x509";
import * as asn1js from "asn1js";
import { type PKIBody, PKIHeader, PKIMessage, type PKIStatusInfo, ProtectedPart } from "./asn1.js";
import { macMatches, newPbmAlgorithm, passwordBasedMac } from "./protection.js";

/** The shared secret and its reference (the header's senderKID). */
export interface SharedSecret {
  reference: string;
  secret: string;
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
export function protectedRequest(
  body: PKIBody,
  tx: Transaction,
  auth: SharedSecret,
): { der: Uint8Array; nonce: Uint8Array } {
  const nonce = randomBytes(16);
  const messageTime = new Date();
  messageTime.setMilliseconds(0);
  const header = new PKIHeader({
    pvno: 2,
    sender: new GeneralName({ directoryName: tx.sender }),
    recipient: new GeneralName({ directoryName: new Name() }),
    messageTime,
    protectionAlg: newPbmAlgorithm(),
    senderKID: new OctetString(Buffer.from(auth.reference, "utf8")),
    transactionID: new OctetString(tx.id),
    senderNonce: new OctetString(nonce),
    recipNonce: tx.serverNonce ? new OctetString(tx.serverNonce) : undefined,
  });
  const part = new Uint8Array(AsnConvert.serialize(new ProtectedPart({ header, body })));
  const mac = passwordBasedMac(header.protectionAlg!, auth.secret, part);
  const message = new PKIMessage({ header, body, protection: new BitString(new Uint8Array(mac)) });
  return { der: new Uint8Array(AsnConvert.serialize(message)), nonce };
}

/** An answer, read: the message, and whether its protection verified with the secret. */
export interface Answer {
  message: PKIMessage;
  /** "verified": the MAC matches; "none": unprotected; "mismatch": a MAC that does not match; "other": another protection. */
  protection: "verified" | "none" | "mismatch" | "other";
  /** What the protection was, in words, for messages. */
  protectionAlg?: string;
}

/** Reads an answer (throws an Error saying why it is no PKIMessage) and checks its protection with the secret. */
export function readAnswer(der: Uint8Array, auth: SharedSecret): Answer {
  const message = AsnConvert.parse(der, PKIMessage);
  const alg = message.header.protectionAlg;
  if (!alg || !message.protection) return { message, protection: "none" };
  let matches: boolean;
  try {
    matches = macMatches(alg, auth.secret, protectedPart(der), new Uint8Array(message.protection.value));
  } catch {
    return { message, protection: "other", protectionAlg: alg.algorithm };
  }
  return { message, protection: matches ? "verified" : "mismatch", protectionAlg: alg.algorithm };
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
