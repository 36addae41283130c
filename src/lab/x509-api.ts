import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import * as x509 from "../crypto/x509.js";
import { toPem } from "../crypto/keys.js";
import type { CryptoProvider } from "../crypto/provider.js";
import { parseSignedCsr, ProfileRefusal, signAsEjbca, type LabCa } from "./ca.js";
import { send } from "./replies.js";
import { loadState, updateState, type X509Record } from "./state.js";
import { checkChangeOwnerBody, checkGenerateBody, checkPublicKey, ejbcaName, routeFingerprint, schemaFailure, subjectDn, X509Refusal, type X509Rules } from "./x509-rules.js";

export type { X509Rules } from "./x509-rules.js";

/** Which dojot API the lab serves. */
export type LabApi = "legacy" | "x509" | "both";

/** What the x509 API needs of the lab. */
export interface X509Context {
  opts: { dir: string; crypto: CryptoProvider; autoRegister: boolean; extensionOverride: boolean };
  /** The `X509 Identity CA`. */
  ca: LabCa;
  rules: X509Rules;
}

const DAY = 86_400_000;
/** `certificate.validity` (v0.7+) / `CERT_VALIDITY_DAYS` (v0.5): 365 days, sent to EJBCA as start and end time. */
const VALIDITY_DAYS = 365;
/** The 500 body both generations send (`app.js` v0.5; dojot-microservice-sdk-js `defaultErrorHandler` v0.7+). */
const UNEXPECTED = "An unexpected error has occurred.";

/**
 * x509-identity-mgmt behind Kong (`/x509/v1/...` reaches the service's `/api/v1/...`), as its routes
 * are at dojot v0.5.0 (`src/routes/certificates-router.js`) and v0.7.0/v0.8.0
 * (`src/express/routes/certificateRoutes.js`, `caRoutes.js`). `body` is the raw request body.
 */
