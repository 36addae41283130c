/**
 * The formats of a signed message, as data: what is signed (the signing input), with which
 * algorithm, and how the signature travels. Nothing here holds a key: the flow signs the input
 * this module names and hands the signature back to be put in place (docs/signing.md).
 */
import { CertRetrieverError, type Step } from "../errors.js";

/** How a signed message is written. */
export const SIGN_FORMATS = ["airvantage", "jws", "raw"] as const;
/** One of {@link SIGN_FORMATS}. */
export type SignFormat = (typeof SIGN_FORMATS)[number];

/** The JWS algorithms a device key signs with (RFC 7518, 3.1). */
export type JwsAlg = "ES256" | "ES384" | "ES512" | "RS256" | "PS256";

/** A signature scheme: the hash, RSA-PSS or not, and how an ECDSA signature is encoded. */
export interface Scheme {
  hash: "SHA-256" | "SHA-384" | "SHA-512";
  pss: boolean;
  /** ECDSA: `der` as OpenSSL writes it, `p1363` (r||s) as JOSE does. */
  ecdsa: "der" | "p1363";
}

/** airvantage and raw: SHA-256, ECDSA in DER or RSA PKCS#1 v1.5, as `openssl dgst -sha256 -sign` makes them. */
export const OPENSSL_SCHEME: Scheme = { hash: "SHA-256", pss: false, ecdsa: "der" };

/** The scheme of a JWS algorithm. */
export function jwsScheme(alg: JwsAlg): Scheme {
  const hash = alg.endsWith("384") ? "SHA-384" : alg.endsWith("512") ? "SHA-512" : "SHA-256";
  return { hash, pss: alg === "PS256", ecdsa: "p1363" };
}

/** The size past which a message is refused, to sign or to verify (1 MiB). */
export const MESSAGE_LIMIT = 1024 * 1024;

/** A malformed message, said as a failure of `step`. */
export function malformed(step: Step, message: string): CertRetrieverError {
  return new CertRetrieverError(`${step} failed: ${message}`, { step, reason: "message-malformed" });
}

/** The datapoint AirVantage's guide names for a message's signature. */
export const SIGNATURE_DATAPOINT = "signature";

/** A JSON value with every object's names sorted (RFC 8785's order for these names: by UTF-16 code unit). */
function sorted(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sorted);
  if (value === null || typeof value !== "object") return value;
  const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Object.fromEntries(entries.map(([k, v]) => [k, sorted(v)]));
}

/**
 * The first name an object of valid JSON `text` holds twice, if any. JSON.parse keeps the last of
 * them and other parsers the first, so the platform could read other datapoints than were signed.
 */
function duplicateName(text: string): string | undefined {
  const objects: Array<Set<string> | undefined> = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "{" || c === "[") objects.push(c === "{" ? new Set() : undefined);
    else if (c === "}" || c === "]") objects.pop();
    else if (c === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === "\\" ? 2 : 1;
      let next = end + 1;
      while (" \t\n\r".includes(text[next] ?? "x")) next++;
      const names = objects.at(-1);
      if (names && text[next] === ":") {
        const name = JSON.parse(text.slice(i, end + 1)) as string;
        if (names.has(name)) return name;
        names.add(name);
      }
      i = end;
    }
  }
  return undefined;
}

/** An AirVantage message: timestamp -> datapoints, each datapoint set a JSON object. */
type AirVantageMessage = Record<string, Record<string, unknown>>;

/** Parses an AirVantage message (`{"<timestamp>": {"<datapoint>": value, ...}, ...}`), or says why it is not one. */
export function parseAirVantage(text: string, step: Step): AirVantageMessage {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw malformed(step, `the message is not JSON (${(err as Error).message})`);
  }
  const twice = duplicateName(text);
  if (twice !== undefined) throw malformed(step, `the message names '${twice}' twice in one object`);
  const isObject = (v: unknown): v is Record<string, unknown> =>
    v !== null && typeof v === "object" && !Array.isArray(v);
  if (!isObject(parsed) || Object.keys(parsed).length === 0)
    throw malformed(step, 'the message is not an AirVantage message: a JSON object {"<timestamp>": {datapoints}}');
  for (const [timestamp, datapoints] of Object.entries(parsed)) {
    if (!isObject(datapoints))
      throw malformed(step, `the message's entry '${timestamp}' is not an object of datapoints`);
  }
  return parsed as AirVantageMessage;
}

