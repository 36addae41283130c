/**
 * Checking a signed message, as a platform would: the signature against the signer's certificate,
 * then the certificate against the clock, its CA chain and (where `check` cached one) its CA's CRL.
 * Each refusal has its own reason (docs/signing.md).
 */
import { constants, createPublicKey, verify } from "node:crypto";
import { CertRetrieverError } from "../errors.js";
import { sameBytes, sha256ColonHex } from "../keys/fingerprint.js";
import type { CryptoProvider } from "../keys/provider.js";
import type * as x509 from "../keys/x509.js";
import {
  airVantageSigningInput,
  fromHex,
  type JwsAlg,
  jwsScheme,
  MESSAGE_LIMIT,
  malformed,
  OPENSSL_SCHEME,
  parseAirVantage,
  parseJws,
  type Scheme,
  SIGNATURE_DATAPOINT,
  type SignFormat,
} from "../sign/formats.js";
import { displayName, parseCaChain, parseCertificate } from "./certificate.js";
import { revocationOf } from "./revocation.js";
import { utf8 } from "./sign.js";
import { validateCaChain } from "./validate.js";

const STEP = "verify-signature";

/** A signed message to check. */
export interface SignatureRequest {
  format: SignFormat;
  /** The signed message (airvantage, jws); for raw, the message that was signed. */
  message: Uint8Array;
  /** raw: the detached signature's bytes (DER for ECDSA). */
  signature?: Uint8Array;
  /** The signer's certificate (PEM), optionally followed by its CA chain; absent: the device's stored one. */
  certificatePem?: string;
  /** The CA chain (PEM) the certificate must chain to, when it does not follow it in `certificatePem`. */
  caPem?: string;
}

/** What a good signature was checked against. */
export interface SignatureCheck {
  format: SignFormat;
  /** The algorithm (a JWS `alg`, else `ecdsa-with-SHA256` or `sha256WithRSAEncryption`). */
  alg: string;
  /** How many signatures were checked (airvantage: one per timestamp). */
  signatures: number;
  signer: { subject: string; fingerprint: string; notAfter: string };
  /** The CA chain's subjects, the issuer first. */
  chain: string[];
  /** What the cached CRL said: `good`, or why none could say (`unknown: ...`). */
  revocation: string;
  /** jws: the payload, as UTF-8 text if it is. */
  payload?: string;
}

/** Where a check's certificate, clock and CRL come from. */
export interface SignatureCheckContext {
  now: Date;
  crypto: CryptoProvider;
  /** The device's stored certificate and CA, when the request names none, and the CRL `check` cached (none: no device). */
  stored?: () => Promise<{ certificatePem: string; caPem: string; crlCache?: string }>;
}

/** One signature to check: its input, its bytes, its scheme, and where it is, for messages. */
interface Signed {
  input: Uint8Array;
  signature: Uint8Array;
  scheme: Scheme;
  where: string;
}

/** A signature refused for `reason`. */
function refused(reason: "signature-invalid" | "signature-wrong-key", message: string): CertRetrieverError {
  return new CertRetrieverError(`${STEP} failed: ${message}`, { step: STEP, reason });
}

