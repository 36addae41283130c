/**
 * The lab's EST server (RFC 7030, with RFC 8951's corrections), over HTTPS. There is no one real
 * EST server to copy, so the RFCs are the reference, and strongSwan's `pki --est`/`--estca`
 * (5.9.8, `src/pki/est/est_tls.c`) is the independent client the tests hold it to.
 */
import { createHash, createPublicKey, X509Certificate as NodeCertificate } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import * as asn1js from "asn1js";
import { type CryptoProvider, OIDS, sameBytes, sha256ColonHex } from "cert-retriever";
import { type LabCa, ProfileRefusal, parseSignedCsr, signAsEjbca } from "./ca.js";
import { authenticate } from "./est-auth.js";
import {
  certificateFault,
  type FaultKind,
  type FaultPlan,
  sendTransportFault,
  skewClock,
  withTrailingData,
} from "./faults.js";
import { type CsrAttr, certsOnlyPkcs7, encodeCsrAttrs, oidDer } from "./pkcs7.js";
import { type EstIssued, loadState, updateState } from "./state.js";
import * as x509 from "./x509.js";

export type { EstIssued } from "./state.js";

/** What `/csrattrs` asks for: nothing (204), an EC key on P-256 or P-384, or an RSA key. */
export type EstCsrAttrs = "none" | "ec-p256" | "ec-p384" | "rsa" | "rsa-3072";

/** Settings of the lab's EST server. */
export interface EstLabOptions {
  /** A listener of its own beside the dojot API (with `api: "est"`, EST is served on the lab's port alone). */
  port?: number;
  /** Where that listener binds; the lab's host when absent. */
  host?: string;
  /** The first N submissions of the same CSR answer 202 Accepted (manual approval); `forever`: always. */
  pending?: number | "forever";
  /** The Retry-After of a 202, in seconds (default 1). */
  retryAfter?: number;
  /** What `/csrattrs` answers (default `none`); other than `none`, a CSR with another key type is refused. */
  csrAttrs?: EstCsrAttrs;
  /** PEM CA certificates whose certificates may authenticate `/simpleenroll` (factory certificates). */
  bootstrapCas?: string[];
  /** CA labels served under `/.well-known/est/<label>/` besides the bare prefix. */
  labels?: string[];
}

/** An EST PKI: the root and the issuing CA under it. */
export interface EstPki {
  root: LabCa;
  issuing: LabCa;
}

/** What the EST handler needs besides the request. */
export interface EstContext {
  dir: string;
  crypto: CryptoProvider;
  /** The validity of issued certificates in ms (default 365 days). */
  certLifetime?: number;
  est: EstLabOptions;
  pki: EstPki;
  /** `est.bootstrapCas`, parsed. */
  bootstrap: NodeCertificate[];
  faults: FaultPlan;
  /** Another root and issuing CA with the same names, for `wrong-ca` faults; made on first use. */
  otherPki: () => Promise<EstPki>;
  /** How often each pending request (by operation and CSR digest) was answered 202. */
  pending: Map<string, number>;
}

const PREFIX = "/.well-known/est";
/** RFC 7030 §3.2.2's operations this server offers, and their methods (`/fullcmc` and `/serverkeygen` are optional and not offered). */
const OPERATIONS: Record<string, "GET" | "POST"> = {
  cacerts: "GET",
  simpleenroll: "POST",
  simplereenroll: "POST",
  csrattrs: "GET",
};
const DAY = 86_400_000;
const SAN_OID = "2.5.29.17";
/** macAddress (RFC 2307), the extension RFC 7030 §4.5.2's example asks for. */
const MAC_ADDRESS_OID = "1.3.6.1.1.1.1.22";

/** The EST TLS server's names: loopback by address and name, and the host it listens on. */
export function estServerNames(host: string): x509.JsonGeneralName[] {
  const names: x509.JsonGeneralName[] = [
    { type: "ip", value: "127.0.0.1" },
    { type: "ip", value: "::1" },
    { type: "dns", value: "localhost" },
  ];
  const isIp = /^[\d.]+$/.test(host) || host.includes(":");
  if (!names.some((n) => n.value === host) && host !== "0.0.0.0" && host !== "::")
    names.push({ type: isIp ? "ip" : "dns", value: host });
  return names;
}

/** The bootstrap CAs' certificates; throws an Error naming the first that is not a PEM certificate. */
export function parseBootstrapCas(pems: string[]): NodeCertificate[] {
  return pems.map((pem, i) => {
    try {
      return new NodeCertificate(pem);
    } catch {
      throw new Error(`bootstrap CA ${i + 1} of ${pems.length} is not a PEM certificate`);
    }
  });
}

