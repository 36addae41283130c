import type { IncomingMessage, ServerResponse } from "node:http";
import { sha256ColonHex, toPem } from "cert-retriever";
import { ProfileRefusal, parseSignedCsr, signAsEjbca } from "./ca.js";
import { crlPem, latestCrl, REVOCATION_REASON, revoke } from "./crl.js";
import { sendExpressJson } from "./express-etag.js";
import { certificateFault, type FaultKind, skewClock, withTrailingData } from "./faults.js";
import { send } from "./replies.js";
import { type LabState, loadState, updateState, type X509Record } from "./state.js";
import * as x509 from "./x509.js";
import type { X509Context } from "./x509-context.js";
import { sendPage } from "./x509-list.js";
import { x509IdentityExtensions } from "./x509-profile.js";
import { certificateFilter, matches, queryOf } from "./x509-query.js";
import { ensureDeviceExists, registerCertificate, trustedCas } from "./x509-register.js";
import {
  checkPublicKey,
  ejbcaName,
  pemDer,
  routeFingerprint,
  subjectDn,
  X509Refusal,
  type X509Rules,
} from "./x509-rules.js";
import { checkChangeOwnerBody, checkGenerateBody, SchemaRefusal, schemaFailure } from "./x509-schemas.js";

export type { X509Rules } from "./x509-rules.js";

const DAY = 86_400_000;
/**
 * `certificate.validity` (X509IDMGMT_CERTIFICATE_VALIDITY, `config/default.conf` v0.7.0/v0.8.0) /
 * `CERT_VALIDITY_DAYS` (`src/config.js` v0.5.0): 365 days, sent to EJBCA as start and end time
 * (`generateCertificate` in the EJBCA facade). `--cert-lifetime` replaces it in the lab.
 */
const VALIDITY_DAYS = 365;
/** The 500 body both generations send (`app.js` v0.5; dojot-microservice-sdk-js `defaultErrorHandler` v0.7+). */
const UNEXPECTED = "An unexpected error has occurred.";

/**
 * x509-identity-mgmt behind Kong (`/x509/v1/...` reaches the service's `/api/v1/...`), as its routes
 * are at dojot v0.5.0 (`src/routes/certificates-router.js`) and v0.7.0/v0.8.0
 * (`src/express/routes/certificateRoutes.js`, `caRoutes.js`). `body` is the raw request body.
 */
