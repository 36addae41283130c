import type { ServerResponse } from "node:http";
import { type CryptoProvider, sha256ColonHex } from "cert-retriever";
import { send } from "./replies.js";
import { loadState, type TrustedCaRecord, updateState, type X509Record } from "./state.js";
import * as x509 from "./x509.js";
import type { X509Context } from "./x509-context.js";
import { sendPage } from "./x509-list.js";
import { queryOf } from "./x509-query.js";
import { dnText, pemDer, routeFingerprint, X509Refusal } from "./x509-rules.js";
import { checkNewTrustedCaBody, checkUpdTrustedCaBody, SchemaRefusal } from "./x509-schemas.js";

/**
 * Certificates from other CAs, as x509-identity-mgmt registers them (dojot/dojot
 * `iam/x509-identity-mgmt/js/` at v0.7.0, the same at v0.8.0): `POST /certificates` with
 * `certificateChain` (`express/routes/certificateRoutes.js`, `services/CertificateService.js`
 * `registerCertificate`) and the trusted root CAs it checks them against
 * (`express/routes/trustedCARoutes.js`, `services/TrustedCAService.js`), with `core/pkiUtils.js`
 * and pkijs 2.1.88's `CertificateChainValidationEngine` (the version its package-lock pins). v0.5.0
 * (`x509-identity-mgmt/js/src/routes/trusted-cas-router.js`) has only stubs. With the default
 * configuration (`config/default.conf`): external certificates and CAs must be valid for one more
 * day, no limit on CAs per tenant, no automatic registration of a chain's root CA, the device must
 * exist. When this and the real code disagree, this is wrong.
 */

const DAY = 86_400_000;
/** `certificate.external.minimumvaliditydays` and `certificate.external.ca.minimumvaliditydays`. */
const MINIMUM_VALIDITY_DAYS = 1;
/** `ejbca.rootca`: a trusted CA may not carry the platform's own CA's CN (`checkRootExternalCN`). */
const ROOT_CA_CN = "X509 Identity CA";
/** `sanitizeParams.certRegExp`: each certificate of a chain, then `sanitizeLineBreaks`. */
const CERT_PEM =
  /-{5}BEGIN CERTIFICATE-{5}(\r\n|\r|\n)([-A-Za-z0-9+/=]{1,64}(\r\n|\r|\n))+-{5}END CERTIFICATE-{5}(\r\n|\r|\n)?/g;

/** `ensureDeviceExists` (v0.7+, `certservice.check.device.exists` true); `--auto-register` lets any device id through. */
export async function ensureDeviceExists(device: string, ctx: X509Context, tenant: string): Promise<void> {
  if (ctx.opts.autoRegister) return;
  const state = await loadState(ctx.opts.dir);
  if (!state?.devices[device])
    throw new X509Refusal(400, `Device identifier '${device}' was not found for tenant '${tenant}'.`);
}

/**
 * `registerCertificate` (v0.7+), in its order: the owner; the first certificate of the chain
 * parsed, valid for one more day, not a CA, not registered yet by anyone (the count has no tenant
 * filter); a self-signed CA last in the chain is its root (and must match `caFingerprint`); that
 * root must be one of the tenant's trusted CAs; then the chain of trust; 201 `{certificateFingerprint}`.
 */
