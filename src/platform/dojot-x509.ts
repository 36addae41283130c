import { createHash } from "node:crypto";
import { CertRetrieverError, type Step } from "../errors.js";
import { ExitCode } from "../exit-codes.js";
import { toPem } from "../crypto/keys.js";
import { authError, bearer, malformed, replyError, requireJson } from "./dojot-legacy.js";
import { jsonObject, platformSays, type HttpClient, type HttpReply } from "./http.js";
import { sessionFromJwt, type FetchedCa, type Issued, type PlatformApi, type PlatformClient, type Session, type SignRequest } from "./types.js";

/** Settings of the x509-identity-mgmt client. */
export interface DojotX509Options {
  baseUrl: URL;
  http: HttpClient;
}

/** v0.5-v0.6 accept only this CN (the server then prefixes the tenant). */
export const X509_CN_RULE = /^[0-9A-Za-z ]{1,255}$/;

/**
 * dojot >= v0.5 through Kong: `POST /auth`, `GET /x509/v1/ca`, `POST /x509/v1/certificates`, and
 * the binding of the certificate to the device that v0.7+ needs (protocol notes, section 5).
 */
export class DojotX509Client implements PlatformClient {
  constructor(private readonly opts: DojotX509Options) {}

  api(): PlatformApi {
    return "dojot";
  }

  async authenticate(username: string, password: string): Promise<Session> {
    const reply = await this.opts.http.json("authenticate", this.url("/auth"), { method: "POST", body: { username, passwd: password } });
    if (reply.status !== 200) throw authError(reply, username);
    requireJson("authenticate", reply);
    const jwt = jsonObject(reply)?.jwt;
    if (typeof jwt !== "string" || !/^[\w-]+\.[\w-]+\.[\w-]*$/.test(jwt)) throw malformed("authenticate", reply, "a JSON object with a `jwt` token");
    return sessionFromJwt(jwt);
  }

  async fetchCa(session: Session): Promise<FetchedCa> {
    return parseX509CaReply(await this.caReply(session));
  }

  /** The raw reply of `GET /x509/v1/ca`, for API detection. */
  caReply(session: Session): Promise<HttpReply> {
    return this.opts.http.json("fetch-ca", this.url("/x509/v1/ca"), { method: "GET", headers: bearer(session) });
  }

  async submitCsr(session: Session, req: SignRequest): Promise<Issued> {
    // The whole PEM with real line breaks and no trailing newline (v0.5's pattern refuses one).
    const csr = toPem(req.csrDer, "CERTIFICATE REQUEST").trimEnd();
    const reply = await this.opts.http.json("submit-csr", this.url("/x509/v1/certificates"), { method: "POST", headers: bearer(session), body: { csr }, once: true });
    const issued = parseX509CertificateReply(reply, req.deviceId);
    await this.bind(session, issued.fingerprint, req.deviceId);
    return issued;
  }

  /**
   * Binds the certificate to the device (`PATCH …/certificates/<fp>` `{belongsTo: {device}}` ->
   * 204), so that VerneMQ v0.7+ finds its owner by fingerprint. v0.5-v0.6 have no such route
   * (Express answers a bare 404) and need no binding: the CN carries the identity there.
   */
  private async bind(session: Session, fingerprint: string, deviceId: string): Promise<void> {
    const reply = await this.opts.http.json("submit-csr", this.url(`/x509/v1/certificates/${fingerprint.replace(/:/g, "")}`), {
      method: "PATCH",
      headers: bearer(session),
      body: { belongsTo: { device: deviceId } },
    });
    if (reply.status === 204 || reply.status === 200) return;
    if (reply.status === 404 && !jsonObject(reply)) return; // no such route: a v0.5-v0.6 platform
    throw replyError("submit-csr", reply, `binding the certificate to device '${deviceId}' failed`, "the device must exist on the platform for this tenant (dojot v0.7+ checks)");
  }

  private url(path: string): URL {
    return new URL(this.opts.baseUrl.href.replace(/\/+$/, "") + path);
  }
}

/** The CA from `GET /x509/v1/ca` (`{certificateFingerprint, caPem}`), its fingerprint checked against its content. */
export function parseX509CaReply(reply: HttpReply): FetchedCa {
  if (reply.status !== 200) throw replyError("fetch-ca", reply, "fetching the CA certificate", undefined);
  const { der } = pemWithFingerprint(reply, "fetch-ca", "caPem", "the CA certificate", ExitCode.CA);
  return { der };
}

/** The certificate from `POST /x509/v1/certificates` (201 `{certificateFingerprint, certificatePem}`). */
export function parseX509CertificateReply(reply: HttpReply, deviceId: string): Issued & { fingerprint: string } {
  if (reply.status !== 201 && reply.status !== 200) {
    throw replyError("submit-csr", reply, `the platform refused the CSR for device '${deviceId}'`, x509Hint(reply));
  }
  return pemWithFingerprint(reply, "submit-csr", "certificatePem", "the issued certificate", ExitCode.VALIDATION);
}

/** Both replies' shape: a PEM certificate under `key` and its `certificateFingerprint`, which must match it. */
function pemWithFingerprint(reply: HttpReply, step: Step, key: string, what: string, mismatch: ExitCode): { der: Uint8Array; fingerprint: string } {
  requireJson(step, reply);
  const body = jsonObject(reply);
  const pem = body?.[key];
  const der = typeof pem === "string" ? pemToDer(pem, "CERTIFICATE") : undefined;
  const fingerprint = body?.certificateFingerprint;
  if (!der || typeof fingerprint !== "string") throw malformed(step, reply, `a JSON object with \`${key}\` (a PEM certificate) and \`certificateFingerprint\``);
  checkFingerprint(step, der, fingerprint, what, mismatch);
  return { der, fingerprint };
}

/** The DER inside a PEM block with `label`, or undefined. */
function pemToDer(pem: string, label: string): Uint8Array | undefined {
  const m = new RegExp(`^\\s*-----BEGIN ${label}-----\\r?\\n([A-Za-z0-9+/=\\r\\n]+)-----END ${label}-----\\s*$`).exec(pem);
  if (!m) return undefined;
  const b64 = m[1]!.replace(/[\r\n]/g, "");
  return b64.length > 0 && b64.length % 4 === 0 ? new Uint8Array(Buffer.from(b64, "base64")) : undefined;
}

/** The platform's fingerprint (uppercase hex pairs with colons) must be the SHA-256 of what it sent. */
function checkFingerprint(step: Step, der: Uint8Array, claimed: string, what: string, exitCode: ExitCode): void {
  const actual = createHash("sha256").update(der).digest("hex").toUpperCase();
  if (claimed.replace(/:/g, "").toUpperCase() !== actual) {
    throw new CertRetrieverError(`${step} failed: ${what} does not match the fingerprint the platform gave for it (${claimed})`, {
      step,
      exitCode,
      hint: "the reply was altered on the way or the platform misbehaves; nothing was written",
    });
  }
}

function x509Hint(reply: HttpReply): string | undefined {
  const says = platformSays(reply);
  if (/RSA public key length|elliptical curve|public key algorithm/i.test(says)) return "use --key-type ec-p256 (or rsa-2048 and up)";
  if (/SubjectDN/i.test(says)) return "dojot v0.5-v0.6 accept a CN of letters, digits and spaces only: use the platform's device id";
  if (/was not found for tenant/i.test(says)) return "create the device on the platform (for this user's tenant) first";
  return undefined;
}
