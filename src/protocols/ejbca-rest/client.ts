import { CertRetrieverError, type Reason, type Step } from "../../errors.js";
import { decodeBase64 } from "../../keys/base64.js";
import { jsonObject, platformSays, replyFacts, type HttpClient, type HttpReply } from "../../transport/http.js";
import { sessionFromJwt, type FetchedCa, type Issued, type PlatformApi, type PlatformClient, type Session, type SignRequest } from "../types.js";

/** Settings of the EJBCA-REST client. */
export interface DojotLegacyOptions {
  /** The gateway, e.g. `http://localhost:8000`. */
  baseUrl: URL;
  /** The CA that issues device certificates; dojot's is `IOTmidCA`. */
  caName: string;
  /** The end-entity password EJBCA checks; dojot sets `dojot` for every device. */
  entityPassword: string;
  http: HttpClient;
}

/**
 * dojot <= v0.4 through Kong: `POST /auth`, `GET /ca/<name>`, `POST /sign/<device>/pkcs10`
 * (protocol notes, sections 2-3).
 */
export class DojotLegacyClient implements PlatformClient {
  constructor(private readonly opts: DojotLegacyOptions) {}

  /** The CA asked for. */
  get caName(): string {
    return this.opts.caName;
  }

  api(): PlatformApi {
    return "dojot-legacy";
  }

  async authenticate(username: string, password: string): Promise<Session> {
    const reply = await this.opts.http.json("authenticate", this.url("/auth"), { method: "POST", body: { username, passwd: password } });
    return parseAuthReply(reply, username);
  }

  async fetchCa(session: Session): Promise<FetchedCa> {
    return parseCaReply(await this.caReply(session), this.opts.caName);
  }

  /** The raw reply of `GET /ca/<name>`, for API detection. */
  caReply(session: Session): Promise<HttpReply> {
    return this.opts.http.json("fetch-ca", this.url(`/ca/${encodeURIComponent(this.opts.caName)}`), { method: "GET", headers: bearer(session) });
  }

  async submitCsr(session: Session, req: SignRequest): Promise<Issued> {
    const reply = await this.opts.http.json("submit-csr", this.url(`/sign/${encodeURIComponent(req.deviceId)}/pkcs10`), {
      method: "POST",
      headers: bearer(session),
      body: { passwd: this.opts.entityPassword, certificate: Buffer.from(req.csrDer).toString("base64") },
      once: true,
    });
    return parseSignReply(reply, req.deviceId);
  }

  /** `GET /ca/<name>/crl` -> 200 `{"CRL": base64 DER}` (EJBCA-REST `RESTmain.py`; protocol notes, section 3.3). */
  async fetchCrl(session: Session): Promise<Uint8Array> {
    const reply = await this.opts.http.json("revocation", this.url(`/ca/${encodeURIComponent(this.opts.caName)}/crl`), { method: "GET", headers: bearer(session) });
    if (reply.status !== 200) throw replyError("revocation", reply, `fetching the CRL of CA '${this.opts.caName}'`);
    requireJson("revocation", reply);
    const crl = jsonObject(reply)?.CRL;
    const der = typeof crl === "string" ? decodeBase64(crl) : undefined;
    if (!der || der.length === 0) throw malformed("revocation", reply, "a JSON object with `CRL` (the base64 DER CRL)");
    return der;
  }

  private url(path: string): URL {
    return new URL(this.opts.baseUrl.href.replace(/\/+$/, "") + path);
  }
}

/** The session from a `POST /auth` reply, or the error that explains it. */
export function parseAuthReply(reply: HttpReply, username: string): Session {
  if (reply.status !== 200) throw authError(reply, username);
  requireJson("authenticate", reply);
  const jwt = jsonObject(reply)?.jwt;
  if (typeof jwt !== "string" || !/^[\w-]+\.[\w-]+\.[\w-]*$/.test(jwt)) {
    throw malformed("authenticate", reply, "a JSON object with a `jwt` token");
  }
  return sessionFromJwt(jwt);
}

/** The CA DER from a `GET /ca/<name>` reply (`{certificate: base64}`), or the error that explains it. */
export function parseCaReply(reply: HttpReply, caName: string): FetchedCa {
  if (reply.status !== 200) throw replyError("fetch-ca", reply, `fetching the CA certificate '${caName}'`, caReason(reply));
  requireJson("fetch-ca", reply);
  const text = jsonObject(reply)?.certificate;
  const der = typeof text === "string" ? decodeBase64(text) : undefined;
  if (!der) throw malformed("fetch-ca", reply, "a JSON object whose `certificate` is base64 DER");
  return { der };
}

