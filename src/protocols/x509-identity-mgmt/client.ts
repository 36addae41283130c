import { CertRetrieverError, type Reason, type Step, usageError } from "../../errors.js";
import { sha256ColonHex } from "../../keys/fingerprint.js";
import { toPem } from "../../keys/key-types.js";
import {
  conditionalHeaders,
  type HttpClient,
  type HttpReply,
  jsonObject,
  type Validators,
  validatorsOf,
} from "../../transport/http.js";
import { dojotLogin, gatewayUrl } from "../dojot/login.js";
import { DojotReplies } from "../dojot/replies.js";
import { platformSays } from "../dojot/says.js";
import { bearer } from "../dojot/session.js";
import type {
  Binding,
  EnrollCapability,
  FetchedCa,
  Issued,
  LoginCapability,
  ProtocolClient,
  RegisterRequest,
  RevalidateCapability,
  RevokeTarget,
  Session,
  SignRequest,
  TrustCapability,
} from "../types.js";
import { X509_IDENTITY_MGMT, X509_IDENTITY_MGMT_TITLE } from "./name.js";
import { type X509Generation, x509DeviceIdProblem } from "./rules.js";

const replies = new DojotReplies(X509_IDENTITY_MGMT);

/** Settings of the x509-identity-mgmt client. */
export interface X509IdentityMgmtOptions {
  baseUrl: URL;
  http: HttpClient;
}

/**
 * dojot >= v0.5 through Kong: `POST /auth`, `GET /x509/v1/ca`, `POST /x509/v1/certificates`, and
 * on v0.7+ the binding of the certificate to the device (protocol notes, section 5).
 */
export class X509IdentityMgmtClient implements ProtocolClient {
  readonly name = X509_IDENTITY_MGMT;
  readonly title = X509_IDENTITY_MGMT_TITLE;
  readonly login: LoginCapability;
  readonly trust: TrustCapability = { fetchCa: async (session) => this.adoptCa(await this.caReply(session)) };
  readonly enroll: EnrollCapability = {
    defaultKeyType: "ec-p256",
    // v0.5-v0.6 prefix the tenant; v0.7+ pass the CSR's CN through.
    commonNames: (id, tenant) => (tenant ? [id, `${tenant}:${id}`] : [id]),
    prepare: async (session, deviceId) => {
      await this.checkDevice(session, deviceId);
      return undefined;
    },
    submit: (session, req) => this.submitCsr(session, req),
  };
  /**
   * The service runs on Express (dojot-microservice-sdk-js v0.1.11 `createExpress`, v0.7.0/v0.8.0;
   * `src/app.js` v0.5.0/v0.6.0), whose `res.json` names each body by a weak ETag and answers a
   * matching If-None-Match with 304 and no body; it sends no Last-Modified, so If-Modified-Since alone
   * is never answered so.
   */
  readonly revalidate: RevalidateCapability = {
    ca: async (session, known) => {
      const reply = await this.caReply(session, known);
      if (reply.status === 304 && known) return { unchanged: true };
      return { unchanged: false, value: this.adoptCa(reply), validators: validatorsOf(reply) };
    },
    crl: async (session, known) => {
      const reply = await this.crlReply(session, known);
      if (reply.status === 304 && known) return { unchanged: true };
      return { unchanged: false, value: parseCrlReply(reply), validators: validatorsOf(reply) };
    },
  };
  private generation: X509Generation | undefined;
  private caFingerprint: string | undefined;

  constructor(private readonly opts: X509IdentityMgmtOptions) {
    this.login = dojotLogin(opts.http, opts.baseUrl, replies);
  }

  /** The raw reply of `GET /x509/v1/ca`, for API detection; `known`: only if it changed since. */
  caReply(session: Session, known?: Validators): Promise<HttpReply> {
    return this.opts.http.json("fetch-ca", this.url("/x509/v1/ca"), {
      method: "GET",
      headers: { ...bearer(session), ...conditionalHeaders(known) },
    });
  }

