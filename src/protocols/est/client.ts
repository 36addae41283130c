/**
 * EST, Enrollment over Secure Transport (RFC 7030, with RFC 8951's clarifications): `GET
 * /cacerts`, `GET /csrattrs`, `POST /simpleenroll` (HTTP Basic and/or a client certificate) and
 * `POST /simplereenroll` (the current certificate over mutual TLS), under
 * `https://host[:port]/.well-known/est[/<label>]`.
 */
import { CertRetrieverError, describeCause } from "../../errors.js";
import { decodeBase64 } from "../../keys/base64.js";
import { sameBytes, sha256ColonHex } from "../../keys/fingerprint.js";
import { toPem } from "../../keys/key-types.js";
import { type CsrAttr, decodeCsrAttrs } from "../../keys/pkcs7.js";
import type { CryptoProvider } from "../../keys/provider.js";
import * as x509 from "../../keys/x509.js";
import { bodySummary, type HttpClient, type HttpReply, parseRetryAfter } from "../../transport/http.js";
import { waitBetweenRequests } from "../sessionless.js";
import type {
  CsrRequest,
  EnrollCapability,
  FetchedCa,
  Issued,
  LoginSource,
  ProtocolClient,
  ReenrollCapability,
  SessionlessCapability,
  SignRequest,
  TrustCapability,
} from "../types.js";
import { orderCaBag } from "./cacerts.js";
import { readCsrAttrs } from "./csrattrs.js";
import { EST, EST_TITLE } from "./name.js";
import { enrollError, estError, estFacts, pkcs7Reply } from "./replies.js";

/** Settings of the EST client. */
export interface EstOptions {
  /** `https://host[:port]/.well-known/est[/<label>]`. */
  baseUrl: URL;
  http: HttpClient;
  /**
   * The explicit trust anchors for the server's TLS certificate (RFC 7030 §4.1.1's "Explicit TA
   * database"), besides the platform CAs `http` was given: the stored CA chain of an enrolled
   * device. The system's CAs are not among them (an implicit TA database must be asked for, by
   * giving them as platform CAs).
   */
  anchors?: string[];
  /**
   * The pinned CA fingerprint (64 hex digits, upper case). Without anchors, /cacerts is then fetched
   * provisionally (unverified TLS), and only the chain the pin vouches for (`trustChain`) is
   * trusted; it also chooses among several chains.
   */
  pin?: string;
  /** CA certificates for the platform's TLS were given (`http` has them): the server is checked against them from the start. */
  platformCa: boolean;
  /** Verifies the signatures that order /cacerts. */
  crypto: CryptoProvider;
  /** `http` has a client certificate (a bootstrap certificate). */
  clientCert: boolean;
  /** Aborts a wait for approval. */
  signal?: AbortSignal;
}

/** The least wait between two submissions of a request the server holds for approval. */
const MIN_RETRY_MS = 1_000;

/** An EST server, behind the capabilities it offers: no login (sessionless), trust, enroll and re-enroll. */
export class EstClient implements ProtocolClient {
  readonly name = EST;
  readonly title = EST_TITLE;
  readonly sessionless: SessionlessCapability = { attach: (login) => this.attach(login) };
  readonly trust: TrustCapability = { fetchCa: () => this.fetchCa(), trustChain: (chain) => this.trustChain(chain) };
  readonly enroll: EnrollCapability = {
    defaultKeyType: "ec-p256",
    // The CA names the certificate after the CSR's subject (the server may say otherwise in /csrattrs).
    commonNames: (id) => [id],
    noBinding: "keeps no device records to tie it to",
    unstored: { next: "an EST server keeps nothing to undo for it, and the next run enrolls again", journal: false },
    prepare: () => this.csrAttributes(),
    submit: (_session, req) => this.submit(req),
  };
  readonly reenroll: ReenrollCapability = {
    submit: (_session, req) => this.submit(req, req.current),
    keptNames: (asked) =>
      `a renewal keeps the names the certificate has (RFC 7030 §4.2.2), not ${asked.join(", ")}; a forced enrollment with the bootstrap credentials asks for new ones`,
  };
  /** The user and the password's reader for HTTP Basic; none: a bootstrap client certificate alone authenticates. */
  private basic: { username: () => Promise<string>; password: () => Promise<string> } | undefined;
  private username = "";
  /** The client for requests after /cacerts: its TLS trust includes the CA certificates a pin or an anchor vouched for. */
  private trusted: HttpClient;

