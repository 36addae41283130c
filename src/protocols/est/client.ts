/**
 * EST, Enrollment over Secure Transport (RFC 7030, with RFC 8951's clarifications): `GET
 * /cacerts`, `GET /csrattrs`, `POST /simpleenroll` (HTTP Basic and/or a client certificate) and
 * `POST /simplereenroll` (the current certificate over mutual TLS), under
 * `https://host[:port]/.well-known/est[/<label>]`.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { sameBytes, sha256ColonHex } from "../../keys/fingerprint.js";
import { isKeyType, toPem, type KeyType } from "../../keys/key-types.js";
import { certsFromPkcs7, decodeCsrAttrs, integerOf, oidOf, OIDS, type CsrAttr } from "../../keys/pkcs7.js";
import type { CryptoProvider } from "../../keys/provider.js";
import * as x509 from "../../keys/x509.js";
import { CertRetrieverError, describeCause, usageError, type Reason, type Step } from "../../errors.js";
import { decodeBase64 } from "../../keys/base64.js";
import { parseRetryAfter, platformSays, replyFacts, type HttpClient, type HttpReply } from "../../transport/http.js";
import type { LoginSource } from "../../flows/authenticate.js";
import type { FetchedCa, Issued, PlatformApi, PlatformClient, Session, SignRequest } from "../types.js";

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
   * provisionally (unverified TLS), and only the chain the pin vouches for ({@link trustCa}) is
   * trusted; it also chooses among several chains.
   */
  pin?: string;
  /** CA certificates for the platform's TLS were given (`http` has them): the server is checked against them from the start. */
  platformCa: boolean;
  /** Verifies the signatures that order /cacerts. */
  crypto: CryptoProvider;
  /** Send HTTP Basic with /simpleenroll (false: a bootstrap client certificate alone authenticates). */
  basic: boolean;
  /** `http` has a client certificate (a bootstrap certificate). */
  clientCert: boolean;
  /** Aborts a wait for approval. */
  signal?: AbortSignal;
}

/** The least wait between two submissions of a request the server holds for approval. */
const MIN_RETRY_MS = 1_000;

/** The path prefix every EST URL has (RFC 7030 §3.2.2). */
export const EST_PREFIX = "/.well-known/est";

/**
 * The EST base URL of a `--platform` URL: the prefix is added to a bare host; a path must be the
 * prefix, optionally with one CA label. Throws a usage error for anything else, or for plain http
 * (EST runs over TLS only, §3.3).
 */
export function estBaseUrl(url: URL): URL {
  if (url.protocol !== "https:") throw usageError(`EST runs over TLS only (RFC 7030 §3.3): ${url.origin} is plain http`, "platform");
  const path = url.pathname.replace(/\/+$/, "");
  if (path === "") return new URL(`${url.origin}${EST_PREFIX}`);
  if (/^\/\.well-known\/est(\/[^/]+)?$/.test(path)) return new URL(`${url.origin}${path}`);
  throw usageError(`the EST URL's path must be ${EST_PREFIX} or ${EST_PREFIX}/<label> (RFC 7030 §3.2.2), not ${url.pathname}`, "platform");
}

/** The EST client behind the platform interface. */
export class EstClient implements PlatformClient {
  private username = "";
  private password: (() => Promise<string>) | undefined;
  /** The client for requests after /cacerts: its TLS trust includes the CA certificates a pin or an anchor vouched for. */
  private trusted: HttpClient;
  private attrs: { keyType?: KeyType; notes: string[] } = { notes: [] };

  constructor(private readonly opts: EstOptions) {
    this.trusted = opts.http.withTls({ ca: opts.anchors ?? [], system: false });
  }

  api(): PlatformApi {
    return "est";
  }

  /** EST has no session: the credentials go with the enrollment request, and the password is read only if it is sent. */
  async authenticate(username: string, password: string): Promise<Session> {
    this.username = username;
    this.password = async () => password;
    return { jwt: "" };
  }

