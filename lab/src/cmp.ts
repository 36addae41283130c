/**
 * The lab's CMP server (RFC 4210, RFC 9483's Lightweight CMP profile) at `/pkix/` on the lab's port,
 * issuing with the lab's CA (IOTmidCA). It takes `ir`, `cr` and `p10cr` protected by a shared secret
 * (PasswordBasedMac, the reference in senderKID) or signed with a bootstrap certificate from a
 * manufacturer CA it trusts, answers `ip`/`cp` and then `certConf` with `pkiConf`. OpenSSL's
 * `openssl cmp` is the independent client the tests hold it to; where OpenSSL's own server decides
 * something, the comments cite `crypto/cmp/cmp_server.c` and `apps/lib/cmp_mock_srv.c` (openssl-3.0).
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  randomBytes,
  sign,
  verify,
  X509Certificate,
} from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { AsnConvert, BitString, OctetString } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, GeneralName, Name } from "@peculiar/asn1-x509";
import {
  CertConfirmContent,
  CertificateList,
  CertifiedKeyPair,
  CertRepMessage,
  CertResponse,
  type CryptoProvider,
  ErrorMsgContent,
  ID_IT_CA_CERTS,
  ID_PASSWORD_BASED_MAC,
  InfoTypeAndValue,
  InfoTypeAndValues,
  macMatches,
  newPbmAlgorithm,
  PKIBody,
  PKIFreeText,
  PKIHeader,
  PKIMessage,
  PKIStatusInfo,
  ProtectedPart,
  passwordBasedMac,
} from "cert-retriever";
import { type LabCa, ProfileRefusal, parseSignedCsr, RSA_SHA256 } from "./ca.js";
import { BODY, type CertRequestParts, type CmpRequest, readCertRequest, readRequest } from "./cmp-request.js";
import * as x509 from "./x509.js";

/** Settings of the lab's CMP server. */
export interface CmpLabOptions {
  /** The shared secrets, by reference (the request's senderKID, `openssl cmp -ref`). */
  secrets: Record<string, string>;
  /** The CAs (DER) whose certificates may sign requests: bootstrap (manufacturer) certificates. */
  bootstrapCas?: Uint8Array[];
}

/** The lab's CMP signer: the certificate and key signature-protected answers are signed with. */
interface CmpSigner {
  cert: x509.X509Certificate;
  key: KeyObject;
}

/** What the CMP handler keeps between requests. */
export interface CmpContext {
  crypto: CryptoProvider;
  ca: LabCa;
  cmp: CmpLabOptions;
  /** The CMP signer, made on first use. */
  signer?: Promise<CmpSigner>;
  /** Transactions whose certificate waits for its certConf: the certificate's hash, by transactionID (hex). */
  issued: Map<string, { certHash: Buffer; certReqId: number }>;
}

/** A CMP server's state, new at each start. */
export function cmpContext(crypto: CryptoProvider, ca: LabCa, cmp: CmpLabOptions): CmpContext {
  return { crypto, ca, cmp, issued: new Map() };
}

/** PKIFailureInfo's bits the lab sets (RFC 4210 §5.2.3). */
const FAIL_BIT = {
  badAlg: 0,
  badMessageCheck: 1,
  badRequest: 2,
  badCertId: 4,
  badPOP: 9,
  badCertTemplate: 19,
  signerNotTrusted: 20,
} as const;
type FailInfo = keyof typeof FAIL_BIT;

/** A request the lab refuses: its reason, and the failInfo bit that says so. */
class CmpRefusal extends Error {
  constructor(
    message: string,
    readonly failInfo: FailInfo,
  ) {
    super(message);
  }
}

/** How a request was protected; its answer is protected the same way (RFC 9483 §3.2). */
type Protection = { kind: "mac"; reference: string; secret: string } | { kind: "signature" };