  /** The CA from a `GET /x509/v1/ca` reply. */
  adoptCa(reply: HttpReply): FetchedCa {
    const ca = parseX509CaReply(reply);
    this.caFingerprint = sha256ColonHex(ca.der);
    return ca;
  }

  /**
   * Before any key is made: asks to bind the CA's own fingerprint, which names no certificate
   * record, to the device. Nothing changes on either release line, and the answer says which one
   * it is and whether the device can be bound: v0.7+ check the device first
   * (`CertificateService.changeOwnership`: 400 `{"error": "Device identifier … was not found …"}`)
   * and then find no record (404 `{"error": "No records found …"}`); v0.5-v0.6 check their schema
   * (400 `{"schema$id", …}` for an id that is not ten hex digits) and find no record (404
   * `{"message": …}`). Any other answer (a gateway that denies the request, say) leaves the release
   * unknown, and the binding finds out.
   */
  private async checkDevice(session: Session, deviceId: string): Promise<void> {
    const neither = x509DeviceIdProblem(deviceId);
    if (neither) throw usageError(neither, "deviceId");
    const reply = await this.opts.http.json("fetch-ca", this.url(`/x509/v1/certificates/${this.caFingerprint ?? ""}`), {
      method: "PATCH",
      headers: bearer(session),
      body: { belongsTo: { device: deviceId } },
    });
    this.generation = generationOf(reply);
    if (this.generation === "v0.7" && reply.status === 400) {
      if (/was not found for tenant/.test(platformSays(reply))) {
        throw new CertRetrieverError(
          `bind failed: the platform has no device '${deviceId}' for this user's tenant (HTTP 400: ${platformSays(reply)}); no key was made and no certificate issued`,
          {
            step: "bind",
            reason: "device-unknown",
            facts: replies.facts(reply),
          },
        );
      }
      throw usageError(
        x509DeviceIdProblem(deviceId, "v0.7") ?? `the platform refused device id '${deviceId}': ${platformSays(reply)}`,
        "deviceId",
      );
    }
    const problem = this.generation ? x509DeviceIdProblem(deviceId, this.generation) : undefined;
    if (problem) throw usageError(problem, "deviceId");
  }

  /** The release line found by {@link checkDevice}, for the bind step's line. */
  private describe(): string {
    return this.generation === "v0.5"
      ? "dojot v0.5-v0.6 rules"
      : this.generation === "v0.7"
        ? "dojot v0.7+ rules"
        : "release not recognised";
  }

  private async submitCsr(session: Session, req: SignRequest): Promise<Issued> {
    // The whole PEM with real line breaks and no trailing newline (v0.5's pattern refuses one).
    const csr = toPem(req.csrDer, "CERTIFICATE REQUEST").trimEnd();
    const reply = await this.opts.http.json("submit-csr", this.url("/x509/v1/certificates"), {
      method: "POST",
      headers: bearer(session),
      body: { csr },
      once: true,
    });
    return parseX509CertificateReply(reply, req.deviceId);
  }

