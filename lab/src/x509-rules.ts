import * as asn1js from "asn1js";
import type * as x509 from "./x509.js";

/**
 * x509-identity-mgmt's request rules, as its code at each release tag applies them (dojot/dojot
 * `x509-identity-mgmt/js/` at v0.5.0, identical at v0.6.1; `iam/x509-identity-mgmt/js/` at v0.7.0
 * and v0.8.0): the public-key check, the subject rules, the fingerprint parameter (the JSON schemas
 * are in `x509-schemas.ts`). When they and the real code disagree, these are wrong.
 */

/** Which release line's rules apply: v0.5 (= v0.6) or v0.7 (= v0.8). */
export type X509Rules = "v0.5" | "v0.7";

/** A refusal with the status, message and (v0.7+, the SDK's `errorTemplate`) detail the service sends. */
export class X509Refusal extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly detail?: Record<string, unknown>,
  ) {
    super(message);
  }
}

/**
 * `pkiUtils.checkPublicKey` (v0.7/v0.8; `pki-utils.js` v0.5), on the key as pkijs parses it: by
 * the algorithm's OID, RSA with a modulus of at least 256 bytes, or ECDSA on a named P-256, P-384
 * or P-521 curve (explicit curve parameters name none).
 */
export function checkPublicKey(spkiDer: ArrayBuffer): void {
  const spki = asn1js.fromBER(spkiDer).result;
  const [algorithm, key] = spki instanceof asn1js.Sequence ? spki.valueBlock.value : [];
  const [oid, parameters] = algorithm instanceof asn1js.Sequence ? algorithm.valueBlock.value : [];
  const algoID = oid instanceof asn1js.ObjectIdentifier ? oid.valueBlock.toString() : "";
  if (algoID === RSA_OID) {
    const rsa = key instanceof asn1js.BitString ? asn1js.fromBER(key.valueBlock.valueHexView).result : undefined;
    const modulus = rsa instanceof asn1js.Sequence ? rsa.valueBlock.value[0] : undefined;
    const bytes = modulus instanceof asn1js.Integer ? modulus.valueBlock.valueHexView.byteLength : 0;
    if (bytes < 256) throw new X509Refusal(400, "The RSA public key length less than 2048 bits is not supported.");
    return;
  }
  if (algoID === ECDSA_OID) {
    const curve = parameters instanceof asn1js.ObjectIdentifier ? parameters.valueBlock.toString() : undefined;
    if (!NAMED_CURVES.includes(curve ?? "")) {
      throw new X509Refusal(
        400,
        "The elliptical curve used in the ECDSA public key algorithm is not supported. (Use the NIST-recommended curves: P-256, P-384 or P-521)",
      );
    }
    return;
  }
  throw new X509Refusal(
    400,
    `The public key algorithm must be RSA or ECDSA.${algoID ? ` The key algorithm with OID=${algoID} is not supported` : ""}`,
  );
}

const RSA_OID = "1.2.840.113549.1.1.1";
const ECDSA_OID = "1.2.840.10045.2.1";
/** P-256, P-384, P-521 (`namedCurves` in pki-utils.js). */
const NAMED_CURVES = ["1.2.840.10045.3.1.7", "1.3.132.0.34", "1.3.132.0.35"];

/** `getASN1`: a PEM's base64 (every other character dropped) that asn1js cannot read at all is a 400; anything else it reads goes on. */
export function pemDer(pem: string): Uint8Array<ArrayBuffer> {
  const der = new Uint8Array(Buffer.from(pem.replace(/(^-.+?-.+$|[^A-Za-z0-9+/=])/gm, ""), "base64"));
  if (asn1js.fromBER(der).offset === -1)
    throw new X509Refusal(400, "Can not parse ASN1 data structure from binary data");
  return der;
}

/** `src/core/RelativeDistinguishedNames.json` (v0.7/v0.8; the same table inline in v0.5's `distinguished-name.js`). */
const RDN_KEYS: Record<string, string> = {
  "2.5.4.3": "CN",
  "2.5.4.4": "SN",
  "2.5.4.5": "serialNumber",
  "2.5.4.6": "C",
  "2.5.4.7": "L",
  "2.5.4.8": "ST",
  "2.5.4.9": "streetAddress",
  "2.5.4.10": "O",
  "2.5.4.11": "OU",
  "2.5.4.12": "title",
  "2.5.4.13": "description",
  "2.5.4.15": "businessCategory",
  "2.5.4.16": "postalAddress",
  "2.5.4.17": "postalCode",
  "2.5.4.20": "telephoneNumber",
  "2.5.4.41": "name",
  "2.5.4.42": "givenName",
  "2.5.4.43": "initials",
  "2.5.4.46": "dnQualifier",
  "2.5.4.65": "pseudonym",
  "1.2.840.113549.1.9.1": "emailAddress",
  "1.2.840.113549.1.9.2": "unstructuredName",
  "1.2.840.113549.1.9.8": "unstructuredAddress",
  "0.9.2342.19200300.100.1.1": "UID",
  "0.9.2342.19200300.100.1.25": "DC",
};

/** The constant attribute (`certificate.subject.constantattrs.o`, `CERT_DN_O` in v0.5). */
const CONSTANT_O = "dojot IoT Platform";
/** `allowedAttrsConstraints` for CN, printed as JavaScript prints the RegExp. */
const CN_RULE = /^[0-9A-Za-z ]{1,255}$/;

/** The subject a generation builds from the CSR: the DN string it hands EJBCA, as `[key, value]` pairs in its order. */
export interface SubjectDn {
  pairs: [string, string][];
  /** `stringify()`: `key=value` joined by ", ". */
  text: string;
}