export async function registerCertificate(
  res: ServerResponse,
  body: { caFingerprint?: string; certificateChain: string; belongsTo?: { device?: string | null } },
  ctx: X509Context,
  tenant: string,
): Promise<void> {
  const chain = (body.certificateChain.match(CERT_PEM) ?? []).map(sanitizeLineBreaks);
  const caFingerprint = routeFingerprint(body.caFingerprint ?? "", "v0.7");
  const belongsTo = body.belongsTo ?? {};
  if (typeof belongsTo.device === "string" && belongsTo.device) await ensureDeviceExists(belongsTo.device, ctx, tenant);
  const pem = chain[0]!;
  const cert = parseCert(pem);
  const fingerprint = fingerprintOf(pem);
  checkRemainingDays(cert);
  if (cert.getExtension(x509.BasicConstraintsExtension)?.ca) {
    throw new X509Refusal(
      400,
      "The certificate is a CA certificate. It contains the flag 'CA:TRUE' in the extension 'Basic Constraints'.",
    );
  }
  const state = (await loadState(ctx.opts.dir))!;
  if (state.x509Certificates?.[fingerprint])
    throw new X509Refusal(409, `The certificate with fingerprint '${fingerprint}' already exists.`);
  let rootFingerprint = caFingerprint;
  if (chain.length > 1 && (await isRootCa(parseCert(chain.at(-1)!), ctx.opts.crypto))) {
    rootFingerprint = fingerprintOf(chain.pop()!);
    if (caFingerprint && caFingerprint !== rootFingerprint) {
      throw new X509Refusal(
        400,
        "The fingerprint of the CA defined in the payload of the request does not match the fingerprint of the certificate of the root CA that was also informed in the certificate chain.",
      );
    }
  }
  if (!rootFingerprint) {
    throw new X509Refusal(
      400,
      "It was not possible to obtain the fingerprint of the root CA. Make sure to inform it in the request payload or inform the root CA certificate as the last one in the chain of certificates.",
    );
  }
  const trusted = state.x509TrustedCas?.find((ca) => ca.tenant === tenant && ca.caFingerprint === rootFingerprint);
  // `getPEM` fails; `certificate.external.ca.autoregistration` is false by default, so no root from the chain is registered.
  if (!trusted) throw new X509Refusal(400, "The root CA certificate is not registered as a trusted certificate yet.");
  chain.push(trusted.caPem);
  const certs = chain.map(parseCert);
  const verdict = await chainEngine([certs.at(-1)!], certs, ctx.opts.crypto);
  if (!verdict.result)
    throw new X509Refusal(400, "The certificate chain of trust is not valid.", {
      chainOfTrustResult: verdict.resultMessage,
    });
  const owner = typeof belongsTo.device === "string" ? { belongsTo: { device: belongsTo.device } } : {};
  // The model's fields as MongoDB stores them (see `issuedRecord` in x509-api.ts): the defaults first
  // (`issuedByDojotPki` is set, in its place), those `registerCertificate` names, in its order, then the dates.
  const now = new Date().toISOString();
  const validity = { notBefore: cert.notBefore.toISOString(), notAfter: cert.notAfter.toISOString() };
  const record: X509Record = {
    issuedByDojotPki: false,
    autoRegistered: false,
    caFingerprint: rootFingerprint,
    fingerprint,
    pem,
    subjectDN: dnText(cert.subjectName.toJSON()),
    validity,
    ...owner,
    tenant,
    createdAt: now,
    modifiedAt: now,
  };
  await updateState(ctx.opts.dir, (s) => {
    s.x509Certificates ??= {};
    s.x509Certificates[fingerprint] = record;
  });
  return send(res, 201, { certificateFingerprint: fingerprint });
}

/**
 * The `/trusted-cas` routes. v0.5.0: stubs that answer `res.sendStatus` (Express's text body)
 * after their schema. v0.7+: `TrustedCAService`, by tenant.
 */
