import { CertRetrieverError, type Reason } from "../../errors.js";
import { decodeBase64 } from "../../keys/base64.js";
import { type HttpClient, type HttpReply, jsonObject } from "../../transport/http.js";
import { dojotLogin, gatewayUrl } from "../dojot/login.js";
import { DojotReplies } from "../dojot/replies.js";
import { platformSays } from "../dojot/says.js";
import { bearer } from "../dojot/session.js";
import type {
  EnrollCapability,
  FetchedCa,
  Issued,
  LoginCapability,
  ProtocolClient,
  RenewalCapability,
  Session,
  SignRequest,
  TrustCapability,
} from "../types.js";
import { EJBCA_REST, EJBCA_REST_TITLE } from "./name.js";

const replies = new DojotReplies(EJBCA_REST);

/** Settings of the EJBCA-REST client. */
export interface EjbcaRestOptions {
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
export class EjbcaRestClient implements ProtocolClient {
  readonly name = EJBCA_REST;
  readonly title = EJBCA_REST_TITLE;
  readonly login: LoginCapability;
  readonly trust: TrustCapability = {
    fetchCa: async (session) => parseCaReply(await this.caReply(session), this.opts.caName),
  };
  readonly enroll: EnrollCapability = {
    // CFREE takes RSA only; the subject comes from the end entity, CN = device id.
    defaultKeyType: "rsa-2048",
    commonNames: (id) => [id],
    noBinding: "issues to the device's own end entity",
    submit: (session, req) => this.submitCsr(session, req),
  };
  readonly renewal: RenewalCapability = {
    // EJBCA signs for an end entity in state NEW only, and its first certificate left it GENERATED.
    refuse: (stored) =>
      new CertRetrieverError(
        `fetch-ca failed: a renewal on ${EJBCA_REST_TITLE} needs the device's end entity reset to NEW on the platform, which cert-retriever cannot see or do; no key was made, and the stored credentials (valid until ${stored.notAfter.toISOString()}) stay`,
        { step: "fetch-ca", reason: "not-supported", facts: { protocol: EJBCA_REST } },
      ),
  };

  constructor(private readonly opts: EjbcaRestOptions) {
    this.login = dojotLogin(opts.http, opts.baseUrl, replies);
  }

  /** The CA asked for. */
  get caName(): string {
    return this.opts.caName;
  }

  /** The raw reply of `GET /ca/<name>`, for API detection. */
  caReply(session: Session): Promise<HttpReply> {
    return this.opts.http.json(
      "fetch-ca",
      gatewayUrl(this.opts.baseUrl, `/ca/${encodeURIComponent(this.opts.caName)}`),
      { method: "GET", headers: bearer(session) },
    );
  }

  private async submitCsr(session: Session, req: SignRequest): Promise<Issued> {
    const reply = await this.opts.http.json(
      "submit-csr",
      gatewayUrl(this.opts.baseUrl, `/sign/${encodeURIComponent(req.deviceId)}/pkcs10`),
      {
        method: "POST",
        headers: bearer(session),
        body: { passwd: this.opts.entityPassword, certificate: Buffer.from(req.csrDer).toString("base64") },
        once: true,
      },
    );
    return parseSignReply(reply, req.deviceId);
  }

  /** `GET /ca/<name>/crl` -> 200 `{"CRL": base64 DER}` (EJBCA-REST `RESTmain.py`; protocol notes, section 3.3). */
  async crl(session: Session): Promise<Uint8Array> {
    const reply = await this.opts.http.json(
      "revocation",
      gatewayUrl(this.opts.baseUrl, `/ca/${encodeURIComponent(this.opts.caName)}/crl`),
      { method: "GET", headers: bearer(session) },
    );
    if (reply.status !== 200)
      throw replies.replyError("revocation", reply, `fetching the CRL of CA '${this.opts.caName}'`);
    replies.requireJson("revocation", reply);
    const crl = jsonObject(reply)?.CRL;
    const der = typeof crl === "string" ? decodeBase64(crl) : undefined;
    if (!der || der.length === 0)
      throw replies.malformed("revocation", reply, "a JSON object with `CRL` (the base64 DER CRL)");
    return der;
  }
}

/** The session from a `POST /auth` reply, or the error that explains it. */
export function parseAuthReply(reply: HttpReply, username: string): Session {
  return replies.session(reply, username);
}

/** The CA DER from a `GET /ca/<name>` reply (`{certificate: base64}`), or the error that explains it. */
export function parseCaReply(reply: HttpReply, caName: string): FetchedCa {
  if (reply.status !== 200)
    throw replies.replyError("fetch-ca", reply, `fetching the CA certificate '${caName}'`, caReason(reply));
  replies.requireJson("fetch-ca", reply);
  const text = jsonObject(reply)?.certificate;
  const der = typeof text === "string" ? decodeBase64(text) : undefined;
  if (!der) throw replies.malformed("fetch-ca", reply, "a JSON object whose `certificate` is base64 DER");
  return { der };
}

/** The certificate DER from a `POST /sign` reply (`{status: {data}}`), or the error that explains it. */
export function parseSignReply(reply: HttpReply, deviceId: string): Issued {
  if (reply.status !== 200)
    throw replies.replyError(
      "submit-csr",
      reply,
      `the platform refused the CSR for device '${deviceId}'`,
      signReason(reply),
    );
  replies.requireJson("submit-csr", reply);
  // Success and error bodies both use `status`: an object here, an integer in errors.
  const status = jsonObject(reply)?.status;
  const data = status && typeof status === "object" ? (status as Record<string, unknown>).data : undefined;
  const der = typeof data === "string" ? decodeBase64(data) : undefined;
  if (!der)
    throw replies.malformed("submit-csr", reply, "a JSON object whose `status.data` is the base64 DER certificate");
  return { der };
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