  /**
   * Ties the validated certificate to the device where the release needs it. v0.7+:
   * `PATCH …/certificates/<fp>` `{belongsTo: {device}}` -> 204, so that VerneMQ finds the owner by
   * fingerprint. v0.5-v0.6 have the route too, but VerneMQ identifies the device by the CN
   * `<tenant>:<device>` there, and their schema takes only ten-hex-digit ids: no binding.
   */
  async bind(session: Session, issued: Issued, deviceId: string): Promise<Binding> {
    if (this.generation === "v0.5")
      return { bound: false, detail: "not needed: dojot v0.5-v0.6 identify the device by its CN" };
    const fingerprint = issued.fingerprint ?? "";
    // The fingerprint as the platform gave it (with colons): v0.7+ also take it without.
    const reply = await this.opts.http.json("bind", this.url(`/x509/v1/certificates/${fingerprint}`), {
      method: "PATCH",
      headers: bearer(session),
      body: { belongsTo: { device: deviceId } },
    });
    if (reply.status === 204 || reply.status === 200)
      return { bound: true, detail: `certificate bound to device ${deviceId} (${this.describe()})` };
    if (!this.generation && generationOf(reply) === "v0.5")
      return {
        bound: false,
        detail: "not needed: the platform answers as dojot v0.5-v0.6, which identify the device by its CN",
      };
    const says = platformSays(reply);
    const reason: Reason =
      reply.status === 401
        ? "token-expired"
        : reply.status === 403
          ? "permission-denied"
          : /was not found for tenant/i.test(says)
            ? "device-unknown"
            : "bind-refused";
    throw new CertRetrieverError(
      `bind failed: the platform issued certificate ${fingerprint} but did not bind it to device '${deviceId}': HTTP ${reply.status}: ${says}; nothing was written, and the unbound certificate stays on the platform until removed`,
      { step: "bind", reason, facts: { ...replies.facts(reply), fingerprint } },
    );
  }

  /**
   * Registers a certificate from another CA and binds it to the device in one request (v0.7+,
   * `CertificateService.registerCertificate`): `POST …/certificates` `{certificateChain,
   * caFingerprint?, belongsTo: {device}}` -> 201 `{certificateFingerprint}`. `chainPem`: the
   * device's certificate first, then its CAs. A certificate the platform holds already is looked
   * up: bound to this device in this tenant, it is a success (`already: true`), so a run repeated
   * after a lost reply ends well.
   */
  async register(session: Session, req: RegisterRequest): Promise<{ fingerprint: string; already: boolean }> {
    const body = {
      certificateChain: req.chainPem,
      ...(req.caFingerprint ? { caFingerprint: req.caFingerprint } : {}),
      belongsTo: { device: req.deviceId },
    };
    const reply = await this.opts.http.json("register", this.url("/x509/v1/certificates"), {
      method: "POST",
      headers: bearer(session),
      body,
    });
    const fingerprint = sha256ColonHex(req.leafDer);
    if (reply.status === 201 || reply.status === 200) {
      replies.requireJson("register", reply);
      const claimed = jsonObject(reply)?.certificateFingerprint;
      if (typeof claimed !== "string")
        throw replies.malformed("register", reply, "a JSON object with `certificateFingerprint`");
      checkFingerprint("register", req.leafDer, claimed, "the registered certificate");
      return { fingerprint: claimed, already: false };
    }
    if (reply.status === 409 && (await this.boundTo(session, fingerprint)) === req.deviceId)
      return { fingerprint, already: true };
    throw registrationError(reply, req.deviceId, fingerprint);
  }

  /** `GET /x509/v1/ca/crl` -> 200 `{crl: PEM}` (v0.5.0 `trusted-cas-router.js`; v0.7.0/v0.8.0 `caRoutes.js`; no new CRL is forced unless the deployment sets X509IDMGMT_EJBCA_FORCECRLRENEW). */
  async crl(session: Session): Promise<Uint8Array> {
    return parseCrlReply(await this.crlReply(session));
  }

  private crlReply(session: Session, known?: Validators): Promise<HttpReply> {
    return this.opts.http.json("revocation", this.url("/x509/v1/ca/crl"), {
      method: "GET",
      headers: { ...bearer(session), ...conditionalHeaders(known) },
    });
  }

  /**
   * `DELETE /x509/v1/certificates/<fp>` -> 204: the service removes the record and has EJBCA
   * revoke a certificate it issued (protocol notes, section 5.3). The fingerprint with colons,
   * upper case, which both release lines take. 404 "No records found": not (or no longer) there.
   */
  async revoke(session: Session, target: RevokeTarget): Promise<"revoked" | "absent"> {
    const fingerprint = target.sha256Fingerprint;
    const reply = await this.opts.http.json("revoke", this.url(`/x509/v1/certificates/${fingerprint.toUpperCase()}`), {
      method: "DELETE",
      headers: bearer(session),
    });
    if (reply.status === 204 || reply.status === 200) return "revoked";
    if (reply.status === 404 && /No records found/i.test(platformSays(reply))) return "absent";
    throw replies.replyError("revoke", reply, `removing certificate ${fingerprint}`);
  }

