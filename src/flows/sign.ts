/**
 * Signing what the device sends, with its stored key wherever it lives (a PEM in the store, or a
 * key that never leaves its PKCS#11 token): the key is opened once, then signs message after
 * message in-process. The formats are in sign/formats.ts; docs/signing.md defines them.
 */
import { CertRetrieverError } from "../errors.js";
import { sameBytes } from "../keys/fingerprint.js";
import type { KeyStore, SigningKey } from "../keys/key-store.js";
import type * as x509 from "../keys/x509.js";
import { derFromP1363 } from "../sign/ecdsa.js";
import {
  airVantageSigningInput,
  base64url,
  type JwsAlg,
  type JwsHeader,
  jwsScheme,
  jwsSigningInput,
  MESSAGE_LIMIT,
  malformed,
  OPENSSL_SCHEME,
  parseAirVantage,
  type Scheme,
  SIGNATURE_DATAPOINT,
  type SignFormat,
  upperHex,
} from "../sign/formats.js";
import type { CredentialStore } from "../store/types.js";
import { parseCaChain, parseCertificate } from "./certificate.js";
import { completeCredentials } from "./stored.js";

/** What opening a signer needs: the device, its store, and how to open the key store its stored key is in. */
export interface SignContext {
  deviceId: string;
  store: CredentialStore;
  /** The key store that holds the stored key `record` (a token: logged in). */
  openKeys(record: string): Promise<KeyStore>;
}

/** Options of a signer. */
export interface SignerOptions {
  /** An RSA key signs a JWS with RSA-PSS (PS256) rather than PKCS#1 v1.5 (RS256). */
  pss?: boolean;
}

/** A signed message: the message with its signature (airvantage, jws), or the signature alone (raw). */
export interface SignedMessage {
  format: SignFormat;
  /** The algorithm: a JWS `alg`, or for airvantage and raw the OpenSSL-style name (`ecdsa-with-SHA256`, `sha256WithRSAEncryption`). */
  alg: string;
  /** airvantage, jws: the signed message's text; raw: the signature's bytes (DER for ECDSA). */
  signed: string | Uint8Array;
}

/** The device's key, opened once, signing messages in-process. */
export interface MessageSigner {
  readonly deviceId: string;
  /** Where the key is, in words. */
  readonly where: string;
  /** The JWS algorithm this key signs a JWS with. */
  readonly jwsAlg: JwsAlg;
  /** Signs `message` (text is taken as UTF-8) in `format`. A message over 1 MiB is refused (`message-malformed`). */
  sign(message: string | Uint8Array, format: SignFormat): Promise<SignedMessage>;
  /** Ends the key's use (logs out of a token). */
  close(): Promise<void>;
}

/** The JWS algorithm of a key (RFC 7518, 3.1): by its curve for ECDSA; RS256, or PS256 when asked, for RSA. */
function jwsAlgOf(key: SigningKey, pss: boolean): JwsAlg {
  if (key.algorithm.name !== "ECDSA") return pss ? "PS256" : "RS256";
  const curve = (key.algorithm as EcKeyAlgorithm).namedCurve;
  return curve === "P-384" ? "ES384" : curve === "P-521" ? "ES512" : "ES256";
}

/** Opens the device's stored key and certificate for signing: one key store session for all the messages. */
export async function openSigner(ctx: SignContext, opts: SignerOptions = {}): Promise<MessageSigner> {
  const stored = await completeCredentials(ctx.store, ctx.deviceId, "sign");
  const where = `the stored certificate of '${ctx.deviceId}'`;
  const cert = parseCertificate(stored.pems.certificatePem, where, "sign", "cert-invalid");
  const chain = parseCaChain(stored.pems.caPem, "the stored CA", "sign", "cert-invalid");
  const record = stored.pems.key.trim();
  const keyStore = await ctx.openKeys(record);
  try {
    if (!keyStore.signingKey)
      throw new CertRetrieverError(`sign failed: ${keyStore.location} cannot sign with a stored key`, {
        step: "sign",
        reason: "not-supported",
      });
    const spkis = await keyStore.publicKeysOf(record);
    if (!spkis.some((spki) => sameBytes(spki, cert.publicKey.rawData)))
      throw new CertRetrieverError(`sign failed: ${where} does not hold the public key of the stored key`, {
        step: "sign",
        reason: "cert-invalid",
      });
    const key = await keyStore.signingKey(record);
    const pssKey = opts.pss && key.algorithm.name !== "ECDSA" ? await keyStore.signingKey(record, true) : undefined;
    return signer(ctx.deviceId, key, pssKey, [cert, ...chain], () => keyStore.close());
  } catch (err) {
    await keyStore.close();
    throw err;
  }
}