/** Answers one request to the EST listener. */
export async function handleEst(
  req: IncomingMessage,
  res: ServerResponse,
  body: string,
  ctx: EstContext,
): Promise<void> {
  const path = new URL(req.url ?? "/", "https://lab").pathname;
  // RFC 7030 §3.2.2: `/.well-known/est/<operation>`, or `/.well-known/est/<label>/<operation>` for a CA label.
  const m = path.startsWith(`${PREFIX}/`) ? /^(?:([^/]+)\/)?([^/]+)$/.exec(path.slice(PREFIX.length + 1)) : null;
  const label = m?.[1] === undefined ? undefined : decodeLabel(m[1]);
  if (!m || !Object.hasOwn(OPERATIONS, m[2]!))
    return text(
      res,
      404,
      `${path} is not an EST operation this server offers (cacerts, simpleenroll, simplereenroll, csrattrs)`,
    );
  if (label !== undefined && !(ctx.est.labels ?? []).includes(label))
    return text(res, 404, `the CA label '${label}' is unknown here`);
  const op = m[2]!;
  if (req.method !== OPERATIONS[op]) return text(res, 405, `${op} takes ${OPERATIONS[op]}`, { allow: OPERATIONS[op]! });
  if (op === "csrattrs") return csrAttrs(res, ctx.est.csrAttrs ?? "none");
  const route = op === "cacerts" ? "est-cacerts" : "est-enroll";
  // A transport fault strikes the request as it comes; a fault in the certificate waits for one to be issued (not spent on a 401 or a 202).
  const upcoming = ctx.faults.peek(route);
  if (upcoming && sendTransportFault(upcoming, req, res, true)) return void ctx.faults.take(route);
  if (op === "cacerts") {
    const fault = ctx.faults.take(route);
    skewClock(res, fault);
    // §4.1.2: no authentication; §4.1.3: the root and what a client needs to chain up to it.
    const pki = fault === "wrong-ca" ? await ctx.otherPki() : ctx.pki;
    return pkcs7(
      res,
      "application/pkcs7-mime",
      certsOnlyPkcs7([pki.issuing.cert.rawData, pki.root.cert.rawData].map((d) => new Uint8Array(d))),
      fault,
    );
  }
  return enroll(req, res, body, op === "simplereenroll", label, ctx);
}