/** Signature algorithms a request or a proof of possession may use, by OID: the hash Node verifies with. */
const SIGNATURE_HASH: Record<string, string> = Object.fromEntries(
  ["sha256", "sha384", "sha512"].flatMap((hash, i) => [
    [`1.2.840.10045.4.3.${i + 2}`, hash], // ecdsa-with-SHA256/384/512
    [`1.2.840.113549.1.1.${i + 11}`, hash], // sha256/384/512WithRSAEncryption
  ]),
);
/** ecdsa-with-SHA256: how the lab's CMP signer signs. */
const ECDSA_SHA256 = "1.2.840.10045.4.3.2";

/** The CMP signer: EC P-256, issued by the lab's CA, digitalSignature, with a subject key identifier (the answers' senderKID). */
async function makeSigner(ctx: CmpContext): Promise<CmpSigner> {
  const alg = { name: "ECDSA", namedCurve: "P-256" };
  const keys = (await ctx.crypto.subtle.generateKey(alg, true, ["sign", "verify"])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: "7c",
      subject: "CN=Lab CMP RA, O=EJBCA IOT, C=SE",
      issuer: ctx.ca.cert.subjectName,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Math.min(Date.now() + 365 * 86_400_000, ctx.ca.cert.notAfter.getTime())),
      publicKey: keys.publicKey,
      signingKey: ctx.ca.key,
      signingAlgorithm: RSA_SHA256,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, ctx.crypto),
        await x509.AuthorityKeyIdentifierExtension.create(ctx.ca.cert.publicKey, false, ctx.crypto),
      ],
    },
    ctx.crypto,
  );
  const pkcs8 = await ctx.crypto.subtle.exportKey("pkcs8", keys.privateKey);
  return { cert, key: createPrivateKey({ key: Buffer.from(pkcs8), format: "der", type: "pkcs8" }) };
}

function signer(ctx: CmpContext): Promise<CmpSigner> {
  ctx.signer ??= makeSigner(ctx);
  return ctx.signer;
}

/**
 * `/pkix/` (RFC 6712 §3: POST, `application/pkixcmp` both ways). Another method, or a body that is
 * no PKIMessage, gets 400 Bad Request, as OpenSSL's CMP server answers them (`apps/lib/http_server.c`
 * http_server_get_asn1_req, openssl-3.0: "does not begin with POST", "Error parsing DER-encoded
 * request content").
 */
export async function handleCmp(req: IncomingMessage, res: ServerResponse, raw: Buffer, ctx: CmpContext) {
  const badRequest = () => {
    res.writeHead(400, { "content-type": "text/plain; charset=utf-8" });
    res.end("Bad Request\n");
  };
  if (req.method !== "POST") return badRequest();
  let msg: CmpRequest;
  try {
    msg = readRequest(new Uint8Array(raw));
  } catch {
    return badRequest();
  }
  const answer = await process(msg, ctx);
  res.writeHead(200, { "content-type": "application/pkixcmp" });
  res.end(Buffer.from(answer));
}

/**
 * A request's answer. As `OSSL_CMP_SRV_process_request` (`crypto/cmp/cmp_server.c`, openssl-3.0)
 * does: the protection is checked first, and a request the server cannot take gets an `error`
 * message with status rejection. OpenSSL's server sets failInfo badRequest whatever the cause ("not
 * very specific", it says); the lab says which, as RFC 9483 §3.5-3.6 and RFC 4210 §5.2.3 name them:
 * badMessageCheck for a protection that does not verify, signerNotTrusted for a signer it does not
 * know. When the request's protection did not verify, the error is signed by the lab's CMP signer
 * (the request's secret cannot be trusted to protect it; OpenSSL's server protects with its own credentials).
 */
async function process(msg: CmpRequest, ctx: CmpContext): Promise<Uint8Array> {
  let protection: Protection;
  try {
    checkHeader(msg.header);
    protection = checkProtection(msg, ctx.cmp);
  } catch (err) {
    return errorAnswer(msg, err, { kind: "signature" }, ctx);
  }
  try {
    return await respond(msg, protection, ctx);
  } catch (err) {
    return errorAnswer(msg, err, protection, ctx);
  }
}

