import * as asn1js from "asn1js";
import type * as x509 from "../crypto/x509.js";

/**
 * x509-identity-mgmt's request rules, as its code at each release tag applies them (dojot/dojot
 * `x509-identity-mgmt/js/` at v0.5.0, identical at v0.6.1; `iam/x509-identity-mgmt/js/` at v0.7.0
 * and v0.8.0): the JSON schemas as ajv 6 reports them, the public-key check and the subject rules.
 * The lab's x509 API answers with these; when they and the real code disagree, these are wrong.
 */

/** Which release line's rules apply: v0.5 (= v0.6) or v0.7 (= v0.8). */
export type X509Rules = "v0.5" | "v0.7";

/** A refusal with the status and message the service sends. */
export class X509Refusal extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** One error as ajv 6 (`allErrors`, `removeAdditional`) reports it. */
export interface AjvError {
  keyword: string;
  dataPath: string;
  schemaPath: string;
  params: Record<string, unknown>;
  message: string;
}

/** The `$id`s of `schemas/*.json` at each tag. */
const SCHEMA_IDS: Record<X509Rules, { defs: string; generate: string; changeOwner: string; externalKey: string }> = {
  "v0.5": {
    defs: "http://www.dojot.com.br/schemas/defs",
    generate: "http://www.dojot.com.br/schemas/reg-or-gen-cert",
    changeOwner: "http://www.dojot.com.br/schemas/ch-owner-cert",
    externalKey: "certificatePem",
  },
  "v0.7": {
    defs: "https://raw.githubusercontent.com/dojot/dojot/development/iam/x509-identity-mgmt/js/schemas/defs.json",
    generate: "https://raw.githubusercontent.com/dojot/dojot/development/iam/x509-identity-mgmt/js/schemas/register-or-generate-certificate.json",
    changeOwner: "https://raw.githubusercontent.com/dojot/dojot/development/iam/x509-identity-mgmt/js/schemas/change-owner-certificate.json",
    externalKey: "certificateChain",
  },
};

/** `schemas/defs.json` at each tag: the patterns and limits of the fields the lab checks. */
const DEFS: Record<X509Rules, { csr: string; certPem: string; device: StringRule; application: StringRule; fingerprint?: StringRule }> = {
  "v0.5": {
    csr: "^-{5}BEGIN CERTIFICATE REQUEST-{5}(\\r\\n|\\r|\\n)([-A-Za-z0-9+/=]{1,64}(\\r\\n|\\r|\\n))+-{5}END CERTIFICATE REQUEST-{5}$",
    certPem: "^(-{5}BEGIN CERTIFICATE-{5}(\\r\\n|\\r|\\n)([-A-Za-z0-9+/=]{1,64}(\\r\\n|\\r|\\n))+-{5}END CERTIFICATE-{5})+$",
    device: { pattern: "^[0-9a-fA-F]{10}$", maxLength: 10 },
    application: { maxLength: 64, enum: ["kafka-consumer"] },
  },
  "v0.7": {
    csr: "^-{5}BEGIN CERTIFICATE REQUEST-{5}(\\r\\n|\\r|\\n)([-A-Za-z0-9+/=]{1,64}(\\r\\n|\\r|\\n))+-{5}END CERTIFICATE REQUEST-{5}(\\r\\n|\\r|\\n)?$",
    certPem: "^(-{5}BEGIN CERTIFICATE-{5}(\\r\\n|\\r|\\n)([-A-Za-z0-9+/=]{1,64}(\\r\\n|\\r|\\n))+-{5}END CERTIFICATE-{5}(\\r\\n|\\r|\\n)?)+$",
    device: { pattern: "^[0-9a-fA-F-]{5,36}$", maxLength: 36 },
    application: { pattern: "^[0-9a-zA-Z-]{1,64}$", maxLength: 64 },
    fingerprint: { pattern: "^([A-Fa-f0-9]{2}:?){32}$", minLength: 64, maxLength: 95 },
  },
};

/** A string schema: its limits, pattern or enum. */
interface StringRule {
  pattern?: string;
  minLength?: number;
  maxLength: number;
  enum?: string[];
}

/** The body error of a schema failure, in each generation's shape (`schema-validator.js` v0.5, `schemaValidator.js` v0.7). */
export function schemaFailure(rules: X509Rules, schemaId: string, schemaErrors: AjvError[]): Record<string, unknown> {
  return rules === "v0.5" ? { "schema$id": schemaId, schemaErrors } : { error: "Input data schema validation failure.", detail: { schemaId, schemaErrors } };
}

/**
 * `POST /certificates` (`register-or-generate-certificate.json`) as ajv 6 reports it: the
 * `dependencies` first, then each property in the schema's order, then the `oneOf`.
 */