/** A CA label as written in the path, percent-decoded when it decodes (an undecodable one matches no label). */
function decodeLabel(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** `/simpleenroll` and `/simplereenroll` (RFC 7030 §4.2). */
async function enroll(
  req: IncomingMessage,
  res: ServerResponse,
  body: string,
  reenroll: boolean,
  label: string | undefined,
  ctx: EstContext,
): Promise<void> {
  const who = await authenticate(req, reenroll, {
    dir: ctx.dir,
    issuing: new NodeCertificate(Buffer.from(ctx.pki.issuing.cert.rawData)),
    bootstrap: ctx.bootstrap,
  });
  if ("status" in who) {
    // RFC 7235 §3.1: a 401 names the scheme; §3.2.3 has the EST server ask for HTTP Basic.
    return text(res, who.status, who.why, who.status === 401 ? { "www-authenticate": 'Basic realm="estrealm"' } : {});
  }
  const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "application/pkcs10")
    return text(res, 415, `the request's Content-Type is '${type}', not application/pkcs10 (RFC 7030 4.2.1)`);
  // RFC 8951 §3: base64 per RFC 4648, white space ignored, any Content-Transfer-Encoding ignored.
  const b64 = body.replace(/\s+/g, "");
  if (!b64 || b64.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64))
    return text(res, 400, "the request body is not base64 (RFC 7030 4.2.1, RFC 8951 3)");
  const der = new Uint8Array(Buffer.from(b64, "base64"));
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = await parseSignedCsr(der, ctx.crypto);
  } catch (err) {
    if (err instanceof ProfileRefusal) return text(res, 400, err.message);
    throw err;
  }
  if (csr.subjectName.getField("CN").length === 0) return text(res, 400, "the CSR's subject has no CN");
  const keyType = describeKey(csr.publicKey);
  const wanted = ctx.est.csrAttrs ?? "none";
  // §4.5.2: the server may refuse a request that does not do as /csrattrs asked.
  if (wanted !== "none" && keyType !== wanted && !(wanted === "rsa" && keyType.startsWith("rsa-")))
    return text(res, 400, `the CSR's key is ${keyType}, but /csrattrs asks for ${wanted} (RFC 7030 4.5.2)`);
  if (who.renewing) {
    // §4.2.2: Subject and SubjectAltName identical to the certificate being renewed (or re-keyed).
    const current = new x509.X509Certificate(who.renewing.raw);
    if (!sameDer(csr.subjectName.toArrayBuffer(), current.subjectName.toArrayBuffer())) {
      return text(
        res,
        400,
        `the CSR's subject '${csr.subject}' differs from the certificate being renewed, '${current.subject}' (RFC 7030 4.2.2)`,
      );
    }
    if (!sameDer(csr.getExtension(SAN_OID)?.value, current.getExtension(SAN_OID)?.value)) {
      return text(res, 400, "the CSR's subjectAltName differs from the certificate being renewed (RFC 7030 4.2.2)");
    }
  }
  // §4.2.3 leaves it to the server to know the request again: by its key and subject (and CA label), as
  // libest's manual-approval table does (by the CSR's public key), not by bytes a new signature changes.
  const key = `${reenroll}:${label ?? ""}:${createHash("sha256").update(Buffer.from(csr.publicKey.rawData)).update(Buffer.from(csr.subjectName.toArrayBuffer())).digest("hex")}`;
  const pending = ctx.est.pending ?? 0;
  const answered = ctx.pending.get(key) ?? 0;
  if (pending === "forever" || answered < pending) {
    // §4.2.3: 202 with Retry-After; the client repeats the same request after it.
    ctx.pending.set(key, answered + 1);
    const after = ctx.est.retryAfter ?? 1;
    return text(res, 202, `the request awaits manual approval; repeat it in ${after} s (RFC 7030 4.2.3)`, {
      "retry-after": String(after),
    });
  }
  const fault = ctx.faults.take("est-enroll");
  skewClock(res, fault);
  const cert = await issue(csr, keyType, ctx, fault);
  if (!fault) {
    const record: EstIssued = {
      serial: cert.serialNumber,
      subject: cert.subject,
      fingerprint: sha256ColonHex(cert.rawData),
      auth: who.auth,
      issuedAt: new Date().toISOString(),
    };
    if (label !== undefined) record.label = label;
    await updateState(ctx.dir, (s) => {
      s.estIssued ??= [];
      s.estIssued.push(record);
    });
  }
  // §4.2.3: a certs-only CMC Simple PKI Response holding only the certificate issued.
  return pkcs7(
    res,
    "application/pkcs7-mime; smime-type=certs-only",
    certsOnlyPkcs7([new Uint8Array(cert.rawData)]),
    fault,
  );
}

/** Whether two DER encodings are the same bytes (both absent counts as the same). */
function sameDer(a: ArrayBuffer | undefined, b: ArrayBuffer | undefined): boolean {
  return a && b ? sameBytes(a, b) : a === b;
}

/** The key in the CSR as `/csrattrs` names key types, or what else it is. */
function describeKey(key: x509.PublicKey): string {
  const spki = createPublicKey({ key: Buffer.from(key.rawData), format: "der", type: "spki" });
  if (spki.asymmetricKeyType === "rsa") return `rsa-${spki.asymmetricKeyDetails?.modulusLength}`;
  const curve = spki.asymmetricKeyDetails?.namedCurve;
  if (spki.asymmetricKeyType === "ec")
    return curve === "prime256v1" ? "ec-p256" : curve === "secp384r1" ? "ec-p384" : `ec ${curve}`;
  return String(spki.asymmetricKeyType);
}

/**
 * The device's certificate from the issuing CA: the CSR's subject (as encoded) and subjectAltName,
 * clientAuth, digitalSignature (and keyEncipherment for RSA), for `certLifetime` or 365 days,
 * never past the CA's own end.
 */
