/**
 * The CMP (RFC 4210, RFC 9480) and CRMF (RFC 4211) structures the Lightweight CMP profile (RFC 9483)
 * needs, as @peculiar/asn1-schema classes: no kept package has them. The CMP module has EXPLICIT
 * tags, the CRMF one IMPLICIT tags (a CHOICE such as Name under an implicit tag is still wrapped).
 */
import { CertificationRequest } from "@peculiar/asn1-csr";
import {
  AsnArray,
  AsnIntegerArrayBufferConverter,
  AsnProp,
  AsnPropTypes,
  AsnType,
  AsnTypeTypes,
  BitString,
  OctetString,
} from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, Extension, GeneralName, Name, SubjectPublicKeyInfo } from "@peculiar/asn1-x509";

/** PasswordBasedMac (RFC 4211 §4.4): the protection OpenSSL and EJBCA use with a shared secret. */
export const ID_PASSWORD_BASED_MAC = "1.2.840.113533.7.66.13";
/** RFC 9483 §4.3.1: the general message asking for the CA certificates. */
export const ID_IT_CA_CERTS = "1.3.6.1.5.5.7.4.17";

/** PKIFreeText ::= SEQUENCE SIZE (1..MAX) OF UTF8String */
@AsnType({ type: AsnTypeTypes.Sequence, itemType: AsnPropTypes.Utf8String })
export class PKIFreeText extends AsnArray<string> {}

/** A SEQUENCE OF Certificate (caPubs, extraCerts, caCerts), each kept as the DER received (its signature covers those bytes). */
@AsnType({ type: AsnTypeTypes.Sequence, itemType: AsnPropTypes.Any })
export class CertificateList extends AsnArray<ArrayBuffer> {}

/** PBMParameter ::= SEQUENCE { salt OCTET STRING, owf AlgorithmIdentifier, iterationCount INTEGER, mac AlgorithmIdentifier } */
export class PBMParameter {
  @AsnProp({ type: OctetString }) salt = new OctetString();
  @AsnProp({ type: AlgorithmIdentifier }) owf = new AlgorithmIdentifier();
  @AsnProp({ type: AsnPropTypes.Integer }) iterationCount = 0;
  @AsnProp({ type: AlgorithmIdentifier }) mac = new AlgorithmIdentifier();
  constructor(params: Partial<PBMParameter> = {}) {
    Object.assign(this, params);
  }
}

/** PBMAC1 (RFC 8018 §7.1, RFC 9481 §6.1.1) and PBKDF2 (RFC 8018 §5.2). */
export const ID_PBMAC1 = "1.2.840.113549.1.5.14";
export const ID_PBKDF2 = "1.2.840.113549.1.5.12";

/** PBKDF2-params ::= SEQUENCE { salt OCTET STRING (the `specified` choice), iterationCount INTEGER, keyLength INTEGER OPTIONAL, prf AlgorithmIdentifier DEFAULT hmacWithSHA1 } */
export class PBKDF2Params {
  @AsnProp({ type: OctetString }) salt = new OctetString();
  @AsnProp({ type: AsnPropTypes.Integer }) iterationCount = 0;
  @AsnProp({ type: AsnPropTypes.Integer, optional: true }) keyLength?: number;
  @AsnProp({ type: AlgorithmIdentifier, optional: true }) prf?: AlgorithmIdentifier;
  constructor(params: Partial<PBKDF2Params> = {}) {
    Object.assign(this, params);
  }
}

/** PBMAC1-params ::= SEQUENCE { keyDerivationFunc AlgorithmIdentifier, messageAuthScheme AlgorithmIdentifier } */
export class PBMAC1Params {
  @AsnProp({ type: AlgorithmIdentifier }) keyDerivationFunc = new AlgorithmIdentifier();
  @AsnProp({ type: AlgorithmIdentifier }) messageAuthScheme = new AlgorithmIdentifier();
  constructor(params: Partial<PBMAC1Params> = {}) {
    Object.assign(this, params);
  }
}

/** InfoTypeAndValue ::= SEQUENCE { infoType OBJECT IDENTIFIER, infoValue ANY OPTIONAL } */
export class InfoTypeAndValue {
  @AsnProp({ type: AsnPropTypes.ObjectIdentifier }) infoType = "";
  @AsnProp({ type: AsnPropTypes.Any, optional: true }) infoValue?: ArrayBuffer;
  constructor(params: Partial<InfoTypeAndValue> = {}) {
    Object.assign(this, params);
  }
}

/** SEQUENCE OF InfoTypeAndValue (genm, genp, generalInfo). */
@AsnType({ type: AsnTypeTypes.Sequence, itemType: InfoTypeAndValue })
export class InfoTypeAndValues extends AsnArray<InfoTypeAndValue> {}

