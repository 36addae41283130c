/**
 * CMP, the Lightweight CMP profile (RFC 9483) over HTTP (RFC 6712): `genm` for the CA certificates,
 * `ir` or `p10cr`, `pollReq` while the answer is `waiting`, and `certConf`; every message protected
 * by a shared secret (PasswordBasedMac) or signed by a bootstrap certificate's key (a first enrollment)
 * or the current certificate's (`kur`), every answer's protection checked before it is trusted.
 */
import { AsnConvert } from "@peculiar/asn1-schema";
import type { Name } from "@peculiar/asn1-x509";
import { CertRetrieverError, describeCause, type Step } from "../../errors.js";
import { sameBytes, sha256ColonHex } from "../../keys/fingerprint.js";
import type { SigningKey } from "../../keys/key-store.js";
import { certificatePems } from "../../keys/key-types.js";
import type { CryptoProvider } from "../../keys/provider.js";
import * as x509 from "../../keys/x509.js";
import { bodySummary, type HttpClient } from "../../transport/http.js";
import { waitBetweenRequests } from "../sessionless.js";
import type {
  ClientCredentials,
  EnrollCapability,
  FetchedCa,
  Issued,
  LoginSource,
  ProtocolClient,
  ReenrollCapability,
  ReenrollRequest,
  SessionlessCapability,
  SignRequest,
  TrustCapability,
} from "../types.js";
import { CertificateList, type CertRepMessage, type CertResponse, type PKIBody, type PKIMessage } from "./asn1.js";
import {
  type Answer,
  bodyType,
  macProtector,
  newTransaction,
  PKI_STATUS,
  type Protector,
  protectedRequest,
  readAnswer,
  type SharedSecret,
  signatureProtector,
  type Transaction,
  tokenSignatureProtector,
} from "./messages.js";
import { CMP, CMP_TITLE } from "./name.js";
import { errorContent, malformed, refusal } from "./replies.js";
import { caCertsBody, certConfBody, certReqBody, p10crBody, parseCsr, pollReqBody } from "./requests.js";

/** Settings of the CMP client. */
export interface CmpOptions {
  /** The server's URL with its path, e.g. `http://host:port/pkix/`. */
  url: URL;
  http: HttpClient;
  crypto: CryptoProvider;
  /** The trusted CA certificates, PEM: the stored chain, then `--platform-ca`'s. */
  anchors: { pem: string; from: string }[];
  /** The pinned CA fingerprint (64 hex digits, upper case). */
  pin?: string;
  /** The request to send: `ir` (CRMF, the profile's) or `p10cr` (PKCS#10). */
  request: "ir" | "p10cr";
  /** The MAC of the shared secret's protection: PasswordBasedMac (the default) or PBMAC1. */
  mac?: "pbm" | "pbmac1";
  /** A bootstrap certificate (a manufacturer's IDevID, with its chain, PEM) and its key (PEM, or in a token): a first enrollment without a secret is signed with them. */
  bootstrap?: ClientCredentials;
  signal?: AbortSignal;
}

/** A CMP server, behind the capabilities it offers: no session (each message is protected), trust, enroll. */
export class CmpClient implements ProtocolClient {
  readonly name = CMP;
  readonly title = CMP_TITLE;
  readonly sessionless: SessionlessCapability = { attach: (login) => this.attach(login) };
  readonly trust: TrustCapability = { fetchCa: () => this.fetchCa(), trustChain: (chain) => this.trustChain(chain) };
  readonly enroll: EnrollCapability = {
    defaultKeyType: "ec-p256",
    commonNames: (id) => [id],
    noBinding: "keeps no device records to tie it to",
    unstored: { next: "a CMP server keeps nothing to undo for it, and the next run enrolls again", journal: false },
    submit: (_session, req) => this.submit(req),
  };
  readonly reenroll: ReenrollCapability = {
    submit: (_session, req) => this.submit(req, req.current),
    keptNames: (asked) =>
      `a key update keeps the names the certificate has (RFC 9483 §4.1.3), not ${asked.join(", ")}; a forced enrollment with the shared secret asks for new ones`,
  };
  private source: LoginSource | undefined;
  private auth: SharedSecret | undefined;
  /** The bootstrap key in a token, once opened. */
  private bootstrapKey: Promise<SigningKey> | undefined;
  /** The issuing CA, once the caller checked the chain. */
  private ca: x509.X509Certificate | undefined;

  constructor(private readonly opts: CmpOptions) {}

  private attach(login: LoginSource | undefined): string {
    this.source = login;
    return this.opts.bootstrap && !login
      ? "CMP keeps no session: each message is signed, by the bootstrap certificate's key, or by the current certificate's when renewing"
      : `CMP keeps no session: each message is protected, by the shared secret (${this.opts.mac === "pbmac1" ? "PBMAC1" : "PasswordBasedMac"}) named by its reference, or by the current certificate when renewing`;
  }

