/**
 * SCEP's pkcsPKIEnvelope (RFC 8894 §3.2.2): a CMS EnvelopedData whose content-encryption key goes
 * to one recipient by RSA key transport (PKCS #1 v1.5, §3.5.2's rsaEncryption), built and opened
 * with @peculiar/asn1-cms and Node's ciphers.
 */
import {
  constants,
  createCipheriv,
  createDecipheriv,
  createPublicKey,
  type KeyObject,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
} from "node:crypto";
import {
  ContentEncryptionAlgorithmIdentifier,
  ContentInfo,
  EncryptedContent,
  EncryptedContentInfo,
  EnvelopedData,
  IssuerAndSerialNumber,
  id_data,
  id_envelopedData,
  KeyEncryptionAlgorithmIdentifier,
  KeyTransRecipientInfo,
  RecipientIdentifier,
  RecipientInfo,
  RecipientInfos,
} from "@peculiar/asn1-cms";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import * as asn1js from "asn1js";
import type * as x509 from "../../keys/x509.js";
import type { ContentCipher } from "./caps.js";

/** The content-encryption algorithms SCEP servers use (RFC 8894 §3.5.2; RFC 3565 for AES). */
const CIPHER_OIDS: Record<ContentCipher, string> = {
  "aes-128-cbc": "2.16.840.1.101.3.4.1.2",
  "aes-192-cbc": "2.16.840.1.101.3.4.1.22",
  "aes-256-cbc": "2.16.840.1.101.3.4.1.42",
  "des-ede3-cbc": "1.2.840.113549.3.7",
  "des-cbc": "1.3.14.3.2.7",
};
const RSA_ENCRYPTION = "1.2.840.113549.1.1.1";

/** The cipher an OID names, or undefined. */
function cipherOf(oid: string): ContentCipher | undefined {
  return (Object.keys(CIPHER_OIDS) as ContentCipher[]).find((c) => CIPHER_OIDS[c] === oid);
}

/**
 * Node's cipher for `cipher` and its key. Single DES is 3DES with its one key three times (EDE
 * with K1 = K2 = K3 is DES), since OpenSSL 3 keeps DES itself in its legacy provider.
 */
function nodeCipher(cipher: ContentCipher, key: Buffer): { name: string; key: Buffer } {
  return cipher === "des-cbc" ? { name: "des-ede3-cbc", key: Buffer.concat([key, key, key]) } : { name: cipher, key };
}

const KEY_BYTES: Record<ContentCipher, number> = {
  "aes-128-cbc": 16,
  "aes-192-cbc": 24,
  "aes-256-cbc": 32,
  "des-ede3-cbc": 24,
  "des-cbc": 8,
};

/** A certificate's issuer and serial number, which name it as a recipient or a signer. */
export function issuerAndSerial(cert: x509.X509Certificate): IssuerAndSerialNumber {
  // The serial number as the certificate encodes it: a re-encoding could add or drop a leading zero.
  const tbs = (asn1js.fromBER(cert.rawData).result as asn1js.Sequence).valueBlock.value[0] as asn1js.Sequence;
  const [first, second] = tbs.valueBlock.value;
  const serial = first instanceof asn1js.Constructed && first.idBlock.tagClass === 3 ? second : first;
  const der = new asn1js.Sequence({ value: [asn1js.fromBER(cert.issuerName.toArrayBuffer()).result, serial!] }).toBER();
  return AsnConvert.parse(der, IssuerAndSerialNumber);
}

/** `content` in an EnvelopedData for `recipient` (an RSA certificate), as a ContentInfo, DER. */
export function envelope(content: Uint8Array, recipient: x509.X509Certificate, cipher: ContentCipher): Uint8Array {
  const cek = randomBytes(KEY_BYTES[cipher]);
  const iv = randomBytes(cipher.startsWith("aes") ? 16 : 8);
  const node = nodeCipher(cipher, cek);
  const encipher = createCipheriv(node.name, node.key, iv);
  const encrypted = Buffer.concat([encipher.update(content), encipher.final()]);
  const publicKey = createPublicKey({ key: Buffer.from(recipient.publicKey.rawData), format: "der", type: "spki" });
  const encryptedKey = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_PADDING }, cek);
  const ktri = new KeyTransRecipientInfo({
    version: 0,
    rid: new RecipientIdentifier({ issuerAndSerialNumber: issuerAndSerial(recipient) }),
    keyEncryptionAlgorithm: new KeyEncryptionAlgorithmIdentifier({
      algorithm: RSA_ENCRYPTION,
      parameters: new Uint8Array([5, 0]).buffer,
    }),
    encryptedKey: new OctetString(encryptedKey),
  });
  const enveloped = new EnvelopedData({
    version: 0,
    recipientInfos: new RecipientInfos([new RecipientInfo({ ktri })]),
    encryptedContentInfo: new EncryptedContentInfo({
      contentType: id_data,
      contentEncryptionAlgorithm: new ContentEncryptionAlgorithmIdentifier({
        algorithm: CIPHER_OIDS[cipher],
        parameters: AsnConvert.serialize(new OctetString(iv)),
      }),
      encryptedContent: new EncryptedContent({ value: new OctetString(encrypted) }),
    }),
  });
  return new Uint8Array(
    AsnConvert.serialize(new ContentInfo({ contentType: id_envelopedData, content: AsnConvert.serialize(enveloped) })),
  );
}