/** RFC 9483 §3.1: pvno 2 (or 3), a directoryName sender, a transactionID and a senderNonce. */
function checkHeader(header: PKIHeader): void {
  if (header.pvno !== 2 && header.pvno !== 3) throw new CmpRefusal(`pvno ${header.pvno} is not taken`, "badRequest");
  if (!header.sender.directoryName) throw new CmpRefusal("the sender is not a directoryName", "badRequest");
  if (!header.transactionID?.byteLength || !header.senderNonce?.byteLength)
    throw new CmpRefusal("the header lacks its transactionID or senderNonce", "badRequest");
}

/**
 * A request's protection (RFC 9483 §3.2: requests are protected): the PasswordBasedMac with the
 * secret of its reference, or a signature whose certificate (extraCerts' first) chains to a trusted
 * bootstrap CA.
 */
function checkProtection(msg: CmpRequest, cmp: CmpLabOptions): Protection {
  const alg = msg.header.protectionAlg;
  const { part, protection: value } = msg;
  if (!alg || !value) throw new CmpRefusal("the request is not protected", "badMessageCheck");
  if (alg.algorithm === ID_PASSWORD_BASED_MAC) {
    const reference = msg.header.senderKID ? Buffer.from(msg.header.senderKID.buffer).toString("utf8") : "";
    const secret = Object.hasOwn(cmp.secrets, reference) ? cmp.secrets[reference] : undefined;
    if (secret === undefined)
      throw new CmpRefusal("no shared secret is known for the request's reference", "signerNotTrusted");
    let matches: boolean;
    try {
      matches = macMatches(alg, secret, part, value);
    } catch (err) {
      throw new CmpRefusal((err as Error).message, "badAlg");
    }
    if (!matches) throw new CmpRefusal("the request's PasswordBasedMac does not verify", "badMessageCheck");
    return { kind: "mac", reference, secret };
  }
  const hash = SIGNATURE_HASH[alg.algorithm];
  if (!hash) throw new CmpRefusal(`protection ${alg.algorithm} is not taken`, "badAlg");
  const certs = msg.extraCerts.map((c) => new X509Certificate(Buffer.from(c)));
  const [signed] = certs;
  if (!signed) throw new CmpRefusal("a signed request without its certificate in extraCerts", "badMessageCheck");
  if (!verify(hash, part, signed.publicKey, value))
    throw new CmpRefusal("the request's signature does not verify", "badMessageCheck");
  if (!chainsToTrusted(signed, certs.slice(1), cmp.bootstrapCas ?? []))
    throw new CmpRefusal("the request's signer is not issued by a trusted bootstrap CA", "signerNotTrusted");
  return { kind: "signature" };
}

/** Whether the certificate, through the others given, was issued by a trusted CA, each link in its validity. */
function chainsToTrusted(cert: X509Certificate, others: X509Certificate[], trustedDer: Uint8Array[]): boolean {
  const trusted = trustedDer.map((d) => new X509Certificate(Buffer.from(d)));
  const now = Date.now();
  let link = cert;
  for (let depth = 0; depth < 5; depth++) {
    if (now < Date.parse(link.validFrom) || now > Date.parse(link.validTo)) return false;
    if (trusted.some((ca) => link.checkIssued(ca) && link.verify(ca.publicKey))) return true;
    const up = others.find((o) => link.checkIssued(o) && link.verify(o.publicKey) && o.ca);
    if (!up) return false;
    link = up;
  }
  return false;
}