export async function handleX509(req: IncomingMessage, res: ServerResponse, url: URL, body: string, ctx: X509Context, tenant: string): Promise<void> {
  const path = url.pathname.slice("/x509".length).replace(/\/+$/, "");
  // v0.5: `{message}` from app.js's error handler; v0.7+: the SDK's `{error, detail?}`.
  const fail = (status: number, message: string) => send(res, status, ctx.rules === "v0.5" ? { message } : { error: message });
  try {
    const input = parseJsonBody(req, body);
    if (req.method === "GET" && path === "/v1/ca") {
      return send(res, 200, { certificateFingerprint: fingerprint(ctx.ca.cert.rawData), caPem: pemOf(ctx.ca.cert.rawData) });
    }
    if (req.method === "POST" && path === "/v1/certificates") return await generate(res, input, ctx, tenant);
    const one = /^\/v1\/certificates\/([^/]+)$/.exec(path);
    if (one && (req.method === "GET" || req.method === "PATCH" || req.method === "DELETE")) {
      const fp = routeFingerprint(decodeURIComponent(one[1]!), ctx.rules);
      if (req.method === "PATCH") return await changeOwner(res, fp, input, ctx, tenant);
      const record = (await loadState(ctx.opts.dir))!.x509Certificates?.[fp];
      if (!record || record.tenant !== tenant) throw notFound(fp, tenant);
      if (req.method === "GET") return send(res, 200, { ...record, fingerprint: fp });
      await updateState(ctx.opts.dir, (s) => delete s.x509Certificates![fp]);
      res.writeHead(204).end();
      return;
    }
    // Both generations answer a route they lack with JSON (`createError.NotFound()` in v0.5).
    return fail(404, "Not Found");
  } catch (err) {
    if (err instanceof SchemaRefusal) return send(res, 400, schemaFailure(ctx.rules, err.schemaId, err.errors));
    if (err instanceof X509Refusal) return fail(err.status, err.message);
    process.emitWarning(`lab x509: ${String(err)}`);
    return fail(500, UNEXPECTED);
  }
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
  if (body.csr === undefined) throw new X509Refusal(404, "This operation is not available yet"); // registering an external certificate
  // v0.7+ `sanitizeLineBreaks`: CRLF to LF, no trailing line break.
  const csrPem = ctx.rules === "v0.7" ? body.csr.replace(/\r\n|\r/g, "\n").replace(/\n+$/, "") : body.csr;
  const der = new Uint8Array(Buffer.from(csrPem.replace(/(^-.+?-.+$|[^A-Za-z0-9+/=])/gm, ""), "base64"));
  if (!parsesAsBer(der)) throw new X509Refusal(400, "Can not parse ASN1 data structure from binary data");
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(der);
  } catch {
    throw new Error("pkijs: the data is not a CertificationRequest"); // a 500, as pkijs throws there
  }
  checkPublicKey(csr.publicKey.rawData);
  const subject = subjectDn(csr.subjectName.toJSON(), ctx.rules, tenant);
  if (ctx.rules === "v0.7" && typeof belongsTo.device === "string") await ensureDeviceExists(belongsTo.device, ctx, tenant);
  let signed;
  try {
    signed = await parseSignedCsr(der, ctx.opts.crypto);
  } catch (err) {
    // EJBCA refuses it; the service's EJBCA facade turns every SOAP fault into a plain Error: a 500.
    if (err instanceof ProfileRefusal) throw new Error(`EJBCA: ${err.message}`);
    throw err;
  }
  const now = Date.now();
  const cert = await signAsEjbca(
    {
      ca: ctx.ca,
      csr: signed,
      subject: ejbcaName(subject.pairs),
      profileExtensions: await x509IdentityExtensions(ctx.ca, signed.publicKey, ctx.opts.crypto),
      extensionOverride: ctx.opts.extensionOverride,
      notBefore: new Date(now),
      notAfter: new Date(now + VALIDITY_DAYS * DAY),
    },
    ctx.opts.crypto,
  );
  const fp = fingerprint(cert.rawData);
  const pem = pemOf(cert.rawData);
  const record: X509Record = {
    pem,
    ...(ctx.rules === "v0.7" ? { subjectDN: subject.text, validity: { notBefore: cert.notBefore.toISOString(), notAfter: cert.notAfter.toISOString() } } : {}),
    belongsTo: typeof belongsTo.device === "string" ? { device: belongsTo.device } : {},
    tenant,
    issuedByDojotPki: true,
    autoRegistered: false,
    createdAt: new Date(now).toISOString(),
  };
  await updateState(ctx.opts.dir, (s) => {
    s.x509Certificates ??= {};
    s.x509Certificates[fp] = record;
  });
  return send(res, 201, { certificateFingerprint: fp, certificatePem: pem });
}

/**
 * `PATCH /certificates/:fingerprint` `{belongsTo}`: v0.5 changes the owner of the record whose
 * stored (colon) fingerprint equals the upper-cased parameter; v0.7+ normalises the parameter and
 * first checks that the device exists for the tenant (`CertificateService.changeOwnership`).
 */
async function changeOwner(res: ServerResponse, fp: string, input: unknown, ctx: X509Context, tenant: string): Promise<void> {
  const { schemaId, errors } = checkChangeOwnerBody(input, ctx.rules);
  if (errors.length > 0) throw new SchemaRefusal(schemaId, errors);
  const belongsTo = (input as { belongsTo: { device?: string | null; application?: unknown } }).belongsTo;
  if (ctx.rules === "v0.7" && "application" in belongsTo) {
    throw new X509Refusal(403, "Operations on certificates for applications are not authorized through this endpoint.");
  }
  if (ctx.rules === "v0.7" && typeof belongsTo.device === "string") await ensureDeviceExists(belongsTo.device, ctx, tenant);
  const found = await updateState(ctx.opts.dir, (s) => {
    const record = s.x509Certificates?.[fp];
    if (!record || record.tenant !== tenant) return false;
    record.belongsTo = typeof belongsTo.device === "string" ? { device: belongsTo.device } : {};
    record.modifiedAt = new Date().toISOString();
    return true;
  });
  if (!found) throw notFound(fp, tenant);
  res.writeHead(204).end();
}

/** `ensureDeviceExists` (v0.7+, `certservice.check.device.exists` true); `--auto-register` lets any device id through. */
async function ensureDeviceExists(device: string, ctx: X509Context, tenant: string): Promise<void> {
  if (ctx.opts.autoRegister) return;
  const state = await loadState(ctx.opts.dir);
  if (!state?.devices[device]) throw new X509Refusal(400, `Device identifier '${device}' was not found for tenant '${tenant}'.`);
}