export async function trustedCas(
  res: ServerResponse,
  url: URL,
  route: string,
  rawParam: string | undefined,
  input: unknown,
  ctx: X509Context,
  tenant: string,
): Promise<void> {
  const schema =
    route === "POST /v1/trusted-cas"
      ? checkNewTrustedCaBody
      : route === "PATCH /v1/trusted-cas/:fp"
        ? checkUpdTrustedCaBody
        : undefined;
  const failure = schema?.(input, ctx.rules);
  if (failure && failure.errors.length > 0) throw new SchemaRefusal(failure.schemaId, failure.errors);
  if (ctx.rules === "v0.5") {
    const status = route.startsWith("POST") ? 201 : route.startsWith("GET") ? 200 : 204;
    const text = status === 201 ? "Created" : status === 200 ? "OK" : "";
    res
      .writeHead(
        status,
        status === 204
          ? {}
          : { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(text) },
      )
      .end(status === 204 ? undefined : text);
    return;
  }
  const fp = rawParam === undefined ? "" : routeFingerprint(rawParam, "v0.7");
  switch (route) {
    case "POST /v1/trusted-cas":
      return registerTrustedCa(res, input as { caPem: string; allowAutoRegistration?: boolean }, ctx, tenant);
    case "GET /v1/trusted-cas":
      return sendPage(
        res,
        url,
        queryOf(url),
        "trusted-cas",
        ((await loadState(ctx.opts.dir))!.x509TrustedCas ?? []).filter((ca) => ca.tenant === tenant),
        ctx.rules,
      );
    case "GET /v1/trusted-cas/:fp": {
      const found = ((await loadState(ctx.opts.dir))!.x509TrustedCas ?? []).find(
        (ca) => ca.tenant === tenant && ca.caFingerprint === fp,
      );
      if (!found) throw caNotFound(fp, tenant);
      return send(res, 200, found);
    }
    case "PATCH /v1/trusted-cas/:fp": {
      const allow = (input as { allowAutoRegistration: boolean }).allowAutoRegistration;
      const changed = await updateState(ctx.opts.dir, (s) => {
        const found = s.x509TrustedCas?.find((ca) => ca.tenant === tenant && ca.caFingerprint === fp);
        if (found) Object.assign(found, { allowAutoRegistration: allow, modifiedAt: new Date().toISOString() });
        return Boolean(found);
      });
      if (!changed) throw caNotFound(fp, tenant);
      return send(res, 204, undefined);
    }
    case "DELETE /v1/trusted-cas/:fp":
      return deleteTrustedCa(res, fp, ctx, tenant);
  }
}

/** `TrustedCAService.registerCertificate`: one PEM, valid for one more day, a self-signed root CA, not the platform's CN, not registered yet by this tenant. */
async function registerTrustedCa(
  res: ServerResponse,
  body: { caPem: string; allowAutoRegistration?: boolean },
  ctx: X509Context,
  tenant: string,
): Promise<void> {
  const pems = body.caPem.match(CERT_PEM);
  if (!pems || pems.length > 1) throw new X509Refusal(400, "Only one CA certificate is expected per request.");
  const caPem = sanitizeLineBreaks(pems[0]!);
  const cert = parseCert(caPem);
  const caFingerprint = fingerprintOf(caPem);
  checkRemainingDays(cert);
  await assertRootCa(cert, ctx.opts.crypto);
  if (cert.subjectName.getField("CN")[0] === ROOT_CA_CN)
    throw new X509Refusal(400, "It is not allowed to register a CA certificate with the same 'CNAME' of the platform.");
  const now = new Date().toISOString();
  // `TrustedCAModel.js` at v0.8.0 as MongoDB stores it: the default that is not a function
  // (`allowAutoRegistration`, set in its place) first, then the fields the service names, then the
  // dates (the list in `apidocs/api-description.apib` at v0.8.0 shows them so).
  const record: TrustedCaRecord = {
    allowAutoRegistration: body.allowAutoRegistration ?? false,
    caFingerprint,
    caPem,
    subjectDN: dnText(cert.subjectName.toJSON()),
    validity: { notBefore: cert.notBefore.toISOString(), notAfter: cert.notAfter.toISOString() },
    tenant,
    createdAt: now,
    modifiedAt: now,
  };
  const added = await updateState(ctx.opts.dir, (s) => {
    s.x509TrustedCas ??= [];
    if (s.x509TrustedCas.some((ca) => ca.tenant === tenant && ca.caFingerprint === caFingerprint)) return false;
    s.x509TrustedCas.push(record);
    return true;
  });
  if (!added) throw new X509Refusal(409, `The certificate with fingerprint '${caFingerprint}' already exists.`);
  return send(res, 201, { caFingerprint });
}