/** The answer to a request whose protection verified, by its body's type. */
async function respond(msg: CmpRequest, protection: Protection, ctx: CmpContext): Promise<Uint8Array> {
  if (msg.tag === BODY.ir || msg.tag === BODY.cr) {
    const request = readCertRequest(msg.content);
    if (request.several)
      throw new CmpRefusal("one certificate request a message is taken (RFC 9483 §4.1.1)", "badRequest");
    checkPop(request);
    const { subject, spki } = request;
    if (!subject || !spki) throw new CmpRefusal("the template lacks its subject or public key", "badCertTemplate");
    const issuing = () => issue(subject, spki, request.sans, ctx);
    const answer = await certResponse(request.certReqId, issuing, msg, ctx);
    return reply(msg, new PKIBody(msg.tag === BODY.ir ? { ip: answer } : { cp: answer }), protection, ctx);
  }
  if (msg.tag === BODY.p10cr) {
    // A p10cr's answer has certReqId -1 (RFC 9480 §2.8, RFC 9483 §4.1.4).
    const answer = await certResponse(-1, () => issueP10(msg.content, ctx), msg, ctx);
    return reply(msg, new PKIBody({ cp: answer }), protection, ctx);
  }
  if (msg.tag === BODY.genm) return reply(msg, new PKIBody({ genp: generalAnswer(msg, ctx) }), protection, ctx);
  if (msg.tag === BODY.certConf) {
    confirm(msg, ctx);
    return reply(msg, new PKIBody({ pkiconf: null }), protection, ctx);
  }
  throw new CmpRefusal("the lab's CMP server takes ir, cr, p10cr, genm and certConf", "badRequest");
}

/**
 * A genp (RFC 9483 §4.3.1): id-it-caCerts answered with the lab's CA certificate; other info types
 * are left out, as RFC 4210 §5.3.19 lets the CA answer only those it chooses (OpenSSL's mock server
 * echoes them, `apps/lib/cmp_mock_srv.c` process_genm).
 */
function generalAnswer(msg: CmpRequest, ctx: CmpContext): InfoTypeAndValues {
  const asked = AsnConvert.parse(msg.content, InfoTypeAndValues);
  return new InfoTypeAndValues(
    asked
      .filter((itav) => itav.infoType === ID_IT_CA_CERTS)
      .map(
        (itav) =>
          new InfoTypeAndValue({
            infoType: itav.infoType,
            infoValue: AsnConvert.serialize(new CertificateList([ctx.ca.cert.rawData])),
          }),
      ),
  );
}

/**
 * A certConf: the transaction's certificate is confirmed when the hash matches (RFC 4210 §5.3.18,
 * the hash of the certificate's signature algorithm: SHA-256 for the lab's CA).
 */
function confirm(msg: CmpRequest, ctx: CmpContext): void {
  const tid = Buffer.from(msg.header.transactionID!.buffer).toString("hex");
  const waiting = ctx.issued.get(tid);
  if (!waiting) throw new CmpRefusal("no certificate of this transaction waits for its confirmation", "badRequest");
  const status = AsnConvert.parse(msg.content, CertConfirmContent).find((s) => s.certReqId === waiting.certReqId);
  if (!status) throw new CmpRefusal("the certConf names no certificate of this transaction", "badCertId");
  if (!Buffer.from(status.certHash.buffer).equals(waiting.certHash))
    throw new CmpRefusal("the certConf's certHash is not the certificate's", "badCertId");
  ctx.issued.delete(tid);
}

/**
 * An ip/cp's content: the certificate issued, with `caPubs` (the lab's root CA) when the request
 * was MAC-protected (RFC 9483 §4.1.1: caPubs only then); or, when the lab's profile refuses the
 * request, status rejection with its failInfo and no certificate (RFC 9483 §4.1.1, RFC 4210 §5.3.4).
 */
