import { usageError } from "../errors.js";

/**
 * A PKCS#11 URI (RFC 7512) as cert-retriever uses it: which token (by label, serial, manufacturer,
 * model or slot id), which key (object = CKA_LABEL, id = CKA_ID) and, in the query, where the
 * module and the PIN are. `pin-value` is parsed so that it can be refused where it would be seen.
 */
export interface Pkcs11Uri {
  token?: string;
  serial?: string;
  manufacturer?: string;
  model?: string;
  slotId?: number;
  object?: string;
  id?: Uint8Array;
  type?: string;
  modulePath?: string;
  moduleName?: string;
  pinSource?: string;
  pinValue?: string;
  /** The key was in the token before cert-retriever certified it (query `x-cert-retriever=kept`): it is never removed. */
  kept?: boolean;
}

/** The query attribute that marks a recorded key as one cert-retriever found, not made: it never removes it. */
const KEPT = "x-cert-retriever=kept";

/** Path attributes (RFC 7512 section 2.3) and their field; the library-* and slot-* ones other than slot-id are accepted and ignored. */
const PATH_ATTRIBUTES: Record<string, keyof Pkcs11Uri | null> = {
  token: "token",
  serial: "serial",
  manufacturer: "manufacturer",
  model: "model",
  "slot-id": "slotId",
  object: "object",
  id: "id",
  type: "type",
  "library-manufacturer": null,
  "library-description": null,
  "library-version": null,
  "slot-manufacturer": null,
  "slot-description": null,
};

const QUERY_ATTRIBUTES: Record<string, keyof Pkcs11Uri> = {
  "module-path": "modulePath",
  "module-name": "moduleName",
  "pin-source": "pinSource",
  "pin-value": "pinValue",
};

/** Whether a `--key` value names a key in a PKCS#11 token. */
export function isPkcs11Uri(value: string | undefined): value is string {
  return typeof value === "string" && /^pkcs11:/i.test(value);
}

/** Parses `text` (a stored record's newline aside), refusing (`usage`, field `key`) what RFC 7512 does not allow or cert-retriever cannot use, in one sentence. */
export function parsePkcs11Uri(text: string): Pkcs11Uri {
  text = text.trim();
  const bad = (why: string) => usageError(`the key URI ${shown(text)} is not a usable PKCS#11 URI: ${why}`, "key");
  if (!isPkcs11Uri(text)) throw bad("it must start with pkcs11:");
  const body = text.slice("pkcs11:".length);
  const queryAt = body.indexOf("?");
  const path = queryAt < 0 ? body : body.slice(0, queryAt);
  const query = queryAt < 0 ? "" : body.slice(queryAt + 1);
  const uri: Pkcs11Uri = {};
  const seen = new Set<string>();
  const take = (part: string, separator: string, table: Record<string, keyof Pkcs11Uri | null>) => {
    for (const item of part.split(separator)) {
      if (item === "") continue;
      const eq = item.indexOf("=");
      if (eq <= 0) throw bad(`${quoted(item.replace(/pin-value.*/i, "pin-value=…"))} is not name=value`);
      const name = item.slice(0, eq).toLowerCase();
      const raw = item.slice(eq + 1);
      if (item.toLowerCase() === KEPT && separator === "&") uri.kept = true;
      if (name.startsWith("x-")) continue; // vendor attributes
      if (!Object.hasOwn(table, name))
        throw bad(`${quoted(name)} is not an attribute of the ${separator === ";" ? "path" : "query"}`);
      if (seen.has(name)) throw bad(`'${name}' is given twice`);
      seen.add(name);
      const field = table[name];
      if (!field) continue;
      let bytes: Uint8Array;
      try {
        bytes = percentDecode(raw);
      } catch {
        throw bad(`the value of '${name}' has a broken %-escape`);
      }
      if (field === "id") {
        uri.id = bytes;
      } else if (field === "slotId") {
        const digits = Buffer.from(bytes).toString("utf8");
        const n = Number(digits);
        // Number() would also take "", " 1", "0x10", "1e3" and "-0".
        if (!/^\d+$/.test(digits) || !Number.isSafeInteger(n)) throw bad("slot-id must be a decimal number");
        uri.slotId = n;
      } else {
        (uri as Record<string, unknown>)[field] = Buffer.from(bytes).toString("utf8");
      }
    }
  };
  take(path, ";", PATH_ATTRIBUTES);
  take(query, "&", QUERY_ATTRIBUTES);
  if (uri.type !== undefined && !["private", "public", "cert"].includes(uri.type))
    throw bad(`type=${quoted(uri.type).slice(1, -1)} names no key (use type=private, or leave it out)`);
  if (uri.object === "") throw bad("object= is empty");
  return uri;
}

/**
 * The URI naming one key exactly, as cert-retriever records it with the certificate: the token,
 * the key's label and id, `type=private`, and the module and PIN source it was reached with
 * (never a PIN).
 */