/** `TrustedCAService.deleteCertificate`: refused while certificates registered by hand depend on it; auto-registered ones go with it. */
async function deleteTrustedCa(res: ServerResponse, fp: string, ctx: X509Context, tenant: string): Promise<void> {
  const outcome = await updateState(ctx.opts.dir, (s) => {
    const index = (s.x509TrustedCas ?? []).findIndex((ca) => ca.tenant === tenant && ca.caFingerprint === fp);
    if (index < 0) return "missing";
    const dependents = Object.entries(s.x509Certificates ?? {}).filter(
      ([, r]) => r.tenant === tenant && r.caFingerprint === fp,
    );
    if (dependents.some(([, r]) => !r.autoRegistered)) return "dependents";
    for (const [key] of dependents) delete s.x509Certificates![key];
    s.x509TrustedCas!.splice(index, 1);
    return "deleted";
  });
  if (outcome === "missing") throw caNotFound(fp, tenant);
  if (outcome === "dependents") {
    throw new X509Refusal(
      400,
      "There are certificates dependent on the CA to be removed, however these certificates are not marked as 'autoRegistered'. Therefore, they must be removed manually before removing their CA certificate.",
    );
  }
  return send(res, 204, undefined);
}

function caNotFound(fp: string, tenant: string): X509Refusal {
  return new X509Refusal(
    404,
    `No records found for the following parameters: ${JSON.stringify({ caFingerprint: fp, tenant })}`,
  );
}

/** `sanitizeLineBreaks`: CRLF and CR to LF, no trailing line break. */
function sanitizeLineBreaks(pem: string): string {
  return pem.replace(/\r\n|\r/g, "\n").replace(/\n+$/, "");
}

/** `pkiUtils.parseCert`: asn1js's 400 for what it cannot read; pkijs throws (a 500) on what is no certificate. */
function parseCert(pem: string): x509.X509Certificate {
  const der = pemDer(pem);
  try {
    return new x509.X509Certificate(der);
  } catch {
    throw new Error("pkijs: the data is not a Certificate");
  }
}

/** `getFingerprint`: SHA-256 of the PEM's base64, uppercase hex pairs joined by colons. */
function fingerprintOf(pem: string): string {
  return sha256ColonHex(pemDer(pem));
}

/** `checkRemainingDays`: whole days left, rounded down; only the end of validity is looked at. */
function checkRemainingDays(cert: x509.X509Certificate, now = Date.now()): void {
  const remainingDays = Math.floor((cert.notAfter.getTime() - now) / DAY);
  if (remainingDays < 0) throw new X509Refusal(400, `The certificate expired ${Math.abs(remainingDays)} days ago.`);
  if (remainingDays < MINIMUM_VALIDITY_DAYS)
    throw new X509Refusal(400, `The certificate must be valid for more than ${MINIMUM_VALIDITY_DAYS} days.`);
}

/** `assertRootCA`: basicConstraints, CA:TRUE, and a chain of itself that the engine accepts. */
async function assertRootCa(cert: x509.X509Certificate, crypto: CryptoProvider): Promise<void> {
  const constraints = cert.getExtension(x509.BasicConstraintsExtension);
  if (!constraints)
    throw new X509Refusal(
      400,
      "The certificate is not a CA certificate. It does not contain the extension 'Basic Constraints' (OID: 2.5.29.19).",
    );
  if (!constraints.ca)
    throw new X509Refusal(
      400,
      "The certificate is not a CA certificate. It does not contain the flag 'CA:TRUE' in the extension 'Basic Constraints'.",
    );
  if (!(await chainEngine([cert], [cert], crypto)).result)
    throw new X509Refusal(400, "The certificate is not a Root CA certificate (not self signed).");
}

async function isRootCa(cert: x509.X509Certificate, crypto: CryptoProvider): Promise<boolean> {
  return assertRootCa(cert, crypto).then(
    () => true,
    () => false,
  );
}

/**
 * pkijs 2.1.88 `CertificateChainValidationEngine.verify()` with no CRLs, OCSP responses, policies
 * or name constraints, at the current time. Its quirks are kept: duplicates are dropped (the
 * trusted ones first), and the "end entity" is the LAST certificate left, so in a chain
 * leaf, intermediate, root the path checked is intermediate -> root and the leaf's own signature
 * is never verified. Names are compared as encoded (pkijs compares them attribute by attribute).
 */