/** "No records found …" with the filter as the service builds it (fingerprint, then the tenant it adds). */
function notFound(fp: string, tenant: string): X509Refusal {
  return new X509Refusal(404, `No records found for the following parameters: ${JSON.stringify({ fingerprint: fp, tenant })}`);
}

/**
 * The X509Identity certificate profile (`ejbca/resources/profiles/certprofile_X509Identity-1711483265.xml`,
 * the same at v0.5.0 and v0.8.0): basicConstraints critical CA:FALSE; keyUsage critical
 * digitalSignature, nonRepudiation, keyEncipherment, keyAgreement; extendedKeyUsage clientAuth,
 * emailProtection, serverAuth (the profile's list, in its order); SKI, AKI; the CA's default CRL
 * distribution point (`defaultCRLDistPoint` in `certificate-authorities-creation.sh`).
 */
async function x509IdentityExtensions(ca: LabCa, publicKey: x509.PublicKey, crypto: CryptoProvider): Promise<x509.Extension[]> {
  // EJBCA's form of the CA's DN: most specific first, no spaces (`UID=…,CN=X509 Identity CA,OU=…,O=…`).
  const dn = ca.cert.subjectName.toJSON().reverse().flatMap((rdn) => Object.entries(rdn).map(([k, v]) => `${k === "0.9.2342.19200300.100.1.1" ? "UID" : k}=${v[0]}`));
  const issuer = encodeURIComponent(dn.join(","));
  return [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.nonRepudiation | x509.KeyUsageFlags.keyEncipherment | x509.KeyUsageFlags.keyAgreement,
      true,
    ),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth, x509.ExtendedKeyUsage.emailProtection, x509.ExtendedKeyUsage.serverAuth], false),
    await x509.SubjectKeyIdentifierExtension.create(publicKey, false, crypto),
    await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey, false, crypto),
    new x509.CRLDistributionPointsExtension([`http://x509-ejbca:8080/ejbca/publicweb/webdist/certdist?cmd=crl&issuer=${issuer}`]),
  ];
}

/** A schema failure with ajv's errors. */
class SchemaRefusal extends Error {
  constructor(
    readonly schemaId: string,
    readonly errors: ReturnType<typeof checkGenerateBody>["errors"],
  ) {
    super("schema validation failure");
  }
}

/**
 * The body as `express.json()` leaves it: a JSON object or array when the content type is JSON
 * (anything else there is body-parser's 400), else `{}`.
 */
function parseJsonBody(req: IncomingMessage, body: string): unknown {
  const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "application/json" || body.length === 0) return {};
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (err) {
    throw new X509Refusal(400, (err as Error).message);
  }
  if (!value || typeof value !== "object") throw new X509Refusal(400, `Unexpected token ${body.trim()[0] ?? ""} in JSON at position 0`);
  return value;
}

/** Whether asn1js.fromBER would find one element (its tag and length fit in the data). */
function parsesAsBer(der: Uint8Array): boolean {
  if (der.length < 2) return false;
  let i = 1;
  if ((der[0]! & 0x1f) === 0x1f) while (i < der.length && der[i++]! & 0x80);
  if (i >= der.length) return false;
  const first = der[i++]!;
  if (first === 0x80) return true; // indefinite length
  let length = first;
  if (first & 0x80) {
    const n = first & 0x7f;
    if (n > 4 || i + n > der.length) return false;
    length = 0;
    for (let k = 0; k < n; k++) length = length * 256 + der[i++]!;
  }
  return i + length <= der.length;
}

/** PEM with LF line breaks and no trailing newline, as both generations return it. */
function pemOf(der: ArrayBuffer): string {
  return toPem(der, "CERTIFICATE").trimEnd();
}

/** SHA-256 of DER as uppercase hex pairs joined by colons (`getFingerprint`). */
function fingerprint(der: ArrayBuffer): string {
  return createHash("sha256").update(new Uint8Array(der)).digest("hex").toUpperCase().match(/../g)!.join(":");
}