export async function handleX509(
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  body: string,
  ctx: X509Context,
  tenant: string,
): Promise<void> {
  const path = url.pathname.slice("/x509".length).replace(/\/+$/, "");
  // v0.5: `{message}` from app.js's error handler; v0.7+: the SDK's `{error, detail?}`.
  const fail = (status: number, message: string) =>
    send(res, status, ctx.rules === "v0.5" ? { message } : { error: message });
  try {
    const input = parseJsonBody(req, body);
    const route = `${req.method} ${path.replace(/^\/v1\/(certificates|trusted-cas)\/[^/]+/, "/v1/$1/:fp")}`;
    const fp = () => routeFingerprint(decodeParam(/^\/v1\/certificates\/([^/]+)/.exec(path)![1]!), ctx.rules);
    switch (route) {
      case "GET /v1/ca":
        return await serveCa(req, res, ctx);
      case "GET /v1/ca/crl":
        // `getRootCRL()` with renew false (`caRoutes.js` v0.7.0/v0.8.0, `trusted-cas-router.js` v0.5.0):
        // EJBCA's latest CRL, made anew first only under `ejbca.forcecrlrenew` (false by default).
        // `res.status(200).json(result)`: Express's ETag, and 304 to a matching If-None-Match (express-etag.ts).
        return sendExpressJson(req, res, 200, {
          crl: crlPem(
            await latestCrl(
              ctx.opts.dir,
              ctx.ca,
              "x509",
              ctx.opts.crypto,
              ctx.opts.forceCrlRenew ? "force" : "when-due",
            ),
          ),
        });
      case "POST /v1/certificates":
        return await generate(res, input, ctx, tenant);
      case "GET /v1/certificates":
        return await listCertificates(res, url, ctx, tenant);
      case "GET /v1/certificates/:fp": {
        const record = (await loadState(ctx.opts.dir))!.x509Certificates?.[fp()];
        if (!record || record.tenant !== tenant) throw notFound(fp(), tenant);
        return send(res, 200, served(fp(), record));
      }
      case "PATCH /v1/certificates/:fp":
        return await changeOwner(res, fp(), input, ctx, tenant);
      case "DELETE /v1/certificates/:fp":
        return await deleteCertificate(res, fp(), ctx, tenant);
      case "POST /v1/trusted-cas":
      case "GET /v1/trusted-cas":
      case "GET /v1/trusted-cas/:fp":
      case "PATCH /v1/trusted-cas/:fp":
      case "DELETE /v1/trusted-cas/:fp":
        // v0.7.0's `trustedCARoutes.js` (v0.5.0: `trusted-cas-router.js`, stubs).
        return await trustedCas(
          res,
          url,
          route,
          route.endsWith(":fp") ? decodeParam(/^\/v1\/trusted-cas\/([^/]+)/.exec(path)![1]!) : undefined,
          input,
          ctx,
          tenant,
        );
      case "DELETE /v1/certificates/:fp/belongsto":
        if (ctx.rules === "v0.5") break; // v0.7.0's certificate-belongsto-route
        // `changeOwnership(filter, {})`: `{belongsTo: {}, modifiedAt}`, as a PATCH.
        await ownRecord(ctx, fp(), tenant, (s, key) => setOwner(s.x509Certificates![key]!, {}, ctx.rules));
        res.writeHead(204).end();
        return;
    }
    // Both generations answer a route they lack with JSON (`createError.NotFound()` in v0.5).
    return fail(404, "Not Found");
  } catch (err) {
    if (err instanceof SchemaRefusal) return send(res, 400, schemaFailure(ctx.rules, err.schemaId, err.errors));
    if (err instanceof X509Refusal)
      return err.detail && ctx.rules === "v0.7"
        ? send(res, err.status, { error: err.message, detail: err.detail })
        : fail(err.status, err.message);
    process.emitWarning(`lab x509: ${String(err)}`);
    return fail(500, UNEXPECTED);
  }
}

/**
 * `GET /certificates`: the tenant's records that pass the generation's filter (the query's fields
 * on v0.5, `?keyVal=` on v0.8; the tenant is always the token's), a page of them.
 */
async function listCertificates(res: ServerResponse, url: URL, ctx: X509Context, tenant: string): Promise<void> {
  const query = queryOf(url);
  const filter = { ...certificateFilter(query, ctx.rules), tenant };
  const records = Object.entries((await loadState(ctx.opts.dir))!.x509Certificates ?? {}).map(([fp, r]) =>
    served(fp, r),
  );
  return sendPage(
    res,
    url,
    query,
    "certificates",
    records.filter((r) => matches(r, filter)),
    ctx.rules,
  );
}

/**
 * A record as the service sends it: as stored, in the stored order (MongoDB keeps a document's
 * fields in the order they were written; the service projects, then deletes `_id`, `__v` and the
 * subdocuments' `_id`); one from a lab that did not store the fingerprint in it, with it first.
 */
function served(fp: string, record: X509Record): Record<string, unknown> {
  return record.fingerprint === undefined ? { fingerprint: fp, ...record } : { ...record };
}

/**
 * A certificate's owner changed as `changeOwnership` does it, with MongoDB's `$set` (a field the
 * document lacks goes last): v0.5 (`certificates-service.js` at v0.5.0) sets `belongsTo` alone,
 * the record having no `modifiedAt`; v0.8 (`CertificateService.js` at v0.8.0) sets `belongsTo`
 * and `modifiedAt`.
 */
function setOwner(record: X509Record, belongsTo: { device?: string }, rules: X509Rules): void {
  record.belongsTo = belongsTo;
  if (rules === "v0.7") record.modifiedAt = new Date().toISOString();
}

/** Changes the tenant's record `fp` in one go, or answers "No records found". */
async function ownRecord(
  ctx: X509Context,
  fp: string,
  tenant: string,
  change: (s: LabState, key: string) => void,
): Promise<void> {
  const found = await updateState(ctx.opts.dir, (s) => {
    const record = s.x509Certificates?.[fp];
    if (!record || record.tenant !== tenant) return false;
    change(s, fp);
    return true;
  });
  if (!found) throw notFound(fp, tenant);
}