  constructor(private readonly opts: EstOptions) {
    this.trusted = opts.http.withTls({ ca: opts.anchors ?? [], system: false });
  }

  /** EST has no session: the credentials go with the enrollment request, and the user and password are read only if it is sent. */
  private attach(login: LoginSource | undefined): string {
    this.basic = login && {
      username: async () => (typeof login.username === "string" ? login.username : login.username()),
      password: login.password,
    };
    const how = login ? "HTTP Basic" : "the client certificate";
    return `EST keeps no session: each enrollment request carries its credentials (${how}; the current certificate when renewing)`;
  }

  /**
   * `GET /cacerts` (§4.1): the CA certificates, as a certs-only PKCS#7 in base64, put in order (see
   * {@link orderCaBag}). With only a pin to trust, the fetch is made without verifying the server
   * and without a client certificate (§4.1.1's provisional TLS); nothing from it is trusted until
   * the caller has checked the chain against the pin and calls `trustChain`.
   */
  private async fetchCa(): Promise<FetchedCa> {
    const provisional = !this.opts.anchors?.length && !this.opts.platformCa && this.opts.pin !== undefined;
    const client = provisional
      ? this.opts.http.withTls({ verify: false, cert: undefined, key: undefined })
      : this.trusted;
    const reply = await client.json("fetch-ca", this.url("cacerts"), {
      method: "GET",
      headers: { accept: "application/pkcs7-mime" },
    });
    if (reply.status !== 200) throw estError("fetch-ca", reply, "fetching the CA certificates (/cacerts)");
    const certs = pkcs7Reply("fetch-ca", reply, "the CA certificates").map(
      (der) => new x509.X509Certificate(new Uint8Array(der)),
    );
    const [ca, ...chain] = await orderCaBag(certs, this.opts.crypto, (c) => this.known(c));
    const vouchedBy = provisional
      ? undefined
      : this.opts.anchors?.length
        ? "the stored CA chain vouched for the server"
        : "the platform's CA certificates vouched for the server";
    return { der: new Uint8Array(ca!.rawData), chain: chain.map((c) => new Uint8Array(c.rawData)), vouchedBy };
  }

  /** After the caller checked the chain (pin, signatures): the server's TLS certificate may chain to it from now on. */
  private trustChain(chain: Uint8Array[]): void {
    this.trusted = this.opts.http.withTls({
      ca: [...(this.opts.anchors ?? []), ...chain.map((der) => toPem(der, "CERTIFICATE"))],
      system: false,
    });
  }

  /** Whether a certificate is pinned or among the anchors: it decides between several chains in /cacerts. */
  private known(cert: x509.X509Certificate): boolean {
    const pem = toPem(cert.rawData, "CERTIFICATE").replace(/\s/g, "");
    return (
      (this.opts.pin !== undefined && sha256ColonHex(cert.rawData).replace(/:/g, "") === this.opts.pin) ||
      (this.opts.anchors ?? []).some((a) => a.replace(/\s/g, "") === pem)
    );
  }

  /** `GET /csrattrs` (§4.5): what the server wants in the CSR; none (204, 404) is fine, and a failure only a note. */
  private async csrAttributes(): Promise<CsrRequest | undefined> {
    let reply: HttpReply;
    try {
      reply = await this.trusted.json("fetch-ca", this.url("csrattrs"), {
        method: "GET",
        headers: { accept: "application/csrattrs" },
      });
    } catch (err) {
      return {
        notes: [
          `the EST server's CSR attributes could not be read (${describeCause(err)}); the CSR is made without them`,
        ],
      };
    }
    if (reply.status === 204 || reply.status === 404) return undefined;
    if (reply.status !== 200)
      return {
        notes: [
          `the EST server answered /csrattrs with HTTP ${reply.status} (${bodySummary(reply)}); the CSR is made without its attributes`,
        ],
      };
    const der = decodeBase64(reply.text.replace(/\s/g, ""));
    let attrs: CsrAttr[] | undefined;
    try {
      attrs = der ? decodeCsrAttrs(der) : undefined;
    } catch {
      attrs = undefined;
    }
    return attrs
      ? readCsrAttrs(attrs)
      : {
          notes: [
            `the EST server's CSR attributes (${bodySummary(reply)}) are not a base64 CsrAttrs; the CSR is made without them`,
          ],
        };
  }