  /** The device a certificate of this tenant is bound to ("" when unbound), or undefined when the tenant has no such certificate. */
  private async boundTo(session: Session, fingerprint: string): Promise<string | undefined> {
    const reply = await this.opts.http.json("register", this.url(`/x509/v1/certificates/${fingerprint}`), {
      method: "GET",
      headers: bearer(session),
    });
    const belongsTo = reply.status === 200 ? jsonObject(reply)?.belongsTo : undefined;
    if (!belongsTo || typeof belongsTo !== "object") return undefined;
    const device = (belongsTo as { device?: unknown }).device;
    return typeof device === "string" ? device : "";
  }

  private url(path: string): URL {
    return gatewayUrl(this.opts.baseUrl, path);
  }
}

/** Which release line answered, by the shape of a refusal (see {@link X509IdentityMgmtClient.checkDevice}), or undefined. */
export function generationOf(reply: HttpReply): X509Generation | undefined {
  const body = jsonObject(reply);
  if (!body || (reply.status !== 400 && reply.status !== 404)) return undefined;
  if (typeof body.error === "string") return "v0.7";
  if (
    "schema$id" in body ||
    (reply.status === 404 && typeof body.message === "string" && body.message.startsWith("No records found"))
  )
    return "v0.5";
  return undefined;
}

/** The CA from `GET /x509/v1/ca` (`{certificateFingerprint, caPem}`), its fingerprint checked against its content. */
export function parseX509CaReply(reply: HttpReply): FetchedCa {
  if (reply.status !== 200) throw replies.replyError("fetch-ca", reply, "fetching the CA certificate");
  const { der } = pemWithFingerprint(reply, "fetch-ca", "caPem", "the CA certificate");
  return { der };
}

/** The CRL from a `GET /x509/v1/ca/crl` reply (200 `{crl: PEM}`), DER. */
function parseCrlReply(reply: HttpReply): Uint8Array {
  if (reply.status !== 200) throw replies.replyError("revocation", reply, "fetching the CA's CRL");
  replies.requireJson("revocation", reply);
  const pem = jsonObject(reply)?.crl;
  const der = typeof pem === "string" ? pemToDer(pem, "X509 CRL") : undefined;
  if (!der) throw replies.malformed("revocation", reply, "a JSON object with `crl` (a PEM CRL)");
  return der;
}

/** The certificate from `POST /x509/v1/certificates` (201 `{certificateFingerprint, certificatePem}`). */
export function parseX509CertificateReply(reply: HttpReply, deviceId: string): Issued {
  if (reply.status !== 201 && reply.status !== 200) {
    throw replies.replyError(
      "submit-csr",
      reply,
      `the platform refused the CSR for device '${deviceId}'`,
      x509Reason(reply),
    );
  }
  return pemWithFingerprint(reply, "submit-csr", "certificatePem", "the issued certificate");
}

/** Both replies' shape: a PEM certificate under `key` and its `certificateFingerprint`, which must match it. */
function pemWithFingerprint(
  reply: HttpReply,
  step: Step,
  key: string,
  what: string,
): { der: Uint8Array; fingerprint: string } {
  replies.requireJson(step, reply);
  const body = jsonObject(reply);
  const pem = body?.[key];
  const der = typeof pem === "string" ? pemToDer(pem, "CERTIFICATE") : undefined;
  const fingerprint = body?.certificateFingerprint;
  if (!der || typeof fingerprint !== "string")
    throw replies.malformed(
      step,
      reply,
      `a JSON object with \`${key}\` (a PEM certificate) and \`certificateFingerprint\``,
    );
  checkFingerprint(step, der, fingerprint, what);
  return { der, fingerprint };
}