/** Checks a signed message; a refusal says why (bad signature, another key, the certificate's dates, chain or revocation). */
export async function verifySignedMessage(req: SignatureRequest, ctx: SignatureCheckContext): Promise<SignatureCheck> {
  if (req.message.byteLength > MESSAGE_LIMIT)
    throw malformed(STEP, `the message is ${req.message.byteLength} bytes, over the limit of ${MESSAGE_LIMIT}`);
  const parsed = parseSigned(req);
  const { leaf, chain, crlCache } = await signerOf(req, ctx, parsed.x5c);
  const key = createPublicKey({ key: Buffer.from(leaf.publicKey.rawData), format: "der", type: "spki" });
  checkKeyFits(parsed.jwsAlg, key.asymmetricKeyType, leaf);
  for (const one of parsed.signed) {
    if (verifies(key, one)) continue;
    if (parsed.x5c && !sameBytes(parsed.x5c.rawData, leaf.rawData) && verifiesUnder(parsed.x5c, one))
      throw refused(
        "signature-wrong-key",
        `${one.where} was signed by '${displayName(parsed.x5c.subjectName)}', not by the key of '${displayName(leaf.subjectName)}'`,
      );
    throw refused(
      "signature-invalid",
      `${one.where} does not verify with the key of '${displayName(leaf.subjectName)}'`,
    );
  }
  const revocation = await checkSigner(leaf, chain, ctx, crlCache);
  const alg = parsed.jwsAlg ?? (key.asymmetricKeyType === "ec" ? "ecdsa-with-SHA256" : "sha256WithRSAEncryption");
  return {
    format: req.format,
    alg,
    signatures: parsed.signed.length,
    signer: {
      subject: displayName(leaf.subjectName),
      fingerprint: sha256ColonHex(leaf.rawData),
      notAfter: leaf.notAfter.toISOString(),
    },
    chain: chain.map((c) => displayName(c.subjectName)),
    revocation,
    ...(parsed.payload !== undefined ? { payload: parsed.payload } : {}),
  };
}

/** The signatures a message carries, by its format. */
function parseSigned(req: SignatureRequest): {
  signed: Signed[];
  jwsAlg?: JwsAlg;
  x5c?: x509.X509Certificate;
  payload?: string;
} {
  if (req.format === "raw") {
    if (!req.signature?.byteLength)
      throw malformed(STEP, "a raw signature is checked with the message and its signature");
    return {
      signed: [{ input: req.message, signature: req.signature, scheme: OPENSSL_SCHEME, where: "the signature" }],
    };
  }
  const text = utf8(STEP, req.message);
  if (req.format === "jws") {
    const jws = parseJws(text, STEP);
    const first = jws.header.x5c?.[0];
    const x5c =
      first === undefined
        ? undefined
        : parseCertificate(Buffer.from(first, "base64"), "the JWS's x5c certificate", STEP, "message-malformed");
    const scheme = jwsScheme(jws.header.alg);
    const payload = new TextDecoder("utf-8", { fatal: false }).decode(jws.payload);
    return {
      signed: [{ input: jws.input, signature: jws.signature, scheme, where: "the JWS" }],
      jwsAlg: jws.header.alg,
      x5c,
      payload,
    };
  }
  const message = parseAirVantage(text, STEP);
  return {
    signed: Object.entries(message).map(([timestamp, datapoints]) => {
      const where = `the datapoints of '${timestamp}'`;
      if (!Object.hasOwn(datapoints, SIGNATURE_DATAPOINT))
        throw malformed(STEP, `${where} have no '${SIGNATURE_DATAPOINT}'`);
      const signature = fromHex(datapoints[SIGNATURE_DATAPOINT], STEP, where);
      return { input: airVantageSigningInput(timestamp, datapoints), signature, scheme: OPENSSL_SCHEME, where };
    }),
  };
}

/**
 * The signer's certificate and its CA chain: the request's, else the device's stored ones (and the
 * CRL cache beside them), else a JWS's own x5c certificate, which only a CA chain given makes trusted.
 */
async function signerOf(
  req: SignatureRequest,
  ctx: SignatureCheckContext,
  x5c: x509.X509Certificate | undefined,
): Promise<{ leaf: x509.X509Certificate; chain: x509.X509Certificate[]; crlCache?: string }> {
  if (req.certificatePem === undefined && !ctx.stored && x5c && req.caPem !== undefined)
    return { leaf: x5c, chain: parseCaChain(req.caPem, "the CA chain", STEP, "config") };
  const stored = req.certificatePem === undefined ? await ctx.stored?.() : undefined;
  const certPem = req.certificatePem ?? stored?.certificatePem;
  if (certPem === undefined)
    throw new CertRetrieverError(`${STEP} failed: no certificate to check the signature against`, {
      step: STEP,
      reason: "usage",
      facts: { field: "certificate" },
    });
  const [leaf, ...rest] = parseCaChain(certPem, "the signer's certificate", STEP, "config");
  const caPem = req.caPem ?? stored?.caPem;
  const chain = caPem !== undefined ? parseCaChain(caPem, "the CA chain", STEP, "config") : rest;
  return { leaf: leaf!, chain, crlCache: stored?.crlCache };
}