/**
 * `DELETE /certificates/:fingerprint`: `deleteCertificate` (`services/CertificateService.js` at
 * v0.7.0/v0.8.0, `services/certificates-service.js` at v0.5.0) removes the tenant's record, then,
 * only if the platform issued it (`issuedByDojotPki`), revokes it in EJBCA with reason superseded
 * (the facade's `revokeCertificate`: `revokeCert(issuerDN, serialNumber, 4)`); a registered
 * (external) certificate is only forgotten. 204 with no body (`res.sendStatus(204)`).
 */
async function deleteCertificate(res: ServerResponse, fp: string, ctx: X509Context, tenant: string): Promise<void> {
  const revokedAt = new Date();
  await ownRecord(ctx, fp, tenant, (s, key) => {
    const record = s.x509Certificates![key]!;
    delete s.x509Certificates![key];
    if (record.issuedByDojotPki)
      revoke(s, "x509", new x509.X509Certificate(record.pem).serialNumber, revokedAt, REVOCATION_REASON.superseded);
  });
  res.writeHead(204).end();
}

/** Express's `decodeURIComponent` of a route parameter: a bad escape is its 400. */
function decodeParam(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new X509Refusal(400, `Failed to decode param '${raw}'`);
  }
}

/** `GET /v1/ca`: the X509 Identity CA's certificate and fingerprint, as a `ca` fault spoils them. */
async function serveCa(req: IncomingMessage, res: ServerResponse, ctx: X509Context): Promise<void> {
  const fault = ctx.faults.take("ca");
  skewClock(res, fault);
  const served = fault === "wrong-ca" ? await ctx.otherCa() : ctx.ca;
  // `res.status(200).json(result)` (`caRoutes.js` v0.7.0/v0.8.0): Express's ETag and 304 (express-etag.ts).
  return sendExpressJson(req, res, 200, {
    certificateFingerprint: sha256ColonHex(served.cert.rawData),
    caPem: pemOf(withTrailingData(served.cert.rawData, fault)),
  });
}

/** `POST /certificates` with a CSR: schema, key, subject, owner, then EJBCA with the X509Identity profile. */
async function generate(res: ServerResponse, input: unknown, ctx: X509Context, tenant: string): Promise<void> {
  const { schemaId, errors } = checkGenerateBody(input, ctx.rules);
  if (errors.length > 0) throw new SchemaRefusal(schemaId, errors);
  const body = input as { csr?: string; belongsTo?: { device?: string | null; application?: unknown } };
  const belongsTo = body.belongsTo ?? {};
  if (ctx.rules === "v0.7" && "application" in belongsTo) {
    throw new X509Refusal(403, "Operations on certificates for applications are not authorized through this endpoint.");
  }
  if (body.csr === undefined)
    return register(body as { caFingerprint?: string; certificateChain?: string }, ctx, tenant, res);
  // v0.7+ `sanitizeLineBreaks`: CRLF to LF, no trailing line break.
  const csrPem = ctx.rules === "v0.7" ? body.csr.replace(/\r\n|\r/g, "\n").replace(/\n+$/, "") : body.csr;
  const der = pemDer(csrPem);
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(der);
  } catch {
    throw new Error("pkijs: the data is not a CertificationRequest"); // a 500, as pkijs throws there
  }
  checkPublicKey(csr.publicKey.rawData);
  const subject = subjectDn(csr.subjectName.toJSON(), ctx.rules, tenant);
  if (ctx.rules === "v0.7" && typeof belongsTo.device === "string")
    await ensureDeviceExists(belongsTo.device, ctx, tenant);
  let signed: Awaited<ReturnType<typeof parseSignedCsr>>;
  try {
    signed = await parseSignedCsr(der, ctx.opts.crypto);
  } catch (err) {
    // EJBCA refuses it; the service's EJBCA facade turns every SOAP fault into a plain Error: a 500.
    if (err instanceof ProfileRefusal) throw new Error(`EJBCA: ${err.message}`);
    throw err;
  }
  const fault = ctx.faults.take("sign");
  skewClock(res, fault);
  const cert = await issue(signed, ejbcaName(subject.pairs), ctx, fault);
  const fp = sha256ColonHex(cert.rawData); // `getFingerprint`
  const pem = pemOf(cert.rawData);
  const device = typeof belongsTo.device === "string" ? belongsTo.device : undefined;
  const record = issuedRecord(ctx.rules, { fingerprint: fp, pem, device, subjectDN: subject.text, cert, tenant });
  await updateState(ctx.opts.dir, (s) => {
    s.x509Certificates ??= {};
    s.x509Certificates[fp] = record;
  });
  // The service stores what EJBCA issued before it answers (`generateCertificate`): a fault shapes
  // the reply, not the record, so a later list, GET or DELETE by fingerprint finds the certificate.
  if (fault === "reply-lost") return void res.socket?.destroy();
  return send(res, 201, { certificateFingerprint: fp, certificatePem: pemOf(withTrailingData(cert.rawData, fault)) });
}