  /** The protection of a first enrollment: the bootstrap certificate's signature when it is given without a secret's reference, else the shared secret's MAC. */
  private async firstProtector(step: Step): Promise<Protector> {
    const bootstrap = this.opts.bootstrap;
    if (bootstrap && !this.source) {
      const { certificatePem, keyPem, tokenKey } = bootstrap;
      if (tokenKey) return this.tokenSigner(step, certificatePem, tokenKey);
      if (keyPem !== undefined) return signer(step, { certificatePem, keyPem }, "bootstrap");
    }
    return macProtector(await this.secret(step), this.opts.mac);
  }

  /** The bootstrap key in a token, opened once (the token's failures keep their own reasons), as the signature protection. */
  private async tokenSigner(step: Step, certificatePem: string, open: () => Promise<SigningKey>): Promise<Protector> {
    this.bootstrapKey ??= open();
    const key = await this.bootstrapKey;
    return signer(step, { certificatePem, key }, "bootstrap");
  }

  /** The reference and the secret, read once when the first message needs them. */
  private async secret(step: Step): Promise<SharedSecret> {
    if (this.auth) return this.auth;
    const login = this.source;
    if (!login)
      throw new CertRetrieverError(`${step} failed: CMP needs the shared secret, and none was given`, {
        step,
        reason: "missing-credentials",
        facts: { protocol: CMP },
      });
    const reference = typeof login.username === "string" ? login.username : await login.username();
    this.auth = { reference, secret: await login.password() };
    return this.auth;
  }

  /**
   * The CA certificates: the trusted ones given (the stored chain, `--platform-ca`), else a `genm`
   * asking the server for them (RFC 9483 §4.3.1). The caller checks them against the pin before
   * trusting them. A renewal thus needs no secret: its chain is stored.
   */
  private async fetchCa(): Promise<FetchedCa> {
    const given = this.anchorCerts();
    const sent = given.length > 0 ? [] : await this.askCaCerts();
    const certs = sent.length > 0 ? sent : given;
    if (certs.length === 0)
      throw new CertRetrieverError(
        "fetch-ca failed: no CA certificate is given here, and the CMP server sent none when asked (genm, RFC 9483 §4.3.1); nothing was written",
        { step: "fetch-ca", reason: "ca-unknown", facts: { protocol: CMP } },
      );
    const [ca, ...chain] = orderChain(certs, this.opts.pin);
    const vouchedBy = sent.length > 0 ? undefined : this.opts.anchors.find((a) => a.pem.length > 0)?.from;
    return { der: ca!, chain, vouchedBy };
  }

  /** `genm` for the CA certificates: those the `genp` holds (OpenSSL 3.0's mock server sends none). */
  private async askCaCerts(): Promise<Uint8Array[]> {
    const auth = await this.firstProtector("fetch-ca");
    const answer = await this.exchange("fetch-ca", newTransaction(), caCertsBody(), auth, ["genp"]);
    return (answer.body.genp ?? []).flatMap((itav) =>
      itav.infoValue ? [...AsnConvert.parse(itav.infoValue, CertificateList)].map((c) => new Uint8Array(c)) : [],
    );
  }

  /** The CA certificates given: the stored chain's, then `--platform-ca`'s. */
  private anchorCerts(): Uint8Array[] {
    return this.opts.anchors.flatMap((a) =>
      certificatePems(a.pem).map((pem) => new Uint8Array(new x509.X509Certificate(pem).rawData)),
    );
  }

  private trustChain(chain: Uint8Array[]): void {
    this.ca = new x509.X509Certificate(new Uint8Array(chain[0]!));
  }

