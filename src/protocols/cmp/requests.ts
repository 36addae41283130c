/** The bodies of the Lightweight CMP requests (RFC 9483 §4.1, §4.3, §4.4): ir, p10cr, certConf, pollReq, genm. */
import { createHash } from "node:crypto";
import { CertificationRequest } from "@peculiar/asn1-csr";
import { AsnConvert, BitString, OctetString } from "@peculiar/asn1-schema";
import { Certificate, Extensions, GeneralName } from "@peculiar/asn1-x509";
import { signingAlgorithm } from "../../keys/key-types.js";
import type { CryptoProvider } from "../../keys/provider.js";
import * as x509 from "../../keys/x509.js";
import {
  CertConfirmContent,
  CertId,
  CertReqMessages,
  CertReqMsg,
  CertRequest,
  CertStatus,
  CertTemplate,
  Control,
  Controls,
  ID_IT_CA_CERTS,
  ID_REG_CTRL_OLD_CERT_ID,
  InfoTypeAndValue,
  InfoTypeAndValues,
  PKIBody,
  PKIFreeText,
  PKIStatusInfo,
  POPOSigningKey,
  PollReqContent,
  PollReqEntry,
  ProofOfPossession,
  TemplateExtensions,
} from "./asn1.js";
import { ecdsaDer } from "./ecdsa.js";

/** PKCS#9 extensionRequest: the CSR's extensions. */
const EXTENSION_REQUEST = "1.2.840.113549.1.9.14";

/** The CSR, parsed. */
export function parseCsr(der: Uint8Array): CertificationRequest {
  return AsnConvert.parse(der, CertificationRequest);
}

/** `p10cr`: the PKCS#10 request as it is (RFC 9483 §4.1.4). */
export function p10crBody(csr: CertificationRequest): PKIBody {
  return new PKIBody({ p10cr: csr });
}

/**
 * `ir` (or `kur`) for the CSR's subject, key and extensions (RFC 9483 §4.1.1), with proof of
 * possession by a signature over the DER CertRequest (RFC 4211 §4.1, no poposkInput: the template
 * has both subject and key).
 */
export async function certReqBody(
  kind: "ir" | "kur",
  csr: CertificationRequest,
  key: { privateKey: CryptoKey; crypto: CryptoProvider },
  oldCertDer?: Uint8Array,
): Promise<PKIBody> {
  const info = csr.certificationRequestInfo;
  const requested = info.attributes.find((a) => a.type === EXTENSION_REQUEST)?.values[0];
  const certReq = new CertRequest({
    certReqId: 0,
    certTemplate: new CertTemplate({
      subject: info.subject,
      publicKey: info.subjectPKInfo,
      extensions: requested ? new TemplateExtensions(AsnConvert.parse(requested, Extensions)) : undefined,
    }),
    controls: oldCertDer ? new Controls([oldCertId(oldCertDer)]) : undefined,
  });
  const signed = await key.crypto.subtle.sign(
    signingAlgorithm(key.privateKey),
    key.privateKey,
    AsnConvert.serialize(certReq),
  );
  const signature =
    key.privateKey.algorithm.name === "ECDSA" ? ecdsaDer(new Uint8Array(signed)) : new Uint8Array(signed);
  const popo = new ProofOfPossession({
    signature: new POPOSigningKey({ algorithmIdentifier: csr.signatureAlgorithm, signature: new BitString(signature) }),
  });
  return new PKIBody({ [kind]: new CertReqMessages([new CertReqMsg({ certReq, popo })]) });
}

/** The oldCertID control naming the certificate a key update replaces (RFC 9483 §4.1.3). */
function oldCertId(der: Uint8Array): Control {
  const tbs = AsnConvert.parse(der, Certificate).tbsCertificate;
  const id = new CertId({ issuer: new GeneralName({ directoryName: tbs.issuer }), serialNumber: tbs.serialNumber });
  return new Control({ type: ID_REG_CTRL_OLD_CERT_ID, value: AsnConvert.serialize(id) });
}

/**
 * `certConf` for the certificate (RFC 9483 §4.1.1): its hash by its signature's hash algorithm;
 * `rejected`: the client does not take it (status rejection, failInfo incorrectData).
 */
export function certConfBody(certDer: Uint8Array, certReqId: number, rejected?: string): PKIBody {
  const hash = x509SignatureHash(certDer);
  const status = rejected
    ? new PKIStatusInfo({ status: 2, failInfo: incorrectData(), statusString: new PKIFreeText([rejected]) })
    : undefined;
  return new PKIBody({
    certConf: new CertConfirmContent([
      new CertStatus({
        certHash: new OctetString(createHash(hash).update(certDer).digest()),
        certReqId,
        statusInfo: status,
      }),
    ]),
  });
}

/** PKIFailureInfo with incorrectData (bit 7) set. */
function incorrectData(): BitString {
  return new BitString(new Uint8Array([0x01]), 0);
}

/** The hash of a certificate's signature algorithm, as Node names it (SHA-256 when it cannot tell). */
function x509SignatureHash(certDer: Uint8Array): string {
  try {
    const alg = new x509.X509Certificate(new Uint8Array(certDer)).signatureAlgorithm as { hash?: { name?: string } };
    return (alg.hash?.name ?? "SHA-256").replace("-", "").toLowerCase();
  } catch {
    return "sha256";
  }
}

/** `pollReq` for the request (RFC 9483 §4.4). */
export function pollReqBody(certReqId: number): PKIBody {
  return new PKIBody({ pollReq: new PollReqContent([new PollReqEntry({ certReqId })]) });
}

/** `genm` asking for the CA certificates (RFC 9483 §4.3.1). */
export function caCertsBody(): PKIBody {
  return new PKIBody({ genm: new InfoTypeAndValues([new InfoTypeAndValue({ infoType: ID_IT_CA_CERTS })]) });
}