/** PKIHeader (RFC 4210 §5.1.1). */
export class PKIHeader {
  @AsnProp({ type: AsnPropTypes.Integer }) pvno = 2;
  @AsnProp({ type: GeneralName }) sender = new GeneralName();
  @AsnProp({ type: GeneralName }) recipient = new GeneralName();
  @AsnProp({ type: AsnPropTypes.GeneralizedTime, context: 0, optional: true }) messageTime?: Date;
  @AsnProp({ type: AlgorithmIdentifier, context: 1, optional: true }) protectionAlg?: AlgorithmIdentifier;
  @AsnProp({ type: OctetString, context: 2, optional: true }) senderKID?: OctetString;
  @AsnProp({ type: OctetString, context: 3, optional: true }) recipKID?: OctetString;
  @AsnProp({ type: OctetString, context: 4, optional: true }) transactionID?: OctetString;
  @AsnProp({ type: OctetString, context: 5, optional: true }) senderNonce?: OctetString;
  @AsnProp({ type: OctetString, context: 6, optional: true }) recipNonce?: OctetString;
  @AsnProp({ type: PKIFreeText, context: 7, optional: true }) freeText?: PKIFreeText;
  @AsnProp({ type: InfoTypeAndValues, context: 8, optional: true }) generalInfo?: InfoTypeAndValues;
  constructor(params: Partial<PKIHeader> = {}) {
    Object.assign(this, params);
  }
}

/** Extensions as a CertTemplate carries them. */
@AsnType({ type: AsnTypeTypes.Sequence, itemType: Extension })
export class TemplateExtensions extends AsnArray<Extension> {}

/** CertTemplate (RFC 4211 §5): the fields a Lightweight CMP request fills. */
export class CertTemplate {
  @AsnProp({ type: Name, context: 5, optional: true }) subject?: Name;
  @AsnProp({ type: SubjectPublicKeyInfo, context: 6, implicit: true, optional: true }) publicKey?: SubjectPublicKeyInfo;
  @AsnProp({ type: TemplateExtensions, context: 9, implicit: true, optional: true }) extensions?: TemplateExtensions;
  constructor(params: Partial<CertTemplate> = {}) {
    Object.assign(this, params);
  }
}

/** id-regCtrl-oldCertID (RFC 4211 §6.5): the certificate a key update replaces. */
export const ID_REG_CTRL_OLD_CERT_ID = "1.3.6.1.5.5.7.5.1.5";

/** CertId ::= SEQUENCE { issuer GeneralName, serialNumber INTEGER } */
export class CertId {
  @AsnProp({ type: GeneralName }) issuer = new GeneralName();
  @AsnProp({ type: AsnPropTypes.Integer, converter: AsnIntegerArrayBufferConverter }) serialNumber = new ArrayBuffer(0);
  constructor(params: Partial<CertId> = {}) {
    Object.assign(this, params);
  }
}

/** AttributeTypeAndValue ::= SEQUENCE { type OBJECT IDENTIFIER, value ANY } (a control). */
export class Control {
  @AsnProp({ type: AsnPropTypes.ObjectIdentifier }) type = "";
  @AsnProp({ type: AsnPropTypes.Any }) value = new ArrayBuffer(0);
  constructor(params: Partial<Control> = {}) {
    Object.assign(this, params);
  }
}

/** Controls ::= SEQUENCE SIZE (1..MAX) OF AttributeTypeAndValue */
@AsnType({ type: AsnTypeTypes.Sequence, itemType: Control })
export class Controls extends AsnArray<Control> {}

/** CertRequest ::= SEQUENCE { certReqId INTEGER, certTemplate CertTemplate, controls OPTIONAL } */
export class CertRequest {
  @AsnProp({ type: AsnPropTypes.Integer }) certReqId = 0;
  @AsnProp({ type: CertTemplate }) certTemplate = new CertTemplate();
  @AsnProp({ type: Controls, optional: true }) controls?: Controls;
  constructor(params: Partial<CertRequest> = {}) {
    Object.assign(this, params);
  }
}

/** POPOSigningKey: the signature over the DER CertRequest, without poposkInput (the template has subject and key). */
export class POPOSigningKey {
  @AsnProp({ type: AlgorithmIdentifier }) algorithmIdentifier = new AlgorithmIdentifier();
  @AsnProp({ type: BitString }) signature = new BitString();
  constructor(params: Partial<POPOSigningKey> = {}) {
    Object.assign(this, params);
  }
}

/** ProofOfPossession ::= CHOICE { raVerified [0] NULL, signature [1] POPOSigningKey, ... } (implicit). */
@AsnType({ type: AsnTypeTypes.Choice })
export class ProofOfPossession {
  @AsnProp({ type: POPOSigningKey, context: 1, implicit: true }) signature?: POPOSigningKey;
  constructor(params: Partial<ProofOfPossession> = {}) {
    Object.assign(this, params);
  }
}