/**
 * The record of a certificate the service issued, its fields in the order MongoDB stores them as
 * mongoose writes the model: the defaults that are not functions first, then the fields given, in
 * the order the service names them, then `Date.now` defaults (as `apidocs/api-description.apib`
 * shows them). v0.5 (`db.js`, `generateCertificate` in `certificates-service.js` at v0.5.0):
 * `belongsTo` always, `{}` when unbound; no `modifiedAt`. v0.8 (`CertificateModel.js`,
 * `CertificateService.generateCertificate` at v0.8.0): `subjectDN` and `validity`, a `modifiedAt`
 * from the creation, and no `belongsTo` at all while unbound (what the real code answered).
 */
function issuedRecord(
  rules: X509Rules,
  r: {
    fingerprint: string;
    pem: string;
    device: string | undefined;
    subjectDN: string;
    cert: x509.X509Certificate;
    tenant: string;
  },
): X509Record {
  const now = new Date().toISOString();
  const owner = r.device === undefined ? undefined : { device: r.device };
  if (rules === "v0.5") {
    return {
      issuedByDojotPki: true,
      autoRegistered: false,
      fingerprint: r.fingerprint,
      pem: r.pem,
      belongsTo: owner ?? {},
      tenant: r.tenant,
      createdAt: now,
    };
  }
  const validity = { notBefore: r.cert.notBefore.toISOString(), notAfter: r.cert.notAfter.toISOString() };
  return {
    issuedByDojotPki: true,
    autoRegistered: false,
    fingerprint: r.fingerprint,
    pem: r.pem,
    ...(owner && { belongsTo: owner }),
    subjectDN: r.subjectDN,
    validity,
    tenant: r.tenant,
    createdAt: now,
    modifiedAt: now,
  };
}

/**
 * EJBCA signs the CSR with the X509Identity profile, for `certLifetime` or `VALIDITY_DAYS`, the
 * times kept to the minute as EJBCA keeps the start and end times the service sends (the issued
 * certificates read hh:mm:00), a `certLifetime` rounded up to the minute so that the certificate is
 * valid when issued and for at least that long; a `sign` fault changes what it says.
 */
async function issue(
  csr: x509.Pkcs10CertificateRequest,
  subject: x509.JsonName,
  ctx: X509Context,
  fault: FaultKind | undefined,
): Promise<x509.X509Certificate> {
  const { signer, overrides } = await certificateFault(fault, ctx.ca, ctx.otherCa, ctx.opts.crypto);
  const toMinute = (t: number, up = false) => (up ? Math.ceil : Math.floor)(t / 60_000) * 60_000;
  const sent = Date.now();
  // The lab's --cert-lifetime ends on the minute after, not before: cut down, a lifetime shorter
  // than a minute (30s) could end before the certificate is issued.
  const lifetime = ctx.opts.certLifetime;
  return signAsEjbca(
    {
      ca: signer,
      csr,
      subject,
      profileExtensions: [
        ...(await x509IdentityExtensions(signer, overrides.publicKey ?? csr.publicKey, ctx.opts.crypto)),
        ...(overrides.extensions ?? []),
      ],
      extensionOverride: ctx.opts.extensionOverride,
      notBefore: overrides.notBefore ?? new Date(toMinute(sent)),
      notAfter:
        overrides.notAfter ??
        new Date(lifetime === undefined ? toMinute(sent + VALIDITY_DAYS * DAY) : toMinute(sent + lifetime, true)),
      publicKey: overrides.publicKey,
    },
    ctx.opts.crypto,
  );
}

