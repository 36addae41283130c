import { CertRetrieverError, type Step } from "../errors.js";
import { ExitCode } from "../exit-codes.js";
import { decodeBase64 } from "./base64.js";
import { jsonObject, platformSays, stepExitCode, type HttpClient, type HttpReply } from "./http.js";
import { sessionFromJwt, type FetchedCa, type Issued, type PlatformApi, type PlatformClient, type Session, type SignRequest } from "./types.js";

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
  if (reply.status !== 200) throw replyError("fetch-ca", reply, `fetching the CA certificate '${caName}'`, caHint(reply));
  requireJson("fetch-ca", reply);
  const text = jsonObject(reply)?.certificate;
  const der = typeof text === "string" ? decodeBase64(text) : undefined;
  if (!der) throw malformed("fetch-ca", reply, "a JSON object whose `certificate` is base64 DER");
  return { der };
}

/** The certificate DER from a `POST /sign` reply (`{status: {data}}`), or the error that explains it. */
export function parseSignReply(reply: HttpReply, deviceId: string): Issued {
  if (reply.status !== 200) throw replyError("submit-csr", reply, `the platform refused the CSR for device '${deviceId}'`, signHint(reply));
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
  if (reply.status === 401 || reply.status === 403) {
    const unknownUser = /AuthenticationError/i.test(says);
    const inactive = /inactive/i.test(says);
    const what = inactive
      ? `user '${username}' is inactive`
      : unknownUser
        ? `the platform does not know user '${username}'`
        : `the password for user '${username}' was refused`;
    const hint = unknownUser
      ? "check --username (or CERT_RETRIEVER_USERNAME)"
      : inactive
        ? "ask the platform administrator to activate the user"
        : "check the password given by --password-file, --password-stdin or CERT_RETRIEVER_PASSWORD";
    return new CertRetrieverError(`authenticate failed: ${what} (HTTP ${reply.status}: ${says})`, {
      step: "authenticate",
      exitCode: ExitCode.AUTH,
      hint,
    });
  }
  return replyError("authenticate", reply, "logging in", undefined);
}

/** The error for a non-2xx reply at `step`: auth statuses exit 10, the rest the step's code. */
export function replyError(step: Step, reply: HttpReply, doing: string, hint: string | undefined): CertRetrieverError {
  const message = `${step} failed: ${doing}: HTTP ${reply.status}: ${platformSays(reply)}`;
  if (step !== "authenticate" && (reply.status === 401 || reply.status === 403)) {
    return new CertRetrieverError(message, {
      step,
      exitCode: ExitCode.AUTH,
      hint:
        reply.status === 401
          ? "the token was refused (expired or invalid): log in anew (run again, or 'cert-retriever login' for --token-file)"
          : "the user lacks the permission for this call (dojot's group `user` has ro_ca and wo_sign)",
    });
  }
  return new CertRetrieverError(message, { step, exitCode: stepExitCode(step), hint });
}

/** A successful reply must say it is JSON: an HTML page with a 200 (a portal, a proxy's login page) is not the API. */
export function requireJson(step: Step, reply: HttpReply): void {
  const type = reply.contentType.split(";")[0]!.trim().toLowerCase();
  if (type !== "application/json" && !type.endsWith("+json")) {
    throw malformed(step, reply, `a JSON reply (Content-Type application/json), not ${type ? `'${type}'` : "one without a Content-Type"}`);
  }
}

export function malformed(step: Step, reply: HttpReply, expected: string): CertRetrieverError {
  return new CertRetrieverError(
    `${step} failed: the platform's reply (HTTP ${reply.status}) is not what the API promises: expected ${expected}, got ${platformSays(reply)}`,
    { step, exitCode: stepExitCode(step), hint: "check that --platform points at a dojot gateway (Kong, port 8000)" },
  );
}

function caHint(reply: HttpReply): string | undefined {
  return /does not exist/i.test(platformSays(reply)) ? "check --ca-name (dojot's default is IOTmidCA)" : undefined;
}

function signHint(reply: HttpReply): string | undefined {
  const says = platformSays(reply);
  if (/status GENERATED/i.test(says)) {
    return "the end entity is not in NEW state: the platform issued a certificate for this device already; reset the device on the platform to issue again";
  }
  if (/does not exist|not found/i.test(says)) {
    return "register the device on the platform first (lab: cert-retriever lab device add)";
  }
  if (/wrong username or password/i.test(says)) {
    return "check the end-entity password (--entity-password-file or CERT_RETRIEVER_ENTITY_PASSWORD; dojot uses 'dojot')";
  }
  if (/key length|key algorithm/i.test(says)) {
    return "use an RSA key of 2048 to 8192 bits (--key-type rsa-2048): dojot's CFREE profile accepts nothing else";
  }
  return undefined;
}