/** CertReqMsg ::= SEQUENCE { certReq CertRequest, popo ProofOfPossession OPTIONAL, regInfo OPTIONAL } */
export class CertReqMsg {
  @AsnProp({ type: CertRequest }) certReq = new CertRequest();
  @AsnProp({ type: ProofOfPossession, optional: true }) popo?: ProofOfPossession;
  constructor(params: Partial<CertReqMsg> = {}) {
    Object.assign(this, params);
  }
}

/** CertReqMessages ::= SEQUENCE SIZE (1..MAX) OF CertReqMsg */
@AsnType({ type: AsnTypeTypes.Sequence, itemType: CertReqMsg })
export class CertReqMessages extends AsnArray<CertReqMsg> {}

/** PKIStatusInfo ::= SEQUENCE { status PKIStatus, statusString PKIFreeText OPTIONAL, failInfo PKIFailureInfo OPTIONAL } */
export class PKIStatusInfo {
  @AsnProp({ type: AsnPropTypes.Integer }) status = 0;
  @AsnProp({ type: PKIFreeText, optional: true }) statusString?: PKIFreeText;
  @AsnProp({ type: BitString, optional: true }) failInfo?: BitString;
  constructor(params: Partial<PKIStatusInfo> = {}) {
    Object.assign(this, params);
  }
}

/** CertOrEncCert ::= CHOICE { certificate [0] CMPCertificate, encryptedCert [1] EncryptedKey } */
@AsnType({ type: AsnTypeTypes.Choice })
class CertOrEncCert {
  /** The certificate's DER as received. */
  @AsnProp({ type: AsnPropTypes.Any, context: 0 }) certificate?: ArrayBuffer;
  @AsnProp({ type: AsnPropTypes.Any, context: 1 }) encryptedCert?: ArrayBuffer;
  constructor(params: Partial<CertOrEncCert> = {}) {
    Object.assign(this, params);
  }
}

/** CertifiedKeyPair ::= SEQUENCE { certOrEncCert, privateKey [0] OPTIONAL, publicationInfo [1] OPTIONAL } */
export class CertifiedKeyPair {
  @AsnProp({ type: CertOrEncCert }) certOrEncCert = new CertOrEncCert();
  @AsnProp({ type: AsnPropTypes.Any, context: 0, optional: true }) privateKey?: ArrayBuffer;
  @AsnProp({ type: AsnPropTypes.Any, context: 1, optional: true }) publicationInfo?: ArrayBuffer;
  constructor(params: Partial<CertifiedKeyPair> = {}) {
    Object.assign(this, params);
  }
}

/** CertResponse ::= SEQUENCE { certReqId INTEGER, status PKIStatusInfo, certifiedKeyPair OPTIONAL, rspInfo OPTIONAL } */
export class CertResponse {
  @AsnProp({ type: AsnPropTypes.Integer }) certReqId = 0;
  @AsnProp({ type: PKIStatusInfo }) status = new PKIStatusInfo();
  @AsnProp({ type: CertifiedKeyPair, optional: true }) certifiedKeyPair?: CertifiedKeyPair;
  @AsnProp({ type: OctetString, optional: true }) rspInfo?: OctetString;
  constructor(params: Partial<CertResponse> = {}) {
    Object.assign(this, params);
  }
}

/** SEQUENCE OF CertResponse */
@AsnType({ type: AsnTypeTypes.Sequence, itemType: CertResponse })
class CertResponses extends AsnArray<CertResponse> {}

/** CertRepMessage ::= SEQUENCE { caPubs [1] SEQUENCE OF CMPCertificate OPTIONAL, response SEQUENCE OF CertResponse } */
export class CertRepMessage {
  @AsnProp({ type: CertificateList, context: 1, optional: true }) caPubs?: CertificateList;
  @AsnProp({ type: CertResponses }) response = new CertResponses();
  constructor(params: Partial<CertRepMessage> = {}) {
    Object.assign(this, params);
  }
}

/** CertStatus ::= SEQUENCE { certHash OCTET STRING, certReqId INTEGER, statusInfo PKIStatusInfo OPTIONAL, hashAlg [0] OPTIONAL } */
export class CertStatus {
  @AsnProp({ type: OctetString }) certHash = new OctetString();
  @AsnProp({ type: AsnPropTypes.Integer }) certReqId = 0;
  @AsnProp({ type: PKIStatusInfo, optional: true }) statusInfo?: PKIStatusInfo;
  constructor(params: Partial<CertStatus> = {}) {
    Object.assign(this, params);
  }
}

/** CertConfirmContent ::= SEQUENCE OF CertStatus */
@AsnType({ type: AsnTypeTypes.Sequence, itemType: CertStatus })
export class CertConfirmContent extends AsnArray<CertStatus> {}