/**
 * The Subject DN rules: v0.5 `DN.from(csr.subject).verify().cnamePrefix(tenant)` starts from the
 * constant O, so a CSR's own O is ignored and listed second; v0.7 `dnUtils.from(subject, true)`
 * keeps the CSR's order and then sets O (in place, or last), with no CN rule and no tenant prefix
 * (`certificate.check.subjectdn` defaults to false). Only the first value of each attribute counts.
 */
export function subjectDn(csrSubject: x509.JsonName, rules: X509Rules, tenant: string): SubjectDn {
  const dn = dnMap(csrSubject, rules === "v0.5" ? [["O", CONSTANT_O]] : []);
  if (rules === "v0.5") {
    const found = `[${[...dn.keys()].join(",")}]`;
    if (![...dn.keys()].every((k) => k === "O" || k === "CN"))
      throw new X509Refusal(400, `Error checking SubjectDN allowed attributes in CSR. Allowed: [CN] Found: ${found}`);
    if (!dn.has("CN"))
      throw new X509Refusal(
        400,
        `Error checking SubjectDN mandatory attributes in CSR. Mandatory: [CN] Found: ${found}`,
      );
    const cn = dn.get("CN")!;
    if (!CN_RULE.test(cn))
      throw new X509Refusal(
        400,
        `Error checking SubjectDN 'CN' attribute in CSR. The value does not match the regular expression: ${CN_RULE.toString()}. Found: ${cn}`,
      );
    dn.set("CN", `${tenant}:${cn}`);
  } else {
    dn.set("O", CONSTANT_O);
  }
  const pairs = [...dn.entries()];
  return { pairs, text: pairs.map(([k, v]) => `${k}=${v}`).join(", ") };
}

/** The name's attributes by short name, the first value of each, after `start` (`dnUtils.from`'s reduce). */
function dnMap(name: x509.JsonName, start: [string, string][]): Map<string, string> {
  const dn = new Map<string, string>(start);
  for (const rdn of name) {
    for (const [type, values] of Object.entries(rdn)) {
      const key = RDN_KEYS[NAME_OIDS[type] ?? type] ?? type;
      if (!dn.has(key) && values[0] !== undefined) dn.set(key, values[0]);
    }
  }
  return dn;
}

/** `dnUtils.from(name).stringify()` (v0.7/v0.8) without the constant attributes: what a registered certificate's and a trusted CA's record hold. */
export function dnText(name: x509.JsonName): string {
  return [...dnMap(name, []).entries()].map(([k, v]) => `${k}=${v}`).join(", ");
}

/** @peculiar/x509's short names, back to their OIDs. */
const NAME_OIDS: Record<string, string> = {
  CN: "2.5.4.3",
  C: "2.5.4.6",
  L: "2.5.4.7",
  ST: "2.5.4.8",
  O: "2.5.4.10",
  OU: "2.5.4.11",
  DC: "0.9.2342.19200300.100.1.25",
  E: "1.2.840.113549.1.9.1",
  SN: "2.5.4.4",
  T: "2.5.4.12",
  G: "2.5.4.42",
  I: "2.5.4.43",
};

/**
 * EJBCA's encoding of a DN: its own component order (CeSecore `DnComponents`, `dNObjectsForward`),
 * written in LDAP order (the X509Identity profile has `useldapdnorder` true), so C and O come first
 * and CN after them, whatever order the string had. Unknown attributes keep their place at the end.
 */
export function ejbcaName(pairs: [string, string][]): x509.JsonName {
  const oidOf = (key: string) => Object.entries(RDN_KEYS).find(([, k]) => k === key)?.[0] ?? key;
  const rank = (oid: string) => {
    const i = EJBCA_LDAP_ORDER.indexOf(oid);
    return i < 0 ? EJBCA_LDAP_ORDER.length : i;
  };
  return pairs
    .map(([key, value]) => [oidOf(key), value] as const)
    .sort((a, b) => rank(a[0]) - rank(b[0]))
    .map(([oid, value]) => ({ [oid]: [value] }));
}

/** `dNObjectsForward` reversed: c, dc, st, l, o, ou, t, surname, initials, givenname, serialnumber, name, cn, uid, dnqualifier, email, … */
const EJBCA_LDAP_ORDER = [
  "2.5.4.6",
  "0.9.2342.19200300.100.1.25",
  "2.5.4.8",
  "2.5.4.7",
  "2.5.4.10",
  "2.5.4.11",
  "2.5.4.12",
  "2.5.4.4",
  "2.5.4.43",
  "2.5.4.42",
  "2.5.4.5",
  "2.5.4.41",
  "2.5.4.3",
  "0.9.2342.19200300.100.1.1",
  "2.5.4.46",
  "1.2.840.113549.1.9.1",
  "1.2.840.113549.1.9.2",
  "1.2.840.113549.1.9.8",
  "2.5.4.17",
  "2.5.4.15",
  "2.5.4.16",
  "2.5.4.20",
  "2.5.4.65",
  "2.5.4.9",
];

/** v0.7 `sanitizeParams.sanitizeFingerprint`: upper case, colons added when there are none; v0.5 only upper-cases. */
export function routeFingerprint(value: string, rules: X509Rules): string {
  const upper = value.toUpperCase();
  if (rules === "v0.5" || !upper || upper.includes(":")) return upper;
  const pairs = upper.match(/.{2}/g);
  if (!pairs) throw new TypeError("Cannot read property 'join' of null"); // a one-character value: the real route's 500
  return pairs.join(":");
}
