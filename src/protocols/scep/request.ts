/**
 * What a SCEP request is made of besides the CSR the flow built: the CSR again with the challenge
 * password (RFC 8894 §2.3, a PKCS #9 attribute), the signer (a self-signed certificate of the new
 * key, §2.3; for a renewal the current certificate, §3.3.1.2), and the key that opens the reply.
 */
import { createHash, createPrivateKey, type KeyObject, randomBytes } from "node:crypto";
import { CertRetrieverError, describeCause } from "../../errors.js";
import { signingAlgorithm } from "../../keys/key-types.js";
import type { CryptoProvider } from "../../keys/provider.js";
import * as x509 from "../../keys/x509.js";
import { SCEP } from "./name.js";

/** The key pair of the request, with the provider that signs with it. */
export interface NewKey {
  keys: CryptoKeyPair;
  crypto: CryptoProvider;
}

/** The private key for Node's RSA (signing the message, opening the reply); a key that cannot leave its token is refused. */
export async function nodeKey(key: NewKey): Promise<KeyObject> {
  if (key.keys.privateKey.algorithm.name !== "RSASSA-PKCS1-v1_5") throw keyRefused(key.keys.privateKey.algorithm.name);
  let pkcs8: ArrayBuffer;
  try {
    pkcs8 = await key.crypto.subtle.exportKey("pkcs8", key.keys.privateKey);
  } catch (err) {
    throw new CertRetrieverError(
      `submit-csr failed: SCEP's reply is encrypted to the request's key, and a key in a PKCS#11 token cannot decrypt it here (${describeCause(err)}); nothing was sent`,
      { step: "submit-csr", reason: "not-supported", facts: { protocol: SCEP } },
    );
  }
  return createPrivateKey({ key: Buffer.from(pkcs8), format: "der", type: "pkcs8" });
}

/** A key SCEP cannot use: the reply is encrypted to it by RSA key transport (§3.5.2). */
export function keyRefused(what: string): CertRetrieverError {
  return new CertRetrieverError(
    `SCEP (RFC 8894) encrypts its reply to the request's key by RSA key transport, so it needs an RSA key, not ${what}; no key was made`,
    { step: "generate-key", reason: "key-refused", facts: { protocol: SCEP } },
  );
}

/** The flow's CSR again, with the challenge password where one is given (signed by the same key). */
export async function withChallenge(
  csrDer: Uint8Array,
  key: NewKey,
  challenge: string | undefined,
): Promise<x509.Pkcs10CertificateRequest> {
  const csr = new x509.Pkcs10CertificateRequest(new Uint8Array(csrDer));
  if (challenge === undefined) return csr;
  return x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: csr.subjectName,
      keys: key.keys,
      signingAlgorithm: signingAlgorithm(key.keys.privateKey),
      extensions: csr.extensions,
      attributes: [new x509.ChallengePasswordAttribute(challenge)],
    },
    key.crypto,
  );
}

/** The self-signed certificate of the new key that signs a PKCSReq (§2.3: its subject the CSR's), valid for a day. */
export async function selfSigned(csr: x509.Pkcs10CertificateRequest, key: NewKey): Promise<x509.X509Certificate> {
  const now = Date.now();
  return x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: `01${randomBytes(8).toString("hex")}`,
      name: csr.subjectName,
      notBefore: new Date(now - 3_600_000),
      notAfter: new Date(now + 86_400_000),
      keys: key.keys,
      signingAlgorithm: signingAlgorithm(key.keys.privateKey),
    },
    key.crypto,
  );
}

/** The transactionID: the SHA-256 of the new key, hex (§3.2.1.1's recommendation), so a repeated request is the same transaction. */
export function transactionId(csr: x509.Pkcs10CertificateRequest): string {
  return createHash("sha256").update(new Uint8Array(csr.publicKey.rawData)).digest("hex").toUpperCase();
}

/** A fresh senderNonce (§3.2.1.5): 16 random bytes. */
export function nonce(): Uint8Array {
  return new Uint8Array(randomBytes(16));
}