/** The signer over an opened key (and its RSA-PSS twin), with the certificate chain a JWS carries. */
function signer(
  deviceId: string,
  key: SigningKey,
  pssKey: SigningKey | undefined,
  chain: x509.X509Certificate[],
  close: () => Promise<void>,
): MessageSigner {
  const jwsAlg = jwsAlgOf(key, pssKey !== undefined);
  const x5c = chain.map((c) => Buffer.from(c.rawData).toString("base64"));
  const jwsInput = jwsSigningInput({ alg: jwsAlg, x5c } satisfies JwsHeader);
  const sign = (scheme: Scheme, data: Uint8Array) => signWith(scheme.pss && pssKey ? pssKey : key, scheme, data);
  return {
    deviceId,
    where: key.where,
    jwsAlg,
    async sign(message, format) {
      const bytes = typeof message === "string" ? new TextEncoder().encode(message) : message;
      if (bytes.byteLength > MESSAGE_LIMIT)
        throw malformed("sign", `the message is ${bytes.byteLength} bytes, over the limit of ${MESSAGE_LIMIT}`);
      if (format === "jws") {
        const input = jwsInput(bytes);
        const signature = await sign(jwsScheme(jwsAlg), new TextEncoder().encode(input));
        return { format, alg: jwsAlg, signed: `${input}.${base64url(signature)}` };
      }
      const alg = key.algorithm.name === "ECDSA" ? "ecdsa-with-SHA256" : "sha256WithRSAEncryption";
      if (format === "raw") return { format, alg, signed: await sign(OPENSSL_SCHEME, bytes) };
      return { format, alg, signed: await signAirVantage(bytes, (data) => sign(OPENSSL_SCHEME, data)) };
    },
    close,
  };
}

/** One signature of `data` in `scheme`: ECDSA in DER or r||s as the scheme says; RSA PKCS#1 v1.5, or PSS with a salt as long as the hash. */
async function signWith(key: SigningKey, scheme: Scheme, data: Uint8Array): Promise<Uint8Array> {
  if (key.algorithm.name === "ECDSA") {
    const raw = await key.sign({ name: "ECDSA", hash: scheme.hash } as EcdsaParams, data);
    return scheme.ecdsa === "der" ? derFromP1363(raw) : raw;
  }
  const params = scheme.pss ? ({ name: "RSA-PSS", saltLength: 32 } as RsaPssParams) : { name: "RSASSA-PKCS1-v1_5" };
  return key.sign(params, data);
}

/** An AirVantage message with a `signature` datapoint added to each timestamp's datapoints. */
async function signAirVantage(bytes: Uint8Array, sign: (data: Uint8Array) => Promise<Uint8Array>): Promise<string> {
  const message = parseAirVantage(utf8("sign", bytes), "sign");
  for (const [timestamp, datapoints] of Object.entries(message)) {
    if (Object.hasOwn(datapoints, SIGNATURE_DATAPOINT))
      throw malformed("sign", `the datapoints of '${timestamp}' have a '${SIGNATURE_DATAPOINT}' already`);
    datapoints[SIGNATURE_DATAPOINT] = upperHex(await sign(airVantageSigningInput(timestamp, datapoints)));
  }
  return JSON.stringify(message);
}

/** `bytes` as UTF-8 text, or a malformed message. */
export function utf8(step: "sign" | "verify-signature", bytes: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw malformed(step, "the message is not UTF-8 text");
  }
}