export function formatPkcs11Uri(uri: Pkcs11Uri): string {
  const path: string[] = [];
  if (uri.token !== undefined) path.push(`token=${percentEncode(uri.token)}`);
  if (uri.manufacturer !== undefined) path.push(`manufacturer=${percentEncode(uri.manufacturer)}`);
  if (uri.model !== undefined) path.push(`model=${percentEncode(uri.model)}`);
  if (uri.serial !== undefined) path.push(`serial=${percentEncode(uri.serial)}`);
  if (uri.slotId !== undefined) path.push(`slot-id=${uri.slotId}`);
  if (uri.object !== undefined) path.push(`object=${percentEncode(uri.object)}`);
  if (uri.id !== undefined) path.push(`id=${[...uri.id].map((b) => `%${b.toString(16).padStart(2, "0")}`).join("")}`);
  if (uri.type !== undefined) path.push(`type=${uri.type}`);
  const query: string[] = [];
  if (uri.modulePath !== undefined) query.push(`module-path=${percentEncode(uri.modulePath, "/")}`);
  if (uri.moduleName !== undefined) query.push(`module-name=${percentEncode(uri.moduleName)}`);
  if (uri.pinSource !== undefined) query.push(`pin-source=${percentEncode(uri.pinSource, "/:")}`);
  if (uri.kept) query.push(KEPT);
  return `pkcs11:${path.join(";")}${query.length > 0 ? `?${query.join("&")}` : ""}`;
}

/** The URI as it may be shown: a `pin-value` is replaced, never printed (and quoted as {@link quoted} does). */
export function shown(text: string): string {
  return quoted(text.replace(/(pin-value=)[^&;]*/gi, "$1…"));
}

/** The URI without any `pin-value` attribute (a PIN is never shown), the rest as it was; `status` shows a recorded key so. */
export function withoutPinValue(text: string): string {
  const scheme = /^pkcs11:/i.exec(text)?.[0] ?? "";
  const rest = text.slice(scheme.length);
  const at = rest.indexOf("?");
  const keep = (attributes: string, separator: string) =>
    attributes
      .split(separator)
      .filter((a) => !/^\s*pin-value\s*(=|$)/i.test(a))
      .join(separator);
  const path = keep(at < 0 ? rest : rest.slice(0, at), ";");
  const query = at < 0 ? "" : keep(rest.slice(at + 1), "&");
  return `${scheme}${path}${query ? `?${query}` : ""}`;
}

/** Text of a URI in quotes, on one line and at most 120 characters: control characters escaped, the middle of a longer one left out. */
function quoted(text: string): string {
  const line = text.replace(
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it escapes
    /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
  return `'${line.length > 120 ? `${line.slice(0, 80)}...${line.slice(-37)}` : line}'`;
}

/** RFC 3986 unreserved characters (and `extra`) stay; everything else is %-escaped, byte by byte. */
function percentEncode(value: string, extra = ""): string {
  let out = "";
  for (const byte of Buffer.from(value, "utf8")) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-._~]/.test(c) || extra.includes(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** %-escapes to bytes; the characters between them as UTF-8 (by code point: a character outside the BMP is two UTF-16 units). */
function percentDecode(value: string): Uint8Array {
  const out: Buffer[] = [];
  let at = 0;
  for (let i = value.indexOf("%"); i >= 0; i = value.indexOf("%", at)) {
    const hex = value.slice(i + 1, i + 3);
    if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new Error("broken escape");
    out.push(Buffer.from(value.slice(at, i), "utf8"), Buffer.from([parseInt(hex, 16)]));
    at = i + 3;
  }
  out.push(Buffer.from(value.slice(at), "utf8"));
  return new Uint8Array(Buffer.concat(out));
}

/**
 * Whether two recorded URIs name the same token key: the same token (label, serial), label and id.
 * The query (module path, PIN source) may differ: it says how to reach the key, not which it is.
 */
export function sameKey(a: string, b: string): boolean {
  try {
    const [x, y] = [parsePkcs11Uri(a), parsePkcs11Uri(b)];
    return (
      x.token === y.token &&
      x.serial === y.serial &&
      x.object === y.object &&
      x.id !== undefined &&
      y.id !== undefined &&
      Buffer.from(x.id).equals(Buffer.from(y.id))
    );
  } catch {
    return false;
  }
}

/** A recorded key in words: `the key 'f60c28' with id 2aac… in token 'device'`. */
export function describeKey(record: string): string {
  const uri = parsePkcs11Uri(record);
  return `the key '${uri.object ?? ""}' with id ${Buffer.from(uri.id ?? []).toString("hex")} in token '${uri.token ?? ""}'`;
}

/** A token as the messages name it. */
export function tokenName(uri: { token?: string }): string {
  return uri.token !== undefined ? `token '${uri.token}'` : "the token";
}

/** Whether a recorded key is one cert-retriever found in the token (`--key` with `id=`), which it never removes. */
export function isKept(record: string): boolean {
  try {
    return parsePkcs11Uri(record).kept === true;
  } catch {
    return false;
  }
}

/** Whether a stored key is the URI of a key kept in a PKCS#11 token rather than the key itself. */
export function isKeyUri(key: string): boolean {
  return key.trimStart().startsWith("pkcs11:");
}