  /** Like {@link authenticate}, but reads the user and password only when a request needs them. */
  async signIn(source: LoginSource): Promise<{ session: Session; detail: string }> {
    this.password = async () => {
      this.username = typeof source.username === "string" ? source.username : await source.username();
      return source.password();
    };
    const how = this.opts.basic ? "HTTP Basic" : "the client certificate";
    return { session: { jwt: "" }, detail: `EST keeps no session: each enrollment request carries its credentials (${how}; the current certificate when renewing)` };
  }

  /**
   * `GET /cacerts` (§4.1): the CA certificates, as a certs-only PKCS#7 in base64, put in order (see
   * {@link orderCaBag}). With only a pin to trust, the fetch is made without verifying the server
   * and without a client certificate (§4.1.1's provisional TLS); nothing from it is trusted until
   * the caller has checked the chain against the pin and calls {@link trustCa}.
   */
  async fetchCa(_session: Session): Promise<FetchedCa> {
    const provisional = !this.opts.anchors?.length && !this.opts.platformCa && this.opts.pin !== undefined;
    const client = provisional ? this.opts.http.withTls({ verify: false, cert: undefined, key: undefined }) : this.trusted;
    const reply = await client.json("fetch-ca", this.url("cacerts"), { method: "GET", headers: { accept: "application/pkcs7-mime" } });
    if (reply.status !== 200) throw estError("fetch-ca", reply, "fetching the CA certificates (/cacerts)");
    const certs = pkcs7Reply("fetch-ca", reply, "the CA certificates").map((der) => new x509.X509Certificate(new Uint8Array(der)));
    const [ca, ...chain] = await orderCaBag(certs, this.opts.crypto, (c) => this.known(c));
    const vouchedBy = provisional ? undefined : this.opts.anchors?.length ? "the stored CA chain vouched for the server" : "the platform's CA certificates vouched for the server";
    return { der: new Uint8Array(ca!.rawData), chain: chain.map((c) => new Uint8Array(c.rawData)), vouchedBy };
  }

  /** After the caller checked the chain (pin, signatures): the server's TLS certificate may chain to it from now on. */
  trustCa(chain: Uint8Array[]): void {
    this.trusted = this.opts.http.withTls({ ca: [...(this.opts.anchors ?? []), ...chain.map((der) => toPem(der, "CERTIFICATE"))], system: false });
  }

  /** Whether a certificate is pinned or among the anchors: it decides between several chains in /cacerts. */
  private known(cert: x509.X509Certificate): boolean {
    const pem = toPem(cert.rawData, "CERTIFICATE").replace(/\s/g, "");
    return (this.opts.pin !== undefined && sha256ColonHex(cert.rawData).replace(/:/g, "") === this.opts.pin) || (this.opts.anchors ?? []).some((a) => a.replace(/\s/g, "") === pem);
  }

  /** `GET /csrattrs` (§4.5): what the server wants in the CSR; none (204, 404) is fine, and a failure only a note. */
  async prepare(_session: Session, _deviceId: string): Promise<void> {
    let reply: HttpReply;
    try {
      reply = await this.trusted.json("fetch-ca", this.url("csrattrs"), { method: "GET", headers: { accept: "application/csrattrs" } });
    } catch (err) {
      this.attrs = { notes: [`the EST server's CSR attributes could not be read (${describeCause(err)}); the CSR is made without them`] };
      return;
    }
    if (reply.status === 204 || reply.status === 404) return;
    if (reply.status !== 200) {
      this.attrs = { notes: [`the EST server answered /csrattrs with HTTP ${reply.status} (${platformSays(reply)}); the CSR is made without its attributes`] };
      return;
    }
    const der = decodeBase64(reply.text.replace(/\s/g, ""));
    let attrs: CsrAttr[] | undefined;
    try {
      attrs = der ? decodeCsrAttrs(der) : undefined;
    } catch {
      attrs = undefined;
    }
    this.attrs = attrs ? readCsrAttrs(attrs) : { notes: [`the EST server's CSR attributes (${platformSays(reply)}) are not a base64 CsrAttrs; the CSR is made without them`] };
  }

