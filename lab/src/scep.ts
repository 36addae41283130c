/**
 * The lab's SCEP server (RFC 8894) at `/scep` on the lab's port, answering as micromdm's
 * `scepserver` 2.1.0 (Debian's `scep`) does; each answer cites its code at tag v2.1.0
 * (github.com/micromdm/scep). micromdm's own `scepclient` is the independent client the tests
 * hold it to. Beyond micromdm: `pending` answers PENDING and takes CertPoll (RFC 8894 §3.3.2-3),
 * and `caps` stands for another server's GetCACaps.
 */
import { createPrivateKey, type KeyObject, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import {
  type CryptoProvider,
  envelope,
  includedCertificates,
  openEnvelope,
  readMessage,
  type ScepAttributes,
  signedMessage,
} from "cert-retriever";
import { type LabCa, RSA_SHA256 } from "./ca.js";
import { certsOnlyPkcs7 } from "./pkcs7.js";
import * as x509 from "./x509.js";

/** Settings of the lab's SCEP server. */
export interface ScepLabOptions {
  /** `scepserver -challenge`: the challenge password every request must carry (none: any or none is taken). */
  challenge?: string;
  /** GetCACaps' answer instead of micromdm's (another server's), one keyword a line. */
  caps?: string;
  /** The first N requests of a transaction answer PENDING; CertPoll then gets the certificate. */
  pending?: number;
  /** An RA in front of the CA (`server/service.go`'s RA operation: the service certificate is the RA's, the CA follows). */
  ra?: boolean;
}

/** The certificate and key that requests are encrypted to and CertReps signed by: the RA's, else the CA's. */
interface ScepIdentity {
  cert: x509.X509Certificate;
  key: KeyObject;
}

/** What the SCEP handler keeps between requests. */
export interface ScepContext {
  dir: string;
  crypto: CryptoProvider;
  /** The lab's CA (IOTmidCA, RSA): it signs certificates and CertReps, and requests are encrypted to it. */
  ca: LabCa;
  scep: ScepLabOptions;
  /** Transactions answered PENDING: their CSR and how many answers are still to be PENDING. */
  pending: Map<string, { csr: Uint8Array; left: number }>;
  /** The depot's serial numbers (micromdm `depot/file/depot.go`: the CA is 1, issued ones count up). */
  serial: { next: number };
  /** The RA, made on first use. */
  ra?: Promise<ScepIdentity>;
}

/** A SCEP server's state, new at each start (micromdm keeps its serials in the depot; the lab's last as long as it runs). */
export function scepContext(dir: string, crypto: CryptoProvider, ca: LabCa, scep: ScepLabOptions): ScepContext {
  const ctx: ScepContext = { dir, crypto, ca, scep, pending: new Map(), serial: { next: 1 } };
  return scep.ra ? { ...ctx, ra: makeRa(ctx) } : ctx;
}

/** An RA certificate from the lab's CA: RSA 2048, no CA, digitalSignature and keyEncipherment. */
async function makeRa(ctx: ScepContext): Promise<ScepIdentity> {
  const keys = (await ctx.crypto.subtle.generateKey({ ...RSA_SHA256, modulusLength: 2048 }, true, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: "7a",
      subject: "CN=Lab SCEP RA, O=EJBCA IOT, C=SE",
      issuer: ctx.ca.cert.subjectName,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 365 * 86_400_000),
      publicKey: keys.publicKey,
      signingKey: ctx.ca.key,
      signingAlgorithm: RSA_SHA256,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      ],
    },
    ctx.crypto,
  );
  const pkcs8 = await ctx.crypto.subtle.exportKey("pkcs8", keys.privateKey);
  return { cert, key: createPrivateKey({ key: Buffer.from(pkcs8), format: "der", type: "pkcs8" }) };
}

/** Who requests are encrypted to and CertReps signed by: the RA where there is one, else the CA (its key read as the depot's `ca.key`). */
async function identity(ctx: ScepContext): Promise<ScepIdentity> {
  if (ctx.ra) return ctx.ra;
  return { cert: ctx.ca.cert, key: createPrivateKey(await readFile(join(ctx.dir, "ca.key"), "utf8")) };
}