async function issue(
  csr: x509.Pkcs10CertificateRequest,
  keyType: string,
  ctx: EstContext,
  fault: FaultKind | undefined,
): Promise<x509.X509Certificate> {
  const { signer, overrides } = await certificateFault(
    fault,
    ctx.pki.issuing,
    async () => (await ctx.otherPki()).issuing,
    ctx.crypto,
  );
  const san = csr.getExtension(SAN_OID);
  const usages =
    x509.KeyUsageFlags.digitalSignature | (keyType.startsWith("rsa-") ? x509.KeyUsageFlags.keyEncipherment : 0);
  const now = Date.now();
  return signAsEjbca(
    {
      ca: signer,
      csr,
      subject: csr.subjectName,
      profileExtensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(usages, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
        ...(san ? [new x509.Extension(SAN_OID, san.critical, san.value)] : []),
        await x509.AuthorityKeyIdentifierExtension.create(signer.cert.publicKey, false, ctx.crypto),
        await x509.SubjectKeyIdentifierExtension.create(overrides.publicKey ?? csr.publicKey, false, ctx.crypto),
        ...(overrides.extensions ?? []),
      ],
      extensionOverride: false,
      notBefore: overrides.notBefore ?? new Date(now - 60_000),
      notAfter: overrides.notAfter ?? new Date(now + (ctx.certLifetime ?? 365 * DAY)),
      publicKey: overrides.publicKey,
    },
    ctx.crypto,
  );
}

/**
 * `/csrattrs` (RFC 7030 §4.5.2), served without authentication (§4.5.1): 204 when there is
 * nothing to ask; else the key type, as an ecPublicKey attribute naming the curve or the
 * rsaEncryption OID, and the signature algorithm. For P-384 it also carries the extensionRequest
 * with the macAddress OID of §4.5.2's own example, which no client can honour (RFC 9908 §3.2
 * later requires an Extensions value there).
 */
function csrAttrs(res: ServerResponse, wanted: EstCsrAttrs): void {
  const ec = (curve: string): CsrAttr => ({ attribute: OIDS.ecPublicKey, values: [oidDer(curve)] });
  const attrs: Record<Exclude<EstCsrAttrs, "none">, CsrAttr[]> = {
    "ec-p256": [ec(OIDS.secp256r1), { oid: OIDS.ecdsaWithSHA256 }],
    "ec-p384": [
      ec(OIDS.secp384r1),
      { attribute: OIDS.extensionRequest, values: [oidDer(MAC_ADDRESS_OID)] },
      { oid: OIDS.ecdsaWithSHA384 },
    ],
    rsa: [{ oid: OIDS.rsaEncryption }],
    // RFC 9908 §3.3: the key type as an attribute whose value gives the size.
    "rsa-3072": [
      { attribute: OIDS.rsaEncryption, values: [new Uint8Array(new asn1js.Integer({ value: 3072 }).toBER())] },
    ],
  };
  if (wanted === "none") {
    res.writeHead(204).end();
    return;
  }
  base64Reply(res, "application/csrattrs", encodeCsrAttrs(attrs[wanted]), false);
}

/** A PKCS#7 reply, as a fault would spoil it. */
function pkcs7(res: ServerResponse, type: string, der: Uint8Array, fault: FaultKind | undefined): void {
  const sent = fault === "malformed-pkcs7" ? der.subarray(0, Math.floor(der.length / 2)) : withTrailingData(der, fault);
  base64Reply(res, type, sent, fault === "wrapped-base64");
}

/**
 * 200 with `der` in base64. RFC 8951 §3 makes it RFC 4648 base64, which adds no line breaks
 * (RFC 4648 §3.1): one line, which every client reads (strongSwan 5.9.8 reads nothing else; its
 * white space filter came in 5.9.11). `wrapped` breaks it into 64-character CRLF lines, which
 * receivers must accept (RFC 8951 §3.1). Content-Transfer-Encoding as RFC 7030 §4.1.3 shows it
 * (RFC 8951 §3: receivers ignore it).
 */
function base64Reply(res: ServerResponse, type: string, der: Uint8Array, wrapped: boolean): void {
  const b64 = Buffer.from(der).toString("base64");
  const body = wrapped ? `${b64.match(/.{1,64}/g)!.join("\r\n")}\r\n` : b64;
  // One string: headers and body leave in one write, so in one TLS record, as strongSwan's client expects.
  res
    .writeHead(200, {
      "content-type": type,
      "content-transfer-encoding": "base64",
      "content-length": Buffer.byteLength(body),
    })
    .end(body);
}

/** A plain-text reply (RFC 7030 §4.2.3: a refusal without a content type is human-readable text). */
function text(res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  const body = `${message}\n`;
  res
    .writeHead(status, {
      "content-type": "text/plain; charset=utf-8",
      "content-length": Buffer.byteLength(body),
      ...headers,
    })
    .end(body);
}

/** What the lab's EST server issued in `dir`, in order (empty if nothing). */
export async function readEstIssued(dir: string): Promise<EstIssued[]> {
  return (await loadState(dir))?.estIssued ?? [];
}