  csrAttributes(): { keyType?: KeyType; notes: string[] } {
    return this.attrs;
  }

  /**
   * `POST /simpleenroll` (§4.2.1), or with the current credentials `POST /simplereenroll`
   * (§4.2.2) over mutual TLS. A 202 (manual approval) is answered by sending the same request
   * again after Retry-After (§4.2.3), until the run's deadline.
   */
  async submitCsr(_session: Session, req: SignRequest): Promise<Issued> {
    const renewing = req.current !== undefined;
    const client = req.current ? this.trusted.withTls({ cert: req.current.certificatePem, key: req.current.keyPem }) : this.trusted;
    const headers: Record<string, string> = { accept: "application/pkcs7-mime" };
    if (!renewing && this.opts.basic && this.password) {
      const password = await this.password();
      headers.authorization = `Basic ${Buffer.from(`${this.username}:${password}`, "utf8").toString("base64")}`;
    }
    // RFC 8951 §3.1: base64 as RFC 4648 has it, one line (receivers must take line breaks, but strongSwan < 5.9.11 does not).
    const body = Buffer.from(req.csrDer).toString("base64");
    const url = this.url(renewing ? "simplereenroll" : "simpleenroll");
    for (;;) {
      const reply = await client.json("submit-csr", url, { method: "POST", headers, text: body, contentType: "application/pkcs10", once: true });
      if (reply.status === 200) return { der: issuedCertificate(reply, req.csrDer) };
      if (reply.status !== 202) throw enrollError(reply, renewing, headers.authorization ? this.username : "", this.opts.clientCert);
      await this.waitForApproval(reply, client);
    }
  }

  /** Waits as a 202's Retry-After says (a minute when it says nothing), or fails (`deadline`, exit 75) if that ends past the deadline. */
  private async waitForApproval(reply: HttpReply, client: HttpClient): Promise<void> {
    // A Retry-After of 0 or in the past would resend the request (and the password) in a tight loop.
    const waitMs = Math.max(parseRetryAfter(reply.retryAfter) ?? 60_000, MIN_RETRY_MS);
    if (Date.now() + waitMs >= client.deadline) {
      throw new CertRetrieverError(
        `submit-csr failed: the EST server has not yet approved the request (HTTP 202, next try in ${Math.ceil(waitMs / 1000)} s), and the deadline comes first; nothing was written`,
        { step: "submit-csr", reason: "deadline", facts: { ...estFacts(reply), pendingApproval: true } },
      );
    }
    await sleep(waitMs, undefined, { signal: this.opts.signal }).catch(() => {
      throw this.opts.signal?.reason instanceof CertRetrieverError ? this.opts.signal.reason : new CertRetrieverError("submit-csr failed: interrupted", { step: "submit-csr", reason: "interrupted" });
    });
  }

  private url(operation: string): URL {
    return new URL(`${this.opts.baseUrl.href.replace(/\/+$/, "")}/${operation}`);
  }
}

/** The certificates of a 200 reply: a base64 certs-only PKCS#7 (§4.1.3; RFC 8951: base64 whatever the headers say). */
function pkcs7Reply(step: Step, reply: HttpReply, what: string): Uint8Array[] {
  const type = reply.contentType.split(";")[0]!.trim().toLowerCase();
  if (type !== "application/pkcs7-mime") throw malformedEst(step, reply, `${what} as application/pkcs7-mime, not ${type ? `'${type}'` : "a reply without a Content-Type"}`);
  const der = decodeBase64(reply.text.replace(/[ \t]/g, "").trim());
  if (!der) throw malformedEst(step, reply, `${what} in base64`);
  try {
    const certs = certsFromPkcs7(der);
    for (const cert of certs) new x509.X509Certificate(new Uint8Array(cert)); // each must parse as X.509
    return certs;
  } catch (err) {
    throw malformedEst(step, reply, `${what} as a certs-only PKCS#7 (${describeCause(err)})`);
  }
}