async function chainEngine(
  trustedCerts: x509.X509Certificate[],
  certs: x509.X509Certificate[],
  crypto: CryptoProvider,
): Promise<{ result: boolean; resultMessage: string }> {
  const local: x509.X509Certificate[] = [];
  for (const cert of [...trustedCerts, ...certs]) if (!local.some((c) => same(c, cert))) local.push(cert);
  const findIssuer = async (cert: x509.X509Certificate): Promise<x509.X509Certificate[]> => {
    if (
      sameBytes(cert.subjectName.toArrayBuffer(), cert.issuerName.toArrayBuffer()) &&
      (await signedBy(cert, cert, crypto))
    )
      return [cert];
    const keyId = cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId;
    const candidates = [...trustedCerts, ...certs].filter((issuer) => {
      const ski = keyId ? issuer.getExtension(x509.SubjectKeyIdentifierExtension) : null;
      if (ski) return ski.keyId === keyId;
      return sameBytes(cert.issuerName.toArrayBuffer(), issuer.subjectName.toArrayBuffer());
    });
    const verified: x509.X509Certificate[] = [];
    for (const issuer of candidates) if (await signedBy(cert, issuer, crypto)) verified.push(issuer);
    return verified;
  };
  const buildPath = async (
    cert: x509.X509Certificate,
    seen: x509.X509Certificate[] = [],
  ): Promise<x509.X509Certificate[][]> => {
    const issuers = await findIssuer(cert);
    if (issuers.length === 0) throw new Error("No valid certificate paths found");
    const paths: x509.X509Certificate[][] = [];
    for (const issuer of issuers) {
      if (same(issuer, cert)) {
        paths.push([issuer]);
        continue;
      }
      if (seen.some((c) => same(c, issuer))) continue;
      for (const rest of await buildPath(issuer, [...seen, cert]))
        paths.push(rest.some((c) => same(c, issuer)) ? rest : [issuer, ...rest]);
    }
    return paths;
  };
  try {
    const endEntity = local.at(-1)!;
    const paths = (await buildPath(endEntity)).filter((path) => path.some((c) => trustedCerts.some((t) => same(t, c))));
    if (paths.length === 0) return { result: false, resultMessage: "No valid certificate paths found" };
    const path = [endEntity, ...paths.reduce((a, b) => (b.length < a.length ? b : a))];
    const now = Date.now();
    if (path.some((c) => c.notBefore.getTime() > now || c.notAfter.getTime() < now))
      return { result: false, resultMessage: "The certificate is either not yet valid or expired" };
    for (let i = path.length - 2; i >= 0; i--) {
      const selfIssued = sameBytes(path[i]!.issuerName.toArrayBuffer(), path[i]!.subjectName.toArrayBuffer());
      if (!selfIssued && !sameBytes(path[i]!.issuerName.toArrayBuffer(), path[i + 1]!.subjectName.toArrayBuffer()))
        return { result: false, resultMessage: "Incorrect name chaining" };
    }
    if (path.slice(1).some((c) => !canSign(c)))
      return { result: false, resultMessage: "One of intermediate certificates is not a CA certificate" };
    return { result: true, resultMessage: "" };
  } catch (err) {
    return { result: false, resultMessage: (err as Error).message };
  }
}

/** pkijs `checkForCA`: CA:TRUE, and keyCertSign if it has a keyUsage (and keyCertSign only with CA:TRUE). */
function canSign(cert: x509.X509Certificate): boolean {
  const usage = cert.getExtension(x509.KeyUsagesExtension);
  const isCa = Boolean(cert.getExtension(x509.BasicConstraintsExtension)?.ca);
  return isCa && (!usage || (usage.usages & x509.KeyUsageFlags.keyCertSign) !== 0);
}

async function signedBy(
  cert: x509.X509Certificate,
  issuer: x509.X509Certificate,
  crypto: CryptoProvider,
): Promise<boolean> {
  try {
    return await cert.verify({ publicKey: issuer.publicKey, signatureOnly: true }, crypto);
  } catch {
    return false;
  }
}

function same(a: x509.X509Certificate, b: x509.X509Certificate): boolean {
  return sameBytes(a.rawData, b.rawData);
}

function sameBytes(a: ArrayBuffer, b: ArrayBuffer): boolean {
  return Buffer.from(a).equals(Buffer.from(b));
}