/** The certificate DER from a `POST /sign` reply (`{status: {data}}`), or the error that explains it. */
export function parseSignReply(reply: HttpReply, deviceId: string): Issued {
  if (reply.status !== 200) throw replyError("submit-csr", reply, `the platform refused the CSR for device '${deviceId}'`, signReason(reply));
  requireJson("submit-csr", reply);
  // Success and error bodies both use `status`: an object here, an integer in errors.
  const status = jsonObject(reply)?.status;
  const data = status && typeof status === "object" ? (status as Record<string, unknown>).data : undefined;
  const der = typeof data === "string" ? decodeBase64(data) : undefined;
  if (!der) throw malformed("submit-csr", reply, "a JSON object whose `status.data` is the base64 DER certificate");
  return { der };
}

/** The Authorization header as pepkong wants it. */
export function bearer(session: Session): Record<string, string> {
  // pepkong drops the first seven characters: exactly "Bearer " and one space.
  return { authorization: `Bearer ${session.jwt}` };
}

/** The error for a refused `POST /auth` (the same service in both generations). */
export function authError(reply: HttpReply, username: string): CertRetrieverError {
  const says = platformSays(reply);
  if ((reply.status === 401 || reply.status === 403) && fromDojot(reply, "authenticate")) {
    const reason: Reason = /inactive/i.test(says) ? "user-inactive" : /AuthenticationError/i.test(says) ? "user-unknown" : "auth-refused";
    const what = {
      "user-inactive": `user '${username}' is inactive`,
      "user-unknown": `the platform does not know user '${username}'`,
      "auth-refused": `the password for user '${username}' was refused`,
    }[reason as "auth-refused"];
    return new CertRetrieverError(`authenticate failed: ${what} (HTTP ${reply.status}: ${says})`, { step: "authenticate", reason, facts: replyFacts(reply) });
  }
  return replyError("authenticate", reply, "logging in");
}

/**
 * The error for a non-2xx reply at `step`: what does not look like dojot says so; a refused token
 * or a missing permission are named; the rest is `reason`.
 */
export function replyError(step: Step, reply: HttpReply, doing: string, reason: Reason = "platform-error"): CertRetrieverError {
  if (!fromDojot(reply, step)) return notDojot(step, reply);
  const message = `${step} failed: ${doing}: HTTP ${reply.status}: ${platformSays(reply)}`;
  if (step !== "authenticate" && (reply.status === 401 || reply.status === 403)) {
    return new CertRetrieverError(message, { step, reason: reply.status === 401 ? "token-expired" : "permission-denied", facts: replyFacts(reply) });
  }
  return new CertRetrieverError(message, { step, reason, facts: replyFacts(reply) });
}

/**
 * Whether a reply could come from dojot at `step`: its gateway and services answer JSON, and a
 * route they lack is Kong's JSON 404. A 404, 405 or 501 that is not JSON is another server (a web
 * server, a portal); so is any reply to the login below 500 that is not JSON (dojot's auth service
 * answers `{message, status}`, and nothing guards /auth in front of it: an HTML 403 is a firewall
 * or a web server, not a wrong password). A service's own crash (a Flask 500 page) is still dojot.
 */
function fromDojot(reply: HttpReply, step: Step): boolean {
  if (jsonObject(reply) !== undefined) return true;
  if (step === "authenticate" && reply.status < 500) return false;
  return ![404, 405, 501].includes(reply.status);
}

/** The error for a reply from something that is not a dojot gateway. */
function notDojot(step: Step, reply: HttpReply): CertRetrieverError {
  const asked = reply.request ?? "the request";
  return new CertRetrieverError(`${step} failed: this does not look like a dojot gateway: ${asked} answered HTTP ${reply.status} with ${platformSays(reply)}`, {
    step,
    reason: "not-a-dojot-platform",
    facts: replyFacts(reply),
  });
}

/** A successful reply must say it is JSON: an HTML page with a 200 (a portal, a proxy's login page) is not the API. */
export function requireJson(step: Step, reply: HttpReply): void {
  const type = reply.contentType.split(";")[0]!.trim().toLowerCase();
  if (type !== "application/json" && !type.endsWith("+json")) {
    if (!fromDojot(reply, step)) throw notDojot(step, reply);
    throw malformed(step, reply, `a JSON reply (Content-Type application/json), not ${type ? `'${type}'` : "one without a Content-Type"}`);
  }
}

export function malformed(step: Step, reply: HttpReply, expected: string): CertRetrieverError {
  return new CertRetrieverError(`${step} failed: the platform's reply (HTTP ${reply.status}) is not what the API promises: expected ${expected}, got ${platformSays(reply)}`, {
    step,
    reason: "reply-malformed",
    facts: replyFacts(reply),
  });
}

function caReason(reply: HttpReply): Reason {
  return /does not exist/i.test(platformSays(reply)) ? "ca-unknown" : "platform-error";
}

function signReason(reply: HttpReply): Reason {
  const says = platformSays(reply);
  if (/status GENERATED/i.test(says)) return "already-issued";
  if (/does not exist|not found/i.test(says)) return "device-unknown";
  if (/wrong username or password/i.test(says)) return "entity-password-refused";
  if (/key length|key algorithm/i.test(says)) return "key-refused";
  return "csr-refused";
}