/** The issued certificate in a 200 reply: the one with the CSR's key (servers may add the chain). */
function issuedCertificate(reply: HttpReply, csrDer: Uint8Array): Uint8Array {
  const certs = pkcs7Reply("submit-csr", reply, "the issued certificate");
  const spki = new x509.Pkcs10CertificateRequest(new Uint8Array(csrDer)).publicKey.rawData;
  return certs.find((der) => sameBytes(new x509.X509Certificate(new Uint8Array(der)).publicKey.rawData, spki)) ?? certs[0]!;
}

/**
 * The CA certificates of /cacerts in order: the CA that issues devices first, then its issuers up
 * to a root. Certificates that are no CA (a server's own, say) are left out; an issuer is one whose
 * key verifies the signature, a self-signed one preferred (a root changing over sends the new root
 * cross-signed by the old one too). The lowest CA is the one that issues no other; where there are
 * several such chains, the one holding a certificate `known` (pinned, or stored) is taken, and
 * otherwise one device cannot choose.
 */
export async function orderCaBag(certs: x509.X509Certificate[], crypto: CryptoProvider, known: (c: x509.X509Certificate) => boolean): Promise<x509.X509Certificate[]> {
  const cas = certs.filter((c, i) => c.getExtension(x509.BasicConstraintsExtension)?.ca && certs.findIndex((d) => sameBytes(d.rawData, c.rawData)) === i);
  const selfSigned = (c: x509.X509Certificate) => c.subject === c.issuer;
  const signs = new Map<x509.X509Certificate, x509.X509Certificate[]>();
  for (const cert of cas) {
    const issuers: x509.X509Certificate[] = [];
    for (const candidate of cas) {
      if (candidate === cert ? !selfSigned(cert) : candidate.subject !== cert.issuer) continue;
      if (await cert.verify({ publicKey: candidate.publicKey, signatureOnly: true }, crypto).catch(() => false)) issuers.push(candidate);
    }
    signs.set(cert, issuers.sort((a, b) => Number(selfSigned(b)) - Number(selfSigned(a))));
  }
  const issuersOf = (c: x509.X509Certificate) => (signs.get(c) ?? []).filter((i) => i !== c);
  const lowest = cas.filter((c) => !cas.some((other) => other !== c && issuersOf(other).includes(c)));
  const chains = lowest.map((low) => {
    const chain = [low];
    // Up to a self-signed certificate: a root's cross-signed twin (same name and key) verifies it too.
    for (let at = low; !selfSigned(at); ) {
      const next = issuersOf(at)[0];
      if (!next || chain.includes(next)) break;
      chain.push(next);
      at = next;
    }
    return chain;
  });
  const vouched = chains.filter((chain) => chain.some(known));
  const chosen = chains.length === 1 ? chains[0] : vouched.length === 1 ? vouched[0] : undefined;
  if (!chosen) {
    const what = chains.length === 0 ? "no CA certificate" : `${chains.length} separate CA chains (${chains.map((c) => `'${c[0]!.subject}'`).join(", ")}), none of them singled out by a pin or the stored chain`;
    throw new CertRetrieverError(`fetch-ca failed: the EST server's /cacerts holds ${what}, and one device needs exactly one`, { step: "fetch-ca", reason: "not-supported", facts: { api: "est" } });
  }
  return chosen;
}

