/**
 * SCEP, the Simple Certificate Enrolment Protocol (RFC 8894): `GetCACaps`, `GetCACert`, and
 * `PKIOperation` carrying a PKCSReq (the challenge password in the CSR), a RenewalReq signed by
 * the current certificate, or a CertPoll while the server answers PENDING; each as a signed and
 * encrypted pkiMessage, by POST where the server offers it, else base64 in a GET.
 */

import { createPrivateKey, type KeyObject } from "node:crypto";
import * as asn1js from "asn1js";
import { CertRetrieverError, describeCause } from "../../errors.js";
import { sameBytes } from "../../keys/fingerprint.js";
import { certsFromPkcs7 } from "../../keys/pkcs7.js";
import type { CryptoProvider } from "../../keys/provider.js";
import * as x509 from "../../keys/x509.js";
import type { HttpBytesReply, HttpClient } from "../../transport/http.js";
import { waitBetweenRequests } from "../sessionless.js";
import type {
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
import { checkStoredChain, readCaCerts, type ScepCa } from "./cacert.js";
import { chooseAlgorithms, parseCaps, type ScepAlgorithms } from "./caps.js";
import { envelope, openEnvelope } from "./envelope.js";
import { SCEP, SCEP_TITLE } from "./name.js";
import { failure, httpError, malformed } from "./replies.js";
import { keyRefused, nodeKey, nonce, selfSigned, transactionId, withChallenge } from "./request.js";
import { readMessage, type ScepAttributes, signedMessage } from "./signed.js";

/** Settings of the SCEP client. */
export interface ScepOptions {
  /** The server's URL, its path included (`http://host:port/scep`). */
  url: URL;
  http: HttpClient;
  crypto: CryptoProvider;
  /** GetCACert's `message`: the CA's name, where a server keeps several. */
  caName?: string;
  /** The pinned CA fingerprint; without it, the stored chain must hold the server's CA. */
  pin?: string;
  /** The stored CA chain (PEM). */
  storedCaPem?: string;
  /** The server's TLS is checked against the platform CAs given (https only): that vouches for its CA. */
  platformCa: boolean;
  /** DES, 3DES, SHA-1 and MD5 may be spoken, for a server that offers nothing better. */
  legacy: boolean;
  signal?: AbortSignal;
}

/** The messageType values (RFC 8894 §3.2.1.2). */
const MESSAGE = { certRep: "3", renewalReq: "17", pkcsReq: "19", certPoll: "20" } as const;

/** The first wait after PENDING, and the longest between two polls. */
const POLL_FIRST_MS = 2_000;
const POLL_MAX_MS = 60_000;

/** One transaction: what is asked, who signs, and what a reply must match. */
interface Transaction {
  csr: x509.Pkcs10CertificateRequest;
  signer: { cert: x509.X509Certificate; key: KeyObject };
  transactionID: string;
  renewing: boolean;
}

/** A SCEP server, behind the capabilities it offers: no login (sessionless), trust, enroll, and renew where it says `Renewal`. */
export class ScepClient implements ProtocolClient {
  readonly name = SCEP;
  readonly title = SCEP_TITLE;
  readonly sessionless: SessionlessCapability = { attach: (login) => this.attach(login) };
  readonly trust: TrustCapability = { fetchCa: () => this.fetchCa() };
  readonly enroll: EnrollCapability = {
    defaultKeyType: "rsa-2048",
    // The CA names the certificate after the CSR's subject.
    commonNames: (id) => [id],
    noBinding: "keeps no device records to tie it to",
    unstored: { next: "a SCEP server keeps nothing to undo for it, and the next run enrolls again", journal: false },
    prepare: async () => ({
      notes: [],
      refuseKeyType: (type) => (type.startsWith("rsa") ? undefined : keyRefused(`a ${type} key`)),
    }),
    submit: (_session, req) => this.submit(req),
  };
  private readonly renewal: ReenrollCapability = {
    submit: (_session, req) => this.submit(req, req.current),
    keptNames: (asked) =>
      `a SCEP renewal asks for the names of the certificate it renews, not ${asked.join(", ")}; a forced enrollment with the challenge password asks for new ones`,
  };
  private challenge: (() => Promise<string>) | undefined;
  private ca: ScepCa | undefined;
  private algorithms: ScepAlgorithms | undefined;

  constructor(private readonly opts: ScepOptions) {}

  /** Renewal by the current certificate, where GetCACaps said `Renewal`. */
  get reenroll(): ReenrollCapability | undefined {
    return this.algorithms?.renewal ? this.renewal : undefined;
  }

  private attach(login: LoginSource | undefined): string {
    this.challenge = login?.password;
    return `SCEP keeps no session: the enrollment request carries ${login ? "the challenge password" : "no challenge password"} (the current certificate signs a renewal)`;
  }

  /** GetCACert, then GetCACaps (§4.1, §4.2): the CA chain, the RA, and the algorithms to speak. */
  private async fetchCa(): Promise<FetchedCa> {
    const certs = await this.get("GetCACert", this.opts.caName);
    if (certs.status !== 200) throw httpError("fetch-ca", certs, "fetching the CA certificate (GetCACert)");
    this.ca = await readCaCerts(certs, this.opts.crypto);
    const https = this.opts.url.protocol === "https:";
    if (this.opts.pin === undefined && !(https && this.opts.platformCa)) {
      // Over plain http, --platform-ca vouches for nothing: the stored chain must, or a pin.
      if (this.opts.storedCaPem === undefined)
        throw new CertRetrieverError(
          "a first SCEP enrollment over plain http needs the CA pinned: the platform's CA certificates vouch only for an https server",
          { step: "usage", reason: "usage", facts: { field: "trustAnchor", protocol: SCEP } },
        );
      checkStoredChain(this.ca.chain, this.opts.storedCaPem);
    }
    const caps = await this.get("GetCACaps");
    // A server without GetCACaps offers nothing beyond RFC 8894's minimum (§3.5.1).
    this.algorithms = chooseAlgorithms(
      parseCaps(caps.status === 200 ? caps.body.toString("utf8") : ""),
      this.opts.legacy,
    );
    const [ca, ...chain] = this.ca.chain;
    const vouchedBy =
      this.opts.pin !== undefined
        ? undefined
        : https && this.opts.platformCa
          ? "the platform's CA certificates vouched for the server"
          : "it is the CA stored with the credentials";
    return { der: new Uint8Array(ca!.rawData), chain: chain.map((c) => new Uint8Array(c.rawData)), vouchedBy };
  }

  /**
   * PKCSReq (or RenewalReq signed by `current`), then CertPoll while the server answers PENDING,
   * until the run's deadline.
   */
  private async submit(req: SignRequest, current?: ReenrollRequest["current"]): Promise<Issued> {
    if (!req.key) throw new Error("SCEP needs the request's key pair");
    const key = await nodeKey(req.key);
    const challenge = await this.challengeFor(current !== undefined);
    const csr = await withChallenge(req.csrDer, req.key, challenge);
    const signer = current
      ? { cert: new x509.X509Certificate(current.certificatePem), key: createPrivateKey(current.keyPem) }
      : { cert: await selfSigned(csr, req.key), key };
    const tx: Transaction = { csr, signer, transactionID: transactionId(csr), renewing: current !== undefined };
    let reply = await this.send(tx, current ? MESSAGE.renewalReq : MESSAGE.pkcsReq, new Uint8Array(csr.rawData));
    for (let waitMs = POLL_FIRST_MS; reply === "pending"; waitMs = Math.min(waitMs * 2, POLL_MAX_MS)) {
      await this.waitToPoll(waitMs);
      reply = await this.send(tx, MESSAGE.certPoll, this.issuerAndSubject(csr)).catch((err: unknown) => {
        // The server holds the request: the deadline cut the poll short, not a request that may have been lost.
        throw err instanceof CertRetrieverError && err.facts.deadlinePassed ? stillPending() : err;
      });
    }
    return reply;
  }

  /** The challenge password; a renewal, which the current certificate authenticates (§3.3.1.2), goes without one if none is given. */
  private async challengeFor(renewing: boolean): Promise<string | undefined> {
    try {
      return await this.challenge?.();
    } catch (err) {
      if (renewing && err instanceof CertRetrieverError && err.reason === "missing-credentials") return undefined;
      throw err;
    }
  }

  /** CertPoll's content (§3.3.3): the CA's name and the request's subject. */
  private issuerAndSubject(csr: x509.Pkcs10CertificateRequest): Uint8Array {
    const ca = this.ca!.chain[0]!;
    const names = [ca.subjectName, csr.subjectName].map((n) => asn1js.fromBER(n.toArrayBuffer()).result);
    return new Uint8Array(new asn1js.Sequence({ value: names }).toBER());
  }

  /** One pkiMessage and its CertRep: the certificate, or "pending". */
  private async send(tx: Transaction, messageType: string, content: Uint8Array): Promise<Issued | "pending"> {
    const { cipher, digest } = this.algorithms!;
    const attrs: ScepAttributes = { messageType, transactionID: tx.transactionID, senderNonce: nonce() };
    const message = signedMessage(envelope(content, this.ca!.recipient, cipher), attrs, { ...tx.signer, digest });
    const reply = await this.pkiOperation(message);
    if (reply.status !== 200)
      throw httpError(
        "submit-csr",
        reply,
        tx.renewing ? "the SCEP server refused the renewal" : "the SCEP server refused the enrollment",
        "csr-refused",
      );
    let rep: ReturnType<typeof readMessage>;
    try {
      rep = readMessage(new Uint8Array(reply.body), [this.ca!.recipient, this.ca!.chain[0]!]);
    } catch (err) {
      throw malformed("submit-csr", reply, `a CertRep pkiMessage signed by the CA or RA (${describeCause(err)})`);
    }
    const expected = { messageType: MESSAGE.certRep, transactionID: tx.transactionID };
    if (rep.attrs.messageType !== expected.messageType || rep.attrs.transactionID !== expected.transactionID)
      throw malformed(
        "submit-csr",
        reply,
        `a CertRep (messageType 3) for transaction ${tx.transactionID}, not messageType '${rep.attrs.messageType}' for '${rep.attrs.transactionID}'`,
      );
    if (!rep.attrs.recipientNonce || !sameBytes(rep.attrs.recipientNonce, attrs.senderNonce!))
      throw malformed(
        "submit-csr",
        reply,
        "a CertRep whose recipientNonce is the request's senderNonce (§3.2.1.5): it may be a replayed answer",
      );
    if (rep.attrs.pkiStatus === "3") return "pending";
    if (rep.attrs.pkiStatus === "2") throw failure(rep.attrs.failInfo, tx.renewing);
    if (rep.attrs.pkiStatus !== "0")
      throw malformed("submit-csr", reply, `pkiStatus SUCCESS, FAILURE or PENDING, not '${rep.attrs.pkiStatus}'`);
    return { der: this.issued(reply, rep.content, tx) };
  }

  /** The issued certificate in a SUCCESS CertRep: the envelope opened with the signer's key, the certificate with the CSR's key. */
  private issued(reply: HttpBytesReply, content: Uint8Array, tx: Transaction): Uint8Array {
    let certs: Uint8Array[];
    try {
      certs = certsFromPkcs7(openEnvelope(content, tx.signer.cert, tx.signer.key).content);
    } catch (err) {
      throw malformed(
        "submit-csr",
        reply,
        `the certificate in an envelope for the request's key (${describeCause(err)})`,
      );
    }
    const spki = tx.csr.publicKey.rawData;
    const mine = certs.find((der) => sameBytes(new x509.X509Certificate(new Uint8Array(der)).publicKey.rawData, spki));
    if (!mine) throw malformed("submit-csr", reply, "a certificate for the request's key among those of the CertRep");
    return mine;
  }

  /** PKIOperation: POST where GetCACaps said POSTPKIOperation (§4.3), else GET with the message in base64. */
  private pkiOperation(message: Uint8Array): Promise<HttpBytesReply> {
    const init = { once: true, peer: "the SCEP server", headers: { accept: "*/*" } } as const;
    if (this.algorithms!.post)
      return this.opts.http.request("submit-csr", this.url("PKIOperation"), {
        ...init,
        method: "POST",
        bytes: message,
        contentType: "application/x-pki-message",
      });
    const url = this.url("PKIOperation", Buffer.from(message).toString("base64"));
    return this.opts.http.request("submit-csr", url, { ...init, method: "GET" });
  }

  private get(operation: string, message?: string): Promise<HttpBytesReply> {
    return this.opts.http.request("fetch-ca", this.url(operation, message), {
      method: "GET",
      peer: "the SCEP server",
      headers: { accept: "*/*" },
    });
  }

  private url(operation: string, message?: string): URL {
    const url = new URL(this.opts.url.href);
    url.searchParams.set("operation", operation);
    if (message !== undefined) url.searchParams.set("message", message);
    return url;
  }

  /** Waits `ms` before the next CertPoll, or fails (`deadline`) if that ends past the deadline. */
  private async waitToPoll(ms: number): Promise<void> {
    if (Date.now() + ms >= this.opts.http.deadline) throw stillPending();
    await waitBetweenRequests(
      this.opts.http,
      { step: "submit-csr", what: "the SCEP server to approve the request (PENDING)" },
      ms,
      this.opts.signal,
    );
  }
}

/** The deadline of a request the server holds for approval. */
function stillPending(): CertRetrieverError {
  return new CertRetrieverError(
    "submit-csr failed: the SCEP server holds the request for approval (pkiStatus PENDING), and the deadline comes before it answers; nothing was written",
    { step: "submit-csr", reason: "deadline", facts: { protocol: SCEP, pendingApproval: true } },
  );
}