  /**
   * `ir` (or `p10cr`) for the CSR, protected by the secret; or, renewing, `kur` signed by the
   * current certificate's key (RFC 9483 §4.1.3). `pollReq` while the server says `waiting`; then
   * `certConf`, accepting the certificate only if it is for the CSR's key and signed by the trusted CA.
   */
  private async submit(req: SignRequest, current?: ReenrollRequest["current"]): Promise<Issued> {
    const auth = current ? signer("submit-csr", current, "current") : await this.firstProtector("submit-csr");
    const csr = parseCsr(req.csrDer);
    const tx = newTransaction(csr.certificationRequestInfo.subject as Name);
    const kind = current && req.key ? "kur" : this.opts.request === "ir" && req.key ? "ir" : "p10cr";
    const old = current ? new Uint8Array(new x509.X509Certificate(current.certificatePem).rawData) : undefined;
    const body =
      req.key && kind !== "p10cr"
        ? await certReqBody(kind, csr, { privateKey: req.key.keys.privateKey, crypto: req.key.crypto }, old)
        : p10crBody(csr);
    const reply = { kur: "kup", ir: "ip", p10cr: "cp" }[kind];
    let answer = await this.exchange("submit-csr", tx, body, auth, [reply]);
    let response = certResponse(answer, reply);
    while (response.status.status === PKI_STATUS.waiting) {
      answer = await this.poll(tx, auth, response.certReqId, reply);
      response = certResponse(answer, reply);
    }
    if (response.status.status !== PKI_STATUS.accepted && response.status.status !== PKI_STATUS.grantedWithMods)
      throw refusal("submit-csr", response.status, "the certificate request", "verified", [], auth.by);
    const der = response.certifiedKeyPair?.certOrEncCert.certificate;
    if (!der) throw malformed("submit-csr", "accepted the request but holds no certificate (or an encrypted one)");
    const cert = new Uint8Array(der);
    const wrong = await this.wrongCertificate(cert, req.csrDer);
    await this.exchange("submit-csr", tx, certConfBody(cert, response.certReqId, wrong), auth, ["pkiconf"]);
    if (wrong)
      throw new CertRetrieverError(
        `submit-csr failed: the certificate the CMP server issued ${wrong}; it was rejected (certConf) and nothing was written`,
        { step: "submit-csr", reason: "cert-invalid", facts: { protocol: CMP } },
      );
    return { der: cert };
  }

  /** Why the issued certificate cannot be accepted (not the CSR's key, not the trusted CA's signature), or undefined. */
  private async wrongCertificate(der: Uint8Array, csrDer: Uint8Array): Promise<string | undefined> {
    let cert: x509.X509Certificate;
    try {
      cert = new x509.X509Certificate(new Uint8Array(der));
    } catch {
      return "is no X.509 certificate";
    }
    const spki = new x509.Pkcs10CertificateRequest(new Uint8Array(csrDer)).publicKey.rawData;
    if (!sameBytes(cert.publicKey.rawData, spki)) return "is not for this device's key";
    if (this.ca && !(await cert.verify({ publicKey: this.ca.publicKey, signatureOnly: true }, this.opts.crypto)))
      return `is not signed by the trusted CA ${this.ca.subject} (SHA-256 ${sha256ColonHex(this.ca.rawData)})`;
    return undefined;
  }

  /** `pollReq` after the wait the server asked for, until it answers with the certificate response or the deadline comes. */
  private async poll(tx: Transaction, auth: Protector, certReqId: number, reply: string): Promise<PKIMessage> {
    let waitS = 0;
    for (;;) {
      if (Date.now() + waitS * 1000 >= this.opts.http.deadline)
        throw new CertRetrieverError(
          `submit-csr failed: the CMP server has not yet issued the certificate (waiting, next poll in ${waitS} s), and the deadline comes first; nothing was written`,
          { step: "submit-csr", reason: "deadline", facts: { protocol: CMP, pendingApproval: true } },
        );
      if (waitS > 0) await this.wait(waitS);
      const answer = await this.exchange("submit-csr", tx, pollReqBody(certReqId), auth, ["pollRep", reply]);
      const rep = answer.body.pollRep?.find((p) => p.certReqId === certReqId);
      if (!answer.body.pollRep) return answer;
      if (!rep) throw malformed("submit-csr", `is a pollRep for another request than ${certReqId}`);
      waitS = Math.max(rep.checkAfter, 1);
    }
  }

  private wait(seconds: number): Promise<void> {
    return waitBetweenRequests(
      this.opts.http,
      { step: "submit-csr", what: "the CMP server to issue the certificate (pollRep)" },
      seconds * 1000,
      this.opts.signal,
    );
  }

  /** Sends one request of the transaction and reads the answer: its protection verified, its transaction and nonce ours, one of `expected`. */
  private async exchange(
    step: Step,
    tx: Transaction,
    body: PKIBody,
    auth: Protector,
    expected: string[],
  ): Promise<PKIMessage> {
    const request = await protectedRequest(body, tx, auth);
    const reply = await this.opts.http.request(step, this.opts.url, {
      method: "POST",
      headers: { accept: "application/pkixcmp" },
      bytes: request.der,
      contentType: "application/pkixcmp",
      once: step === "submit-csr",
      peer: "the CMP server",
    });
    if (reply.status !== 200 || !reply.body.length)
      throw new CertRetrieverError(
        `${step} failed: the CMP server answered HTTP ${reply.status} (${bodySummary({ ...reply, text: reply.body.toString("latin1").slice(0, 200) })}) at ${this.opts.url.pathname}; nothing was written`,
        {
          step,
          reason: reply.status === 404 ? "url-path-wrong" : "platform-error",
          facts: { protocol: CMP, status: reply.status },
        },
      );
    let answer: Answer;
    try {
      answer = readAnswer(new Uint8Array(reply.body), {
        secret: this.auth?.secret,
        trusted: this.ca ? new Uint8Array(this.ca.rawData) : undefined,
      });
    } catch (err) {
      throw malformed(step, `is no PKIMessage (${err instanceof Error ? err.message : String(err)})`);
    }
    return checkAnswer(step, answer, tx, request.nonce, expected, auth.by);
  }
}