  /**
   * `POST /simpleenroll` (§4.2.1), or with the current credentials `POST /simplereenroll`
   * (§4.2.2) over mutual TLS. A 202 (manual approval) is answered by sending the same request
   * again after Retry-After (§4.2.3), until the run's deadline.
   */
  private async submit(req: SignRequest, current?: { certificatePem: string; keyPem: string }): Promise<Issued> {
    const client = current ? this.trusted.withTls({ cert: current.certificatePem, key: current.keyPem }) : this.trusted;
    const headers: Record<string, string> = { accept: "application/pkcs7-mime" };
    if (!current && this.basic) {
      this.username = await this.basic.username();
      const password = await this.basic.password();
      headers.authorization = `Basic ${Buffer.from(`${this.username}:${password}`, "utf8").toString("base64")}`;
    }
    // RFC 8951 §3.1: base64 as RFC 4648 has it, one line (receivers must take line breaks, but strongSwan < 5.9.11 does not).
    const body = Buffer.from(req.csrDer).toString("base64");
    const url = this.url(current ? "simplereenroll" : "simpleenroll");
    let pending: HttpReply | undefined;
    for (;;) {
      const reply = await client
        .json("submit-csr", url, { method: "POST", headers, text: body, contentType: "application/pkcs10", once: true })
        .catch((err: unknown) => {
          throw pending ? stillPending(pending, err) : err;
        });
      if (reply.status === 200) return { der: issuedCertificate(reply, req.csrDer) };
      if (reply.status !== 202)
        throw enrollError(
          reply,
          current !== undefined,
          headers.authorization ? this.username : "",
          this.opts.clientCert,
        );
      pending = reply;
      await this.waitForApproval(reply, client);
    }
  }

  /** Waits as a 202's Retry-After says (a minute when it says nothing), or fails (`deadline`) if that ends past the deadline. */
  private async waitForApproval(reply: HttpReply, client: HttpClient): Promise<void> {
    // A Retry-After of 0 or in the past would resend the request (and the password) in a tight loop.
    const waitMs = Math.max(parseRetryAfter(reply.retryAfter) ?? 60_000, MIN_RETRY_MS);
    if (Date.now() + waitMs >= client.deadline) {
      throw new CertRetrieverError(
        `submit-csr failed: the EST server has not yet approved the request (HTTP 202, next try in ${inWords(waitMs)}), and the deadline comes first; nothing was written`,
        { step: "submit-csr", reason: "deadline", facts: { ...estFacts(reply), pendingApproval: true } },
      );
    }
    await waitBetweenRequests(
      client,
      { step: "submit-csr", what: "the EST server to approve the request (HTTP 202)" },
      waitMs,
      this.opts.signal,
    );
  }

  private url(operation: string): URL {
    return new URL(`${this.opts.baseUrl.href.replace(/\/+$/, "")}/${operation}`);
  }
}

/**
 * A try after a 202 that the deadline cut short: the server holds the request (§4.2.3), so it is
 * the approval that did not come in time, not a request that may have been lost; other failures
 * stay as they are.
 */
function stillPending(pending: HttpReply, err: unknown): unknown {
  if (!(err instanceof CertRetrieverError) || !err.facts.deadlinePassed) return err;
  return new CertRetrieverError(
    "submit-csr failed: the EST server has not yet approved the request (HTTP 202), and the deadline passed while asking again; nothing was written",
    { step: "submit-csr", reason: "deadline", facts: { ...estFacts(pending), pendingApproval: true } },
  );
}

/** A wait in words: seconds, minutes, hours or days. */
function inWords(ms: number): string {
  const s = Math.ceil(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return s < 172_800 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86_400)} days`;
}

/** The issued certificate in a 200 reply: the one with the CSR's key (servers may add the chain). */
function issuedCertificate(reply: HttpReply, csrDer: Uint8Array): Uint8Array {
  const certs = pkcs7Reply("submit-csr", reply, "the issued certificate");
  const spki = new x509.Pkcs10CertificateRequest(new Uint8Array(csrDer)).publicKey.rawData;
  return (
    certs.find((der) => sameBytes(new x509.X509Certificate(new Uint8Array(der)).publicKey.rawData, spki)) ?? certs[0]!
  );
}