export function checkGenerateBody(body: unknown, rules: X509Rules): { schemaId: string; errors: AjvError[] } {
  const ids = SCHEMA_IDS[rules];
  const defs = `${ids.defs}#/definitions`;
  const external = ids.externalKey;
  if (!isObject(body)) return { schemaId: ids.generate, errors: [typeError("", "#", "object"), oneOfError("", "#/oneOf", [0, 1])] };
  const errors = exclusive(body, [external, "csr"], "", "#");
  if (rules === "v0.7" && "caFingerprint" in body) errors.push(...checkString(body.caFingerprint, ".caFingerprint", `${defs}/fingerprint`, DEFS[rules].fingerprint!));
  if (external in body) errors.push(...checkString(body[external], `.${external}`, `${defs}/cert-pem`, { pattern: DEFS[rules].certPem, maxLength: 65536 }));
  if ("csr" in body) errors.push(...checkString(body.csr, ".csr", `${defs}/csr`, { pattern: DEFS[rules].csr, maxLength: 65536 }));
  if ("belongsTo" in body) errors.push(...checkBelongsTo(body.belongsTo, ".belongsTo", `${defs}/belongsTo`, rules));
  errors.push(...oneOfRequired(body, [external, "csr"], "", "#/oneOf"));
  return { schemaId: ids.generate, errors };
}

/** `PATCH /certificates/:fingerprint` (`change-owner-certificate.json`): the errors ajv 6 reports, or none. */
export function checkChangeOwnerBody(body: unknown, rules: X509Rules): { schemaId: string; errors: AjvError[] } {
  const ids = SCHEMA_IDS[rules];
  if (!isObject(body)) return { schemaId: ids.changeOwner, errors: [typeError("", "#", "object")] };
  if (!("belongsTo" in body)) return { schemaId: ids.changeOwner, errors: [required("", "#/required", "belongsTo")] };
  return { schemaId: ids.changeOwner, errors: checkBelongsTo(body.belongsTo, ".belongsTo", `${ids.defs}#/definitions/belongsTo`, rules) };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return Boolean(value) && typeof value === "object" && !Array.isArray(value);
}

function typeError(dataPath: string, schemaPath: string, type: string): AjvError {
  return { keyword: "type", dataPath, schemaPath: `${schemaPath}/type`, params: { type }, message: `should be ${type}` };
}

function checkBelongsTo(value: unknown, dataPath: string, schemaPath: string, rules: X509Rules): AjvError[] {
  // A non-object passes both `required` branches of the oneOf, which ajv 6 also reports.
  if (!isObject(value)) return [typeError(dataPath, schemaPath, "object"), oneOfError(dataPath, `${schemaPath}/oneOf`, [0, 1])];
  const errors = exclusive(value, ["device", "application"], dataPath, schemaPath);
  for (const key of ["device", "application"] as const) {
    if (!(key in value)) continue;
    const path = `${schemaPath}/properties/${key}`;
    const rule = DEFS[rules][key];
    if (value[key] === null) {
      // null passes the type, but not an enum without it (v0.5's application).
      if (rule.enum) errors.push(enumError(`${dataPath}.${key}`, path, rule.enum));
      continue;
    }
    if (typeof value[key] !== "string") errors.push(typeError(`${dataPath}.${key}`, path, "string,null"));
    else errors.push(...checkString(value[key], `${dataPath}.${key}`, path, rule));
  }
  errors.push(...oneOfRequired(value, ["device", "application"], dataPath, `${schemaPath}/oneOf`));
  return errors;
}

/** `dependencies: {a: {not: {required: [b]}}, b: {not: {required: [a]}}}`: both present fails both. */
function exclusive(input: Record<string, unknown>, [a, b]: [string, string], dataPath: string, schemaPath: string): AjvError[] {
  if (!(a in input && b in input)) return [];
  return [a, b].map((k) => ({ keyword: "not", dataPath, schemaPath: `${schemaPath}/dependencies/${k}/not`, params: {}, message: "should NOT be valid" }));
}

function checkString(value: unknown, dataPath: string, schemaPath: string, rule: StringRule): AjvError[] {
  if (typeof value !== "string") return [typeError(dataPath, schemaPath, "string")];
  const errors: AjvError[] = [];
  const length = [...value].length;
  if (length > rule.maxLength) {
    errors.push({ keyword: "maxLength", dataPath, schemaPath: `${schemaPath}/maxLength`, params: { limit: rule.maxLength }, message: `should NOT be longer than ${rule.maxLength} characters` });
  }
  if (rule.minLength !== undefined && length < rule.minLength) {
    errors.push({ keyword: "minLength", dataPath, schemaPath: `${schemaPath}/minLength`, params: { limit: rule.minLength }, message: `should NOT be shorter than ${rule.minLength} characters` });
  }
  if (rule.pattern !== undefined && !new RegExp(rule.pattern, "u").test(value)) {
    errors.push({ keyword: "pattern", dataPath, schemaPath: `${schemaPath}/pattern`, params: { pattern: rule.pattern }, message: `should match pattern "${rule.pattern}"` });
  }
  if (rule.enum && !rule.enum.includes(value)) errors.push(enumError(dataPath, schemaPath, rule.enum));
  return errors;
}