/** `server/service.go` GetCACaps (v2.1.0): a fixed list, whatever the server does. */
const MICROMDM_CAPS = "Renewal\nSHA-1\nSHA-256\nAES\nDES3\nSCEPStandard\nPOSTPKIOperation";

/** A go-kit error (`server/transport.go` encodeSCEPResponse, v2.1.0): 500, the error's text. */
function fail(res: ServerResponse, why: string): void {
  res.writeHead(500, { "content-type": "text/plain; charset=utf-8", "x-content-type-options": "nosniff" });
  res.end(`${why}\n`);
}

/**
 * `/scep` (`server/transport.go` MakeHTTPHandler, v2.1.0: GET and POST; `operation` in the query;
 * GET's message base64 after unescaping, POST's the body) and the operations of
 * `server/endpoint.go` MakeSCEPEndpoint.
 */
export async function handleScep(
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  raw: Buffer,
  ctx: ScepContext,
): Promise<void> {
  if (req.method !== "GET" && req.method !== "POST") {
    res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
    return void res.end("404 page not found\n");
  }
  const operation = url.searchParams.get("operation");
  if (operation === "GetCACaps") {
    res.writeHead(200, { "content-type": "text/plain" });
    return void res.end(ctx.scep.caps ?? MICROMDM_CAPS);
  }
  if (operation === "GetCACert") {
    // `server/service.go` GetCACert: the CA alone, DER, as application/x-x509-ca-cert; with an RA,
    // the RA then the CA as a degenerate PKCS#7, application/x-x509-ca-ra-cert (`contentHeader`).
    const ra = ctx.ra && (await ctx.ra);
    res.writeHead(200, { "content-type": ra ? "application/x-x509-ca-ra-cert" : "application/x-x509-ca-cert" });
    const ca = new Uint8Array(ctx.ca.cert.rawData);
    return void res.end(Buffer.from(ra ? certsOnlyPkcs7([new Uint8Array(ra.cert.rawData), ca]) : ca));
  }
  if (operation !== "PKIOperation") return fail(res, "operation not implemented");
  // Another server's caps without POST (RFC 8894 §4.1: then the client uses GET); micromdm takes both.
  if (
    req.method === "POST" &&
    ctx.scep.caps !== undefined &&
    !/^(POSTPKIOperation|SCEPStandard)$/im.test(ctx.scep.caps)
  ) {
    res.writeHead(405, { "content-type": "text/plain; charset=utf-8" });
    return void res.end("405 method not allowed\n");
  }
  const message = req.method === "POST" ? raw : Buffer.from(url.searchParams.get("message") ?? "", "base64");
  let reply: Uint8Array;
  try {
    reply = await pkiOperation(new Uint8Array(message), ctx);
  } catch (err) {
    return fail(res, err instanceof Error ? err.message : String(err));
  }
  res.writeHead(200, { "content-type": "application/x-pki-message" });
  res.end(Buffer.from(reply));
}

/**
 * `server/service.go` PKIOperation (v2.1.0): the message parsed and its signature checked by the
 * certificates it carries (`scep/scep.go` ParsePKIMessage, p7.Verify), the envelope decrypted with
 * the CA's key, the CSR signed (`server/csrsigner.go` ChallengeMiddleware, then `depot/signer.go`),
 * a refusal answered with a CertRep FAILURE badRequest (`msg.Fail`).
 */