async function certResponse(
  certReqId: number,
  make: () => Promise<x509.X509Certificate>,
  msg: CmpRequest,
  ctx: CmpContext,
): Promise<CertRepMessage> {
  const answer = new CertRepMessage();
  let cert: x509.X509Certificate;
  try {
    cert = await make();
  } catch (err) {
    if (!(err instanceof CmpRefusal)) throw err;
    answer.response.push(new CertResponse({ certReqId, status: statusInfo(err) }));
    return answer;
  }
  const certifiedKeyPair = new CertifiedKeyPair();
  certifiedKeyPair.certOrEncCert.certificate = cert.rawData;
  answer.response.push(new CertResponse({ certReqId, status: new PKIStatusInfo({ status: 0 }), certifiedKeyPair }));
  if (msg.header.protectionAlg?.algorithm === ID_PASSWORD_BASED_MAC)
    answer.caPubs = new CertificateList([ctx.ca.cert.rawData]);
  const tid = Buffer.from(msg.header.transactionID!.buffer).toString("hex");
  ctx.issued.set(tid, { certHash: createHash("sha256").update(Buffer.from(cert.rawData)).digest(), certReqId });
  return answer;
}

/** The proof of possession (RFC 4211 §4.1): a signature over the DER CertRequest with the template's key. */
function checkPop(request: CertRequestParts): void {
  const { pop, spki } = request;
  if (!pop || !spki) throw new CmpRefusal("the request has no signature proof of possession", "badPOP");
  const hash = SIGNATURE_HASH[pop.alg];
  if (!hash) throw new CmpRefusal(`POP algorithm ${pop.alg} is not taken`, "badAlg");
  const key = createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" });
  if (!verify(hash, request.certReq, key, pop.signature))
    throw new CmpRefusal("the proof of possession does not verify", "badPOP");
}

/** A p10cr's CSR, its own signature checked (as the lab's EJBCA does), issued as a template. */
async function issueP10(csrDer: Uint8Array, ctx: CmpContext): Promise<x509.X509Certificate> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = await parseSignedCsr(csrDer, ctx.crypto);
  } catch (err) {
    if (err instanceof ProfileRefusal) throw new CmpRefusal(err.message, "badPOP");
    throw err;
  }
  const sans = csr.extensions.find((e) => e.type === "2.5.29.17");
  return issue(
    new Uint8Array(csr.subjectName.toArrayBuffer()),
    new Uint8Array(csr.publicKey.rawData),
    sans?.value,
    ctx,
  );
}

/** The lab's CMP profile: a CN in the subject, and an RSA key of 2048 bits or more or an EC P-256/P-384 key. */
function checkProfile(subject: x509.Name, spkiDer: Uint8Array): void {
  if (subject.getField("CN").length === 0)
    throw new CmpRefusal("the lab's CMP profile requires a CN in the subject", "badCertTemplate");
  const key = createPublicKey({ key: Buffer.from(spkiDer), format: "der", type: "spki" });
  const d = key.asymmetricKeyDetails ?? {};
  const taken =
    (key.asymmetricKeyType === "rsa" && (d.modulusLength ?? 0) >= 2048) ||
    (key.asymmetricKeyType === "ec" && ["prime256v1", "secp384r1"].includes(d.namedCurve ?? ""));
  if (!taken) throw new CmpRefusal("the lab's CMP profile takes RSA 2048+ and EC P-256/P-384 keys", "badCertTemplate");
}

/** A device certificate from the lab's CA: the requested subject and SANs, 365 days, digitalSignature and clientAuth. */
async function issue(
  subjectDer: Uint8Array,
  spkiDer: Uint8Array,
  sans: ArrayBuffer | undefined,
  ctx: CmpContext,
): Promise<x509.X509Certificate> {
  const subject = new x509.Name(new Uint8Array(subjectDer));
  checkProfile(subject, spkiDer);
  const publicKey = new x509.PublicKey(new Uint8Array(spkiDer));
  const now = Date.now();
  return x509.X509CertificateGenerator.create(
    {
      serialNumber: randomBytes(8)
        .toString("hex")
        .replace(/^[89a-f]/, "1"),
      subject,
      issuer: ctx.ca.cert.subjectName,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(Math.min(now + 365 * 86_400_000, ctx.ca.cert.notAfter.getTime())),
      publicKey,
      signingKey: ctx.ca.key,
      signingAlgorithm: RSA_SHA256,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, false),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
        await x509.SubjectKeyIdentifierExtension.create(publicKey, false, ctx.crypto),
        await x509.AuthorityKeyIdentifierExtension.create(ctx.ca.cert.publicKey, false, ctx.crypto),
        ...(sans ? [new x509.Extension("2.5.29.17", false, sans)] : []),
      ],
    },
    ctx.crypto,
  );
}