/**
 * Registering a certificate from another CA: v0.5 `registerCertificate` is a stub ("not available
 * yet", 404); v0.7+ in `x509-register.ts`.
 */
function register(
  body: { caFingerprint?: string; certificateChain?: string },
  ctx: X509Context,
  tenant: string,
  res: ServerResponse,
): Promise<void> {
  if (ctx.rules === "v0.5") throw new X509Refusal(404, "This operation is not available yet");
  return registerCertificate(
    res,
    body as { caFingerprint?: string; certificateChain: string; belongsTo?: { device?: string | null } },
    ctx,
    tenant,
  );
}

/**
 * `PATCH /certificates/:fingerprint` `{belongsTo}`: v0.5 changes the owner of the record whose
 * stored (colon) fingerprint equals the upper-cased parameter; v0.7+ normalises the parameter and
 * first checks that the device exists for the tenant (`CertificateService.changeOwnership`).
 */
async function changeOwner(
  res: ServerResponse,
  fp: string,
  input: unknown,
  ctx: X509Context,
  tenant: string,
): Promise<void> {
  const { schemaId, errors } = checkChangeOwnerBody(input, ctx.rules);
  if (errors.length > 0) throw new SchemaRefusal(schemaId, errors);
  const belongsTo = (input as { belongsTo: { device?: string | null; application?: unknown } }).belongsTo;
  if (ctx.rules === "v0.7" && "application" in belongsTo) {
    throw new X509Refusal(403, "Operations on certificates for applications are not authorized through this endpoint.");
  }
  if (ctx.rules === "v0.7" && typeof belongsTo.device === "string")
    await ensureDeviceExists(belongsTo.device, ctx, tenant);
  await ownRecord(ctx, fp, tenant, (s, key) =>
    setOwner(
      s.x509Certificates![key]!,
      typeof belongsTo.device === "string" ? { device: belongsTo.device } : {},
      ctx.rules,
    ),
  );
  res.writeHead(204).end();
}

/** "No records found …" with the filter as the service builds it (fingerprint, then the tenant it adds). */
function notFound(fp: string, tenant: string): X509Refusal {
  return new X509Refusal(
    404,
    `No records found for the following parameters: ${JSON.stringify({ fingerprint: fp, tenant })}`,
  );
}

/**
 * The body as `express.json()` (body-parser, strict) leaves it: a JSON object or array when the
 * content type is JSON, else `{}`. Anything else there is body-parser's 400 with the message the
 * services' Node 12 gives ("Unexpected token x in JSON at position n").
 */
function parseJsonBody(req: IncomingMessage, body: string): unknown {
  const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "application/json" || body.length === 0) return {};
  const first = body.search(/\S/);
  if (first >= 0 && body[first] !== "{" && body[first] !== "[")
    throw new X509Refusal(400, `Unexpected token ${body[first]} in JSON at position ${first}`);
  try {
    return JSON.parse(body);
  } catch (err) {
    throw new X509Refusal(400, node12JsonError(body, (err as Error).message));
  }
}

/** V8's newer JSON.parse messages, told the old way (position where this Node gives it, else the first occurrence of the token). */
function node12JsonError(body: string, message: string): string {
  if (/end of JSON input/.test(message)) return "Unexpected end of JSON input";
  const at = /position (\d+)/.exec(message);
  const token = /Unexpected token '(.)'/.exec(message)?.[1];
  const position = at ? Number(at[1]) : token ? body.indexOf(token) : -1;
  return position >= 0 && position < body.length
    ? `Unexpected token ${body[position]} in JSON at position ${position}`
    : "Unexpected end of JSON input";
}

/** PEM with LF line breaks and no trailing newline, as both generations return it. */
function pemOf(der: ArrayBuffer | Uint8Array): string {
  return toPem(der, "CERTIFICATE").trimEnd();
}