async function pkiOperation(der: Uint8Array, ctx: ScepContext): Promise<Uint8Array> {
  const signers = includedCertificates(der);
  const request = readMessage(der, signers);
  const { messageType, transactionID, senderNonce } = request.attrs;
  if (!["17", "18", "19", "20"].includes(messageType)) throw new Error("unknown messageType");
  if (messageType === "20" && ctx.scep.pending === undefined) throw new Error("not implemented");
  if (!senderNonce?.length) throw new Error("scep pkiMessage must include senderNonce attribute");
  const service = await identity(ctx);
  const content = openEnvelope(request.content, service.cert, service.key).content;
  const reply = (status: { pkiStatus: string; failInfo?: string }, body?: Uint8Array) =>
    certRep({ transactionID, senderNonce, ...status }, body, signers[0]!, service);
  const csrDer = messageType === "20" ? ctx.pending.get(transactionID)?.csr : content;
  if (!csrDer) return reply({ pkiStatus: "2", failInfo: "4" }); // CertPoll for no known transaction: badCertID
  if (messageType !== "20" && !challengeTaken(csrDer, ctx.scep.challenge))
    return reply({ pkiStatus: "2", failInfo: "2" });
  if (ctx.scep.pending) {
    const waiting = ctx.pending.get(transactionID) ?? { csr: csrDer, left: ctx.scep.pending };
    ctx.pending.set(transactionID, { ...waiting, left: waiting.left - 1 });
    if (waiting.left > 0) return reply({ pkiStatus: "3" });
    ctx.pending.delete(transactionID);
  }
  const issued = await issue(csrDer, ctx);
  return reply({ pkiStatus: "0" }, certsOnlyPkcs7([new Uint8Array(issued.rawData)]));
}

/** `server/csrsigner.go` ChallengeMiddleware (v2.1.0): a constant-time comparison, on every request type (its TODO). */
function challengeTaken(csrDer: Uint8Array, challenge: string | undefined): boolean {
  if (challenge === undefined) return true;
  const csr = new x509.Pkcs10CertificateRequest(new Uint8Array(csrDer));
  const given = csr.getAttribute("1.2.840.113549.1.9.7");
  const password = given instanceof x509.ChallengePasswordAttribute ? given.password : "";
  const a = Buffer.from(challenge);
  const b = Buffer.from(password);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * `depot/signer.go` SignCSR (v2.1.0): the CSR's subject and names, 365 days, digitalSignature and
 * clientAuth, a subject key identifier, the depot's next serial.
 */
async function issue(csrDer: Uint8Array, ctx: ScepContext): Promise<x509.X509Certificate> {
  const csr = new x509.Pkcs10CertificateRequest(new Uint8Array(csrDer));
  const now = Date.now();
  const sans = csr.extensions.find((e) => e.type === "2.5.29.17");
  return x509.X509CertificateGenerator.create(
    {
      serialNumber: (++ctx.serial.next).toString(16).padStart(2, "0"),
      subject: csr.subjectName,
      issuer: ctx.ca.cert.subjectName,
      notBefore: new Date(now),
      notAfter: new Date(now + 365 * 86_400_000),
      publicKey: csr.publicKey,
      signingKey: ctx.ca.key,
      signingAlgorithm: RSA_SHA256,
      extensions: [
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
        await x509.SubjectKeyIdentifierExtension.create(csr.publicKey, false, ctx.crypto),
        ...(sans ? [new x509.Extension(sans.type, false, sans.value)] : []),
      ],
    },
    ctx.crypto,
  );
}

/**
 * A CertRep (`scep/scep.go` Success and Fail, v2.1.0): signed by the CA (or RA) with SHA-1 and the
 * certificate encrypted with DES-CBC to the request's signer (go.mozilla.org/pkcs7's defaults,
 * whatever GetCACaps says); senderNonce and recipientNonce both the request's senderNonce.
 */
function certRep(
  attrs: Omit<ScepAttributes, "messageType" | "senderNonce"> & { senderNonce: Uint8Array },
  body: Uint8Array | undefined,
  requester: x509.X509Certificate,
  service: ScepIdentity,
): Uint8Array {
  const content = body ? envelope(body, requester, "des-cbc") : new Uint8Array(0);
  return signedMessage(
    content,
    { ...attrs, messageType: "3", recipientNonce: attrs.senderNonce },
    { ...service, digest: "sha1" },
  );
}