/** What cert-retriever makes of /csrattrs: the key type asked for, and notes on the rest. */
export function readCsrAttrs(attrs: CsrAttr[]): { keyType?: KeyType; notes: string[] } {
  let keyType: KeyType | undefined;
  const notes: string[] = [];
  for (const attr of attrs) {
    if ("oid" in attr) {
      if (attr.oid === OIDS.rsaEncryption) keyType ??= "rsa-2048";
      else if (attr.oid === OIDS.ecdsaWithSHA384) keyType ??= "ec-p384";
      else if (attr.oid === OIDS.ecdsaWithSHA256 || attr.oid === OIDS.ecPublicKey) keyType ??= "ec-p256";
      else if (attr.oid === OIDS.challengePassword) notes.push("the EST server asks for the TLS channel binding (challengePassword, RFC 7030 §3.5), which cert-retriever does not send");
      else notes.push(`the EST server asks for ${attr.oid} in the CSR, which cert-retriever does not add`);
      continue;
    }
    if (attr.attribute === OIDS.rsaEncryption) {
      // The newer form (RFC 9908) gives the modulus size as an INTEGER.
      const bits = attr.values.map(integerOf)[0];
      const asked = bits === undefined ? "rsa-2048" : (`rsa-${bits}` as KeyType);
      if (isKeyType(asked)) keyType = asked;
      else notes.push(`the EST server asks for an RSA key of ${bits} bits, which cert-retriever cannot make`);
    } else if (attr.attribute === OIDS.ecPublicKey) {
      const curve = attr.values.map(oidOf)[0];
      const asked = curve === OIDS.secp384r1 ? "ec-p384" : curve === OIDS.secp256r1 ? "ec-p256" : undefined;
      if (asked) keyType = asked;
      else notes.push(`the EST server asks for an EC key on curve ${curve ?? "(unreadable)"}, which cert-retriever cannot make`);
    } else if (attr.attribute === OIDS.extensionRequest) {
      const wanted = attr.values.map((v) => oidOf(v) ?? "(unreadable)");
      notes.push(`the EST server asks for the extension${wanted.length === 1 ? "" : "s"} ${wanted.join(", ")} in the CSR, which cert-retriever does not add`);
    } else {
      notes.push(`the EST server asks for the attribute ${attr.attribute} in the CSR, which cert-retriever does not add`);
    }
  }
  return { keyType, notes };
}

/** The error for a refused enrollment request. */
function enrollError(reply: HttpReply, renewing: boolean, username: string, withCert: boolean): CertRetrieverError {
  const says = platformSays(reply);
  const facts = { ...estFacts(reply), renewing };
  if (reply.status === 401 || reply.status === 403) {
    const what = renewing
      ? `the EST server refused to re-enroll with the current certificate (HTTP ${reply.status}: ${says})`
      : username
        ? `the EST server refused user '${username}' or the password${withCert ? ", or the client certificate" : ""} (HTTP ${reply.status}: ${says})`
        : `the EST server refused the client certificate (HTTP ${reply.status}: ${says})`;
    const reason: Reason = renewing || !username ? (reply.status === 401 ? "client-cert-required" : "permission-denied") : reply.status === 401 ? "auth-refused" : "permission-denied";
    return new CertRetrieverError(`submit-csr failed: ${what}; nothing was written`, { step: "submit-csr", reason, facts });
  }
  return estError("submit-csr", reply, renewing ? "the EST server refused the re-enrollment" : "the EST server refused the enrollment", "csr-refused");
}

/** The error for a non-2xx reply: a 4xx from the EST server is `reason`; what is not EST at all says so. */
function estError(step: Step, reply: HttpReply, doing: string, reason: Reason = "platform-error"): CertRetrieverError {
  if (reply.status === 404 || reply.status === 405 || reply.status === 501) {
    return new CertRetrieverError(`${step} failed: ${doing}: HTTP ${reply.status} (${platformSays(reply)}); is ${reply.request ?? "the URL"} an EST server's (…/.well-known/est[/<label>])?`, {
      step,
      reason: "not-a-dojot-platform",
      facts: estFacts(reply),
    });
  }
  return new CertRetrieverError(`${step} failed: ${doing}: HTTP ${reply.status}: ${platformSays(reply)}`, { step, reason: reply.status >= 500 ? "platform-error" : reason, facts: estFacts(reply) });
}

function malformedEst(step: Step, reply: HttpReply, expected: string): CertRetrieverError {
  return new CertRetrieverError(`${step} failed: the EST server's reply (HTTP ${reply.status}) is not what RFC 7030 promises: expected ${expected}; nothing was written`, {
    step,
    reason: "reply-malformed",
    facts: estFacts(reply),
  });
}

/** A reply's facts, saying they are an EST server's (the CLI's hints differ). */
function estFacts(reply: HttpReply): { status: number; platformMessage: string; api: "est" } {
  return { ...replyFacts(reply), api: "est" };
}