/** One entry of PollReqContent: SEQUENCE { certReqId INTEGER } */
export class PollReqEntry {
  @AsnProp({ type: AsnPropTypes.Integer }) certReqId = 0;
  constructor(params: Partial<PollReqEntry> = {}) {
    Object.assign(this, params);
  }
}

/** PollReqContent ::= SEQUENCE OF SEQUENCE { certReqId } */
@AsnType({ type: AsnTypeTypes.Sequence, itemType: PollReqEntry })
export class PollReqContent extends AsnArray<PollReqEntry> {}

/** One entry of PollRepContent: SEQUENCE { certReqId INTEGER, checkAfter INTEGER, reason PKIFreeText OPTIONAL } */
export class PollRepEntry {
  @AsnProp({ type: AsnPropTypes.Integer }) certReqId = 0;
  @AsnProp({ type: AsnPropTypes.Integer }) checkAfter = 0;
  @AsnProp({ type: PKIFreeText, optional: true }) reason?: PKIFreeText;
  constructor(params: Partial<PollRepEntry> = {}) {
    Object.assign(this, params);
  }
}

/** PollRepContent ::= SEQUENCE OF PollRepEntry */
@AsnType({ type: AsnTypeTypes.Sequence, itemType: PollRepEntry })
export class PollRepContent extends AsnArray<PollRepEntry> {}

/** ErrorMsgContent ::= SEQUENCE { pKIStatusInfo, errorCode INTEGER OPTIONAL, errorDetails PKIFreeText OPTIONAL } */
export class ErrorMsgContent {
  @AsnProp({ type: PKIStatusInfo }) pKIStatusInfo = new PKIStatusInfo();
  @AsnProp({ type: AsnPropTypes.Integer, optional: true }) errorCode?: number;
  @AsnProp({ type: PKIFreeText, optional: true }) errorDetails?: PKIFreeText;
  constructor(params: Partial<ErrorMsgContent> = {}) {
    Object.assign(this, params);
  }
}

/** PKIBody: the choices the Lightweight CMP profile uses (explicit tags). */
@AsnType({ type: AsnTypeTypes.Choice })
export class PKIBody {
  @AsnProp({ type: CertReqMessages, context: 0 }) ir?: CertReqMessages;
  @AsnProp({ type: CertRepMessage, context: 1 }) ip?: CertRepMessage;
  @AsnProp({ type: CertReqMessages, context: 2 }) cr?: CertReqMessages;
  @AsnProp({ type: CertRepMessage, context: 3 }) cp?: CertRepMessage;
  @AsnProp({ type: CertificationRequest, context: 4 }) p10cr?: CertificationRequest;
  @AsnProp({ type: CertReqMessages, context: 7 }) kur?: CertReqMessages;
  @AsnProp({ type: CertRepMessage, context: 8 }) kup?: CertRepMessage;
  @AsnProp({ type: AsnPropTypes.Null, context: 19 }) pkiconf?: null;
  @AsnProp({ type: InfoTypeAndValues, context: 21 }) genm?: InfoTypeAndValues;
  @AsnProp({ type: InfoTypeAndValues, context: 22 }) genp?: InfoTypeAndValues;
  @AsnProp({ type: ErrorMsgContent, context: 23 }) error?: ErrorMsgContent;
  @AsnProp({ type: CertConfirmContent, context: 24 }) certConf?: CertConfirmContent;
  @AsnProp({ type: PollReqContent, context: 25 }) pollReq?: PollReqContent;
  @AsnProp({ type: PollRepContent, context: 26 }) pollRep?: PollRepContent;
  constructor(params: Partial<PKIBody> = {}) {
    Object.assign(this, params);
  }
}

/** ProtectedPart ::= SEQUENCE { header PKIHeader, body PKIBody }: what the protection covers. */
export class ProtectedPart {
  @AsnProp({ type: PKIHeader }) header = new PKIHeader();
  @AsnProp({ type: PKIBody }) body = new PKIBody();
  constructor(params: Partial<ProtectedPart> = {}) {
    Object.assign(this, params);
  }
}

/** PKIMessage ::= SEQUENCE { header, body, protection [0] BIT STRING OPTIONAL, extraCerts [1] OPTIONAL } */
export class PKIMessage {
  @AsnProp({ type: PKIHeader }) header = new PKIHeader();
  @AsnProp({ type: PKIBody }) body = new PKIBody();
  @AsnProp({ type: BitString, context: 0, optional: true }) protection?: BitString;
  @AsnProp({ type: CertificateList, context: 1, optional: true }) extraCerts?: CertificateList;
  constructor(params: Partial<PKIMessage> = {}) {
    Object.assign(this, params);
  }
}