/** A JWS's algorithm must fit the certificate's key: ES* an EC key, RS256/PS256 an RSA key. */
function checkKeyFits(alg: JwsAlg | undefined, keyType: string | undefined, leaf: x509.X509Certificate): void {
  if (alg === undefined) return;
  const wants = alg.startsWith("ES") ? "ec" : "rsa";
  if (keyType !== wants)
    throw refused(
      "signature-wrong-key",
      `the JWS was signed with ${alg}, which needs an ${wants.toUpperCase()} key; the certificate of '${displayName(leaf.subjectName)}' holds an ${String(keyType).toUpperCase()} key`,
    );
}

/** Whether one signature verifies with `key`. */
function verifies(key: import("node:crypto").KeyObject, one: Signed): boolean {
  const hash = one.scheme.hash.replace("-", "").toLowerCase();
  const options = one.scheme.pss
    ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }
    : { key, dsaEncoding: one.scheme.ecdsa === "der" ? ("der" as const) : ("ieee-p1363" as const) };
  try {
    return verify(hash, one.input, options, one.signature);
  } catch {
    return false; // a signature that is not even of the key's shape
  }
}

/** Whether one signature verifies with the key of `cert`. */
function verifiesUnder(cert: x509.X509Certificate, one: Signed): boolean {
  return verifies(createPublicKey({ key: Buffer.from(cert.publicKey.rawData), format: "der", type: "spki" }), one);
}

/** The signer's certificate, valid now, issued by the chain's first CA, the chain itself sound; not revoked by a cached CRL. */
async function checkSigner(
  leaf: x509.X509Certificate,
  chain: x509.X509Certificate[],
  ctx: SignatureCheckContext,
  crlCache: string | undefined,
): Promise<string> {
  const subject = displayName(leaf.subjectName);
  if (ctx.now < leaf.notBefore || ctx.now > leaf.notAfter)
    throw new CertRetrieverError(
      `${STEP} failed: the certificate of '${subject}' is valid from ${leaf.notBefore.toISOString()} to ${leaf.notAfter.toISOString()}, which does not include now (${ctx.now.toISOString()})`,
      { step: STEP, reason: "signer-out-of-date" },
    );
  const issuer = chain[0];
  const untrusted = (why: string) =>
    new CertRetrieverError(`${STEP} failed: the certificate of '${subject}' ${why}`, {
      step: STEP,
      reason: "signer-untrusted",
    });
  if (!issuer) throw untrusted("comes with no CA chain to check it against");
  if (
    leaf.issuer !== issuer.subject ||
    !(await leaf.verify({ publicKey: issuer.publicKey, signatureOnly: true }, ctx.crypto))
  )
    throw untrusted(`is not issued by '${displayName(issuer.subjectName)}'`);
  await validateCaChain(chain, ctx.crypto, ctx.now, STEP, "signer-untrusted", "the CA chain");
  if (crlCache === undefined) return "unknown: no CRL cache was given";
  const verdict = await revocationOf(leaf, issuer, {
    crypto: ctx.crypto,
    now: ctx.now,
    cachePath: crlCache,
    refreshMs: Infinity,
  });
  if (verdict.state === "revoked")
    throw new CertRetrieverError(
      `${STEP} failed: the certificate of '${subject}' was revoked on ${verdict.revokedAt.toISOString()}${verdict.reason ? ` (${verdict.reason})` : ""}, by the CRL of ${verdict.crl.thisUpdate.toISOString()}`,
      { step: STEP, reason: "signer-revoked" },
    );
  return verdict.state === "good" ? "good" : `unknown: ${verdict.why}`;
}