/** What an opened envelope held, and how it was sealed. */
export interface Opened {
  content: Uint8Array;
  cipher: ContentCipher;
}

/**
 * The content of an EnvelopedData (a ContentInfo, DER) addressed to `me`, decrypted with `key`.
 * Throws an Error saying what is wrong: not an EnvelopedData, not for this key, a cipher not
 * listed above, or content that does not decrypt.
 */
export function openEnvelope(der: Uint8Array, me: x509.X509Certificate, key: KeyObject): Opened {
  const info = AsnConvert.parse(der, ContentInfo);
  if (info.contentType !== id_envelopedData)
    throw new Error(`it is CMS content of type ${info.contentType}, not EnvelopedData`);
  const enveloped = AsnConvert.parse(info.content, EnvelopedData);
  const mine = AsnConvert.serialize(issuerAndSerial(me));
  const ktri = enveloped.recipientInfos
    .map((r) => r.ktri)
    .find(
      (k) =>
        k?.rid.issuerAndSerialNumber &&
        Buffer.from(AsnConvert.serialize(k.rid.issuerAndSerialNumber)).equals(Buffer.from(mine)),
    );
  if (!ktri)
    throw new Error(`it is encrypted for someone else, not for the certificate of the request (${me.subject})`);
  const eci = enveloped.encryptedContentInfo;
  const cipher = cipherOf(eci.contentEncryptionAlgorithm.algorithm);
  if (!cipher)
    throw new Error(
      `its content is encrypted with an algorithm this client does not know (${eci.contentEncryptionAlgorithm.algorithm})`,
    );
  const cek = rsaPkcs1Decrypt(key, new Uint8Array(ktri.encryptedKey.buffer));
  if (cek.length !== KEY_BYTES[cipher]) throw new Error(`its ${cipher} key has ${cek.length} bytes`);
  const params = eci.contentEncryptionAlgorithm.parameters;
  const iv = params ? new Uint8Array(AsnConvert.parse(params, OctetString).buffer) : undefined;
  const encrypted = eci.encryptedContent?.value ?? concat(eci.encryptedContent?.constructedValue ?? []);
  if (!iv || !encrypted) throw new Error("it has no initialization vector or no encrypted content");
  const node = nodeCipher(cipher, cek);
  const decipher = createDecipheriv(node.name, node.key, iv);
  const content = Buffer.concat([decipher.update(new Uint8Array(encrypted.buffer)), decipher.final()]);
  return { content: new Uint8Array(content), cipher };
}

function concat(parts: OctetString[]): OctetString | undefined {
  return parts.length ? new OctetString(Buffer.concat(parts.map((p) => new Uint8Array(p.buffer)))) : undefined;
}

/**
 * RSAES-PKCS1-v1_5 decryption (RFC 8017 §7.2.2) by the raw RSA operation and the padding check
 * here: Node 20 refuses PKCS #1 v1.5 padding in privateDecrypt (CVE-2023-46809, a timing oracle
 * for a server that decrypts what anyone sends). A client decrypts once per reply, and a reply
 * whose padding is wrong ends the run, so there is no oracle to ask.
 */
function rsaPkcs1Decrypt(key: KeyObject, encrypted: Uint8Array): Buffer {
  const em = privateDecrypt({ key, padding: constants.RSA_NO_PADDING }, encrypted);
  const end = em.indexOf(0, 2);
  if (em[0] !== 0 || em[1] !== 2 || end < 10) throw new Error("its key does not decrypt with this key");
  return em.subarray(end + 1);
}