/** The DER inside a PEM block with `label`, or undefined. */
function pemToDer(pem: string, label: string): Uint8Array | undefined {
  const m = new RegExp(`^\\s*-----BEGIN ${label}-----\\r?\\n([A-Za-z0-9+/=\\r\\n]+)-----END ${label}-----\\s*$`).exec(
    pem,
  );
  if (!m) return undefined;
  const b64 = m[1]!.replace(/[\r\n]/g, "");
  return b64.length > 0 && b64.length % 4 === 0 ? new Uint8Array(Buffer.from(b64, "base64")) : undefined;
}

/** The platform's fingerprint (uppercase hex pairs with colons) must be the SHA-256 of what it sent. */
function checkFingerprint(step: Step, der: Uint8Array, claimed: string, what: string): void {
  if (claimed.replace(/:/g, "").toUpperCase() !== sha256ColonHex(der).replace(/:/g, "")) {
    throw new CertRetrieverError(
      `${step} failed: ${what} does not match the fingerprint the platform gave for it (${claimed})`,
      {
        step,
        reason: "reply-altered",
        facts: { fingerprint: claimed, protocol: X509_IDENTITY_MGMT },
      },
    );
  }
}

/**
 * The error for a refused registration, by what `registerCertificate` (v0.7.0/v0.8.0) says; a v0.5-v0.6
 * answer (their schema knows no `certificateChain`, or their stub is "not available yet") means
 * the release cannot register at all. Their schema refusal lists what it found wrong once
 * `certificateChain` was dropped as unknown (`removeAdditional`): the device id's pattern, a
 * missing `csr`; none of it is the cause, so the cause is said instead.
 */
function registrationError(reply: HttpReply, deviceId: string, fingerprint: string): CertRetrieverError {
  const says = platformSays(reply);
  const facts = { ...replies.facts(reply), fingerprint };
  if (generationOf(reply) === "v0.5" || /not available yet/i.test(says)) {
    const why = /not available yet/i.test(says)
      ? `HTTP ${reply.status}: ${says}`
      : `HTTP ${reply.status}: the request's \`certificateChain\` is no field of v0.5-v0.6's API, which takes only a \`csr\` to sign`;
    return new CertRetrieverError(
      `register failed: the platform answers as dojot v0.5-v0.6, whose x509-identity-mgmt cannot register a certificate it did not issue (${why})`,
      {
        step: "register",
        reason: "not-supported",
        facts,
      },
    );
  }
  if (reply.status === 409) {
    return new CertRetrieverError(
      `register failed: the platform holds certificate ${fingerprint} already, and not for device '${deviceId}' in this tenant (HTTP 409: ${says})`,
      {
        step: "register",
        reason: "already-registered",
        facts,
      },
    );
  }
  const detail = jsonObject(reply)?.detail as { chainOfTrustResult?: unknown } | undefined;
  const why =
    typeof detail?.chainOfTrustResult === "string" && detail.chainOfTrustResult
      ? ` (${detail.chainOfTrustResult})`
      : "";
  const reason: Reason = /trusted certificate yet|fingerprint of the root CA/i.test(says)
    ? "ca-not-trusted"
    : /was not found for tenant/i.test(says)
      ? "device-unknown"
      : reply.status === 400
        ? "registration-refused"
        : "platform-error";
  return replies.replyError(
    "register",
    reply,
    `the platform refused to register certificate ${fingerprint} for device '${deviceId}'${why}`,
    reason,
  );
}

/** Why x509-identity-mgmt refused a CSR, from its message. */
function x509Reason(reply: HttpReply): Reason {
  const says = platformSays(reply);
  if (/RSA public key length|elliptical curve|public key algorithm/i.test(says)) return "key-refused";
  return "csr-refused";
}