/** The answer, if it is one to trust: verified protection, our transaction, our nonce echoed, the body expected. */
function checkAnswer(
  step: Step,
  answer: Answer,
  tx: Transaction,
  nonce: Uint8Array,
  expected: string[],
  by: Protector["by"],
): PKIMessage {
  const { message, protection } = answer;
  const what = step === "fetch-ca" ? "the request for its CA certificates" : "the request";
  if (message.body.error && protection !== "verified")
    throw errorContent(step, message.body.error, what, protection === "mismatch" ? "mismatch" : "unverified", by);
  if (protection === "mismatch" && answer.kind === "mac")
    throw new CertRetrieverError(
      `${step} failed: the CMP server's answer does not verify with the shared secret: the secret, or the reference naming it, is not the server's; nothing was written`,
      { step, reason: "auth-refused", facts: { protocol: CMP } },
    );
  if (protection === "mismatch") throw malformed(step, "is signed by no certificate the trusted CA vouches for");
  if (protection !== "verified")
    throw malformed(
      step,
      protection === "none"
        ? "is not protected, so nothing proves it is the server's"
        : answer.kind === "signature"
          ? `is signed (${answer.protectionAlg}), but not with a certificate it sends, or before a CA is trusted to check it by`
          : `is protected by ${answer.protectionAlg}, which cannot be checked here (a MAC without the shared secret, or an unknown algorithm)`,
    );
  const header = message.header;
  if (!header.transactionID || !sameBytes(header.transactionID.buffer, tx.id))
    throw malformed(step, "belongs to another transaction");
  if (!header.recipNonce || !sameBytes(header.recipNonce.buffer, nonce))
    throw malformed(step, "does not answer our nonce");
  if (message.body.error) throw errorContent(step, message.body.error, what, "verified", by);
  const type = bodyType(message.body);
  if (!expected.includes(type)) throw malformed(step, `is a ${type} where ${expected.join(" or ")} belongs`);
  tx.serverNonce = header.senderNonce ? new Uint8Array(header.senderNonce.buffer) : undefined;
  return message;
}

/** The signature protection by the bootstrap certificate or the current one; a key that cannot sign a CMP message is a usage error. */
function signer(
  step: Step,
  creds: { certificatePem: string; keyPem: string } | { certificatePem: string; key: SigningKey },
  by: "bootstrap" | "current",
): Protector {
  const what = by === "bootstrap" ? "the bootstrap key" : "the current key";
  try {
    const protector =
      "key" in creds ? tokenSignatureProtector(creds.certificatePem, creds.key, what) : signatureProtector(creds, what);
    return { ...protector, by };
  } catch (err) {
    throw new CertRetrieverError(`${step} failed: ${describeCause(err)}; nothing was written`, {
      step,
      reason: "usage",
      facts: { protocol: CMP, signedBy: by },
      cause: err,
    });
  }
}

/** The one certificate response of an ip/cp. */
function certResponse(message: PKIMessage, reply: string): CertResponse {
  const rep = (message.body as unknown as Record<string, CertRepMessage | undefined>)[reply];
  const response = rep?.response[0];
  if (!response) throw malformed("submit-csr", `holds no certificate response (${bodyType(message.body)})`);
  return response;
}

/** The CA certificates, the issuing CA first: the pinned one, else the one that issued no other of them. */
function orderChain(certs: Uint8Array[], pin: string | undefined): Uint8Array[] {
  const parsed = certs.map((der) => new x509.X509Certificate(new Uint8Array(der)));
  const pinned = parsed.find((c) => pin !== undefined && sha256ColonHex(c.rawData).replace(/:/g, "") === pin);
  const first = pinned ?? parsed.find((c) => !parsed.some((o) => o !== c && o.issuer === c.subject)) ?? parsed[0]!;
  const chain = [first];
  for (let at = first; ; ) {
    const up = parsed.find((c) => !chain.includes(c) && c.subject === at.issuer);
    if (!up) break;
    chain.push(up);
    at = up;
  }
  return chain.map((c) => new Uint8Array(c.rawData));
}