/**
 * What is signed for one timestamp's datapoints (docs/signing.md): the UTF-8 bytes of the JSON text
 * `{"<timestamp>":{<datapoints>}}`, the `signature` datapoint left out, names sorted, no whitespace
 * (RFC 8785, JCS): the timestamp is signed with its data, so a signature cannot be moved to another.
 */
export function airVantageSigningInput(timestamp: string, datapoints: Record<string, unknown>): Uint8Array {
  const { [SIGNATURE_DATAPOINT]: _signature, ...rest } = datapoints;
  return new TextEncoder().encode(JSON.stringify({ [timestamp]: sorted(rest) }));
}

/** A JWS protected header, as it is signed. */
export interface JwsHeader {
  alg: JwsAlg;
  x5c?: string[];
  [name: string]: unknown;
}

/** base64url without padding (RFC 7515, 2). */
export function base64url(bytes: Uint8Array | string): string {
  return Buffer.from(typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes).toString("base64url");
}

/** The signing input of a compact JWS, ASCII(BASE64URL(header) '.' BASE64URL(payload)), for one header encoded once. */
export function jwsSigningInput(header: JwsHeader): (payload: Uint8Array) => string {
  const encoded = base64url(JSON.stringify(header));
  return (payload) => `${encoded}.${base64url(payload)}`;
}

const JWS_ALGS: readonly string[] = ["ES256", "ES384", "ES512", "RS256", "PS256"];

/** A compact JWS taken apart: its header, payload, signing input and signature; refused if it is not one this checks. */
export function parseJws(
  text: string,
  step: Step,
): { header: JwsHeader; payload: Uint8Array; input: Uint8Array; signature: Uint8Array } {
  const parts = text.trim().split(".");
  const b64 = /^[A-Za-z0-9_-]*$/;
  if (parts.length !== 3 || !parts.every((p) => b64.test(p)))
    throw malformed(step, "the message is not a compact JWS (three base64url parts joined by dots)");
  const [h, p, s] = parts as [string, string, string];
  let header: JwsHeader;
  try {
    header = JSON.parse(Buffer.from(h, "base64url").toString("utf8")) as JwsHeader;
  } catch {
    throw malformed(step, "the JWS header is not JSON");
  }
  if (header === null || typeof header !== "object" || !JWS_ALGS.includes(String(header.alg)))
    throw malformed(step, `the JWS algorithm '${String(header?.alg)}' is not one of ${JWS_ALGS.join(", ")}`);
  // RFC 7515, 4.1.11: a header parameter the recipient must understand, and this one understands none.
  if (header.crit !== undefined) throw malformed(step, "the JWS header has a 'crit' parameter, which is not supported");
  if (header.x5c !== undefined && (!Array.isArray(header.x5c) || !header.x5c.every((c) => typeof c === "string")))
    throw malformed(step, "the JWS header's x5c is not an array of base64 certificates");
  return {
    header,
    payload: Buffer.from(p, "base64url"),
    input: new TextEncoder().encode(`${h}.${p}`),
    signature: Buffer.from(s, "base64url"),
  };
}

/** Hex as AirVantage's guide shows a signature: upper case. */
export function upperHex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex").toUpperCase();
}

/** A signature datapoint's bytes, or a malformed message. */
export function fromHex(text: unknown, step: Step, where: string): Uint8Array {
  if (typeof text !== "string" || text.length === 0 || text.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(text))
    throw malformed(step, `the '${SIGNATURE_DATAPOINT}' datapoint of ${where} is not hex`);
  return Buffer.from(text, "hex");
}