/** A PKIStatusInfo of rejection with the refusal's failInfo bit and its text. */
function statusInfo(refusal: CmpRefusal): PKIStatusInfo {
  const bit = FAIL_BIT[refusal.failInfo];
  const bytes = new Uint8Array((bit >> 3) + 1);
  bytes[bit >> 3] = 0x80 >> (bit & 7);
  return new PKIStatusInfo({
    status: 2,
    statusString: new PKIFreeText([refusal.message]),
    failInfo: new BitString(bytes, 7 - (bit & 7)),
  });
}

/** An `error` message for a refusal (anything else is the lab's own failure: badRequest, as OpenSSL's server says). */
function errorAnswer(msg: CmpRequest, err: unknown, protection: Protection, ctx: CmpContext): Promise<Uint8Array> {
  const refusal =
    err instanceof CmpRefusal ? err : new CmpRefusal(err instanceof Error ? err.message : String(err), "badRequest");
  const error = new ErrorMsgContent({ pKIStatusInfo: statusInfo(refusal) });
  return reply(msg, new PKIBody({ error }), protection, ctx);
}

/**
 * An answer to `request`: the same transactionID, its senderNonce as recipNonce, a fresh nonce;
 * protected as the request was (RFC 9483 §3.2): by a PasswordBasedMac with the same secret (the
 * sender the CA), else signed by the CMP signer with its certificate and the CA in extraCerts (RFC
 * 9483 §3.3: the signer's first, then its chain; the sender its subject, senderKID its key identifier).
 */
async function reply(request: CmpRequest, body: PKIBody, protection: Protection, ctx: CmpContext): Promise<Uint8Array> {
  const messageTime = new Date();
  messageTime.setMilliseconds(0);
  const ca = AsnConvert.parse(ctx.ca.cert.subjectName.toArrayBuffer(), Name);
  const id = protection.kind === "mac" ? undefined : await signer(ctx);
  const ski = id?.cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  const header = new PKIHeader({
    pvno: 2,
    sender: new GeneralName({ directoryName: id ? AsnConvert.parse(id.cert.subjectName.toArrayBuffer(), Name) : ca }),
    recipient: request.header.sender,
    messageTime,
    protectionAlg: protection.kind === "mac" ? newPbmAlgorithm() : new AlgorithmIdentifier({ algorithm: ECDSA_SHA256 }),
    senderKID: new OctetString(
      protection.kind === "mac" ? Buffer.from(protection.reference) : Buffer.from(ski ?? "", "hex"),
    ),
    transactionID: request.header.transactionID,
    senderNonce: new OctetString(randomBytes(16)),
    recipNonce: request.header.senderNonce,
  });
  const part = new Uint8Array(AsnConvert.serialize(new ProtectedPart({ header, body })));
  const protectionValue =
    protection.kind === "mac"
      ? passwordBasedMac(header.protectionAlg!, protection.secret, part)
      : sign("sha256", part, id!.key);
  const extraCerts = id ? [id.cert.rawData, ctx.ca.cert.rawData] : body.ip || body.cp ? [ctx.ca.cert.rawData] : [];
  const message = new PKIMessage({
    header,
    body,
    protection: new BitString(new Uint8Array(protectionValue)),
    extraCerts: extraCerts.length ? new CertificateList(extraCerts) : undefined,
  });
  return new Uint8Array(AsnConvert.serialize(message));
}