function enumError(dataPath: string, schemaPath: string, allowedValues: string[]): AjvError {
  return { keyword: "enum", dataPath, schemaPath: `${schemaPath}/enum`, params: { allowedValues }, message: "should be equal to one of the allowed values" };
}

/** `oneOf: [{required: [a]}, {required: [b]}]`: both missing gives two required errors and the oneOf. */
function oneOfRequired(input: Record<string, unknown>, keys: [string, string], dataPath: string, schemaPath: string): AjvError[] {
  const present = keys.map((k) => k in input);
  if (present[0] && present[1]) return [oneOfError(dataPath, schemaPath, [0, 1])];
  if (present[0] || present[1]) return [];
  return [...keys.map((k, i) => required(dataPath, `${schemaPath}/${i}/required`, k)), oneOfError(dataPath, schemaPath, null)];
}

function required(dataPath: string, schemaPath: string, missingProperty: string): AjvError {
  return { keyword: "required", dataPath, schemaPath, params: { missingProperty }, message: `should have required property '${missingProperty}'` };
}

function oneOfError(dataPath: string, schemaPath: string, passingSchemas: number[] | null): AjvError {
  return { keyword: "oneOf", dataPath, schemaPath, params: { passingSchemas }, message: "should match exactly one schema in oneOf" };
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
      throw new X509Refusal(400, "The elliptical curve used in the ECDSA public key algorithm is not supported. (Use the NIST-recommended curves: P-256, P-384 or P-521)");
    }
    return;
  }
  throw new X509Refusal(400, `The public key algorithm must be RSA or ECDSA.${algoID ? ` The key algorithm with OID=${algoID} is not supported` : ""}`);
}

const RSA_OID = "1.2.840.113549.1.1.1";
const ECDSA_OID = "1.2.840.10045.2.1";
/** P-256, P-384, P-521 (`namedCurves` in pki-utils.js). */
const NAMED_CURVES = ["1.2.840.10045.3.1.7", "1.3.132.0.34", "1.3.132.0.35"];

/** `getASN1`: a PEM's base64 (every other character dropped) that asn1js cannot read at all is a 400; anything else it reads goes on. */
export function pemDer(pem: string): Uint8Array<ArrayBuffer> {
  const der = new Uint8Array(Buffer.from(pem.replace(/(^-.+?-.+$|[^A-Za-z0-9+/=])/gm, ""), "base64"));
  if (asn1js.fromBER(der).offset === -1) throw new X509Refusal(400, "Can not parse ASN1 data structure from binary data");
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
  const dn = new Map<string, string>(rules === "v0.5" ? [["O", CONSTANT_O]] : []);
  for (const rdn of csrSubject) {
    for (const [type, values] of Object.entries(rdn)) {
      const key = RDN_KEYS[NAME_OIDS[type] ?? type] ?? type;
      if (!dn.has(key) && values[0] !== undefined) dn.set(key, values[0]);
    }
  }
  if (rules === "v0.5") {
    const found = `[${[...dn.keys()].join(",")}]`;
    if (![...dn.keys()].every((k) => k === "O" || k === "CN")) throw new X509Refusal(400, `Error checking SubjectDN allowed attributes in CSR. Allowed: [CN] Found: ${found}`);
    if (!dn.has("CN")) throw new X509Refusal(400, `Error checking SubjectDN mandatory attributes in CSR. Mandatory: [CN] Found: ${found}`);
    const cn = dn.get("CN")!;
    if (!CN_RULE.test(cn)) throw new X509Refusal(400, `Error checking SubjectDN 'CN' attribute in CSR. The value does not match the regular expression: ${CN_RULE.toString()}. Found: ${cn}`);
    dn.set("CN", `${tenant}:${cn}`);
  } else {
    dn.set("O", CONSTANT_O);
  }
  const pairs = [...dn.entries()];
  return { pairs, text: pairs.map(([k, v]) => `${k}=${v}`).join(", ") };
}

/** @peculiar/x509's short names, back to their OIDs. */
const NAME_OIDS: Record<string, string> = { CN: "2.5.4.3", C: "2.5.4.6", L: "2.5.4.7", ST: "2.5.4.8", O: "2.5.4.10", OU: "2.5.4.11", DC: "0.9.2342.19200300.100.1.25", E: "1.2.840.113549.1.9.1", SN: "2.5.4.4", T: "2.5.4.12", G: "2.5.4.42", I: "2.5.4.43" };

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
