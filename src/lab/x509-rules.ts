import { createPublicKey } from "node:crypto";
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

/** `schemas/defs.json`: the CSR pattern (v0.7 allows one line break after the END line) and `belongsTo.device`. */
const CSR_PATTERN: Record<X509Rules, string> = {
  "v0.5": "^-{5}BEGIN CERTIFICATE REQUEST-{5}(\\r\\n|\\r|\\n)([-A-Za-z0-9+/=]{1,64}(\\r\\n|\\r|\\n))+-{5}END CERTIFICATE REQUEST-{5}$",
  "v0.7": "^-{5}BEGIN CERTIFICATE REQUEST-{5}(\\r\\n|\\r|\\n)([-A-Za-z0-9+/=]{1,64}(\\r\\n|\\r|\\n))+-{5}END CERTIFICATE REQUEST-{5}(\\r\\n|\\r|\\n)?$",
};
const DEVICE_RULE: Record<X509Rules, { pattern: string; maxLength: number }> = {
  "v0.5": { pattern: "^[0-9a-fA-F]{10}$", maxLength: 10 },
  "v0.7": { pattern: "^[0-9a-fA-F-]{5,36}$", maxLength: 36 },
};

/** The body error of a schema failure, in each generation's shape (`schema-validator.js` v0.5, `schemaValidator.js` v0.7). */
export function schemaFailure(rules: X509Rules, schemaId: string, schemaErrors: AjvError[]): Record<string, unknown> {
  return rules === "v0.5" ? { "schema$id": schemaId, schemaErrors } : { error: "Input data schema validation failure.", detail: { schemaId, schemaErrors } };
}

/** `POST /certificates` (`register-or-generate-certificate.json`): the errors ajv 6 reports, or none. */
export function checkGenerateBody(body: unknown, rules: X509Rules): { schemaId: string; errors: AjvError[] } {
  const ids = SCHEMA_IDS[rules];
  const errors = checkObject(body, "", "#");
  if (errors.length === 0) {
    const input = body as Record<string, unknown>;
    const defs = `${ids.defs}#/definitions`;
    if ("csr" in input) errors.push(...checkString(input.csr, ".csr", `${defs}/csr`, { maxLength: 65536, pattern: CSR_PATTERN[rules] }));
    if ("belongsTo" in input) errors.push(...checkBelongsTo(input.belongsTo, ".belongsTo", `${defs}/belongsTo`, rules));
    errors.push(...oneOfRequired(input, [ids.externalKey, "csr"], "", "#/oneOf"));
  }
  return { schemaId: ids.generate, errors };
}

/** `PATCH /certificates/:fingerprint` (`change-owner-certificate.json`): the errors ajv 6 reports, or none. */
export function checkChangeOwnerBody(body: unknown, rules: X509Rules): { schemaId: string; errors: AjvError[] } {
  const ids = SCHEMA_IDS[rules];
  const errors = checkObject(body, "", "#");
  if (errors.length === 0) {
    const input = body as Record<string, unknown>;
    if (!("belongsTo" in input)) errors.push(required("", "#/required", "belongsTo"));
    else errors.push(...checkBelongsTo(input.belongsTo, ".belongsTo", `${ids.defs}#/definitions/belongsTo`, rules));
  }
  return { schemaId: ids.changeOwner, errors };
}

function checkObject(value: unknown, dataPath: string, schemaPath: string): AjvError[] {
  if (value && typeof value === "object" && !Array.isArray(value)) return [];
  return [{ keyword: "type", dataPath, schemaPath: `${schemaPath}/type`, params: { type: "object" }, message: "should be object" }];
}

function checkBelongsTo(value: unknown, dataPath: string, schemaPath: string, rules: X509Rules): AjvError[] {
  const notObject = checkObject(value, dataPath, schemaPath);
  // ajv 6 also reports the oneOf of required properties, which a non-object passes twice.
  if (notObject.length > 0) return [...notObject, oneOfError(dataPath, `${schemaPath}/oneOf`, [0, 1])];
  const owner = value as Record<string, unknown>;
  const errors: AjvError[] = [];
  if ("device" in owner && owner.device !== null) {
    const path = `${schemaPath}/properties/device`;
    if (typeof owner.device !== "string") {
      errors.push({ keyword: "type", dataPath: `${dataPath}.device`, schemaPath: `${path}/type`, params: { type: "string,null" }, message: "should be string,null" });
    } else {
      errors.push(...checkString(owner.device, `${dataPath}.device`, path, DEVICE_RULE[rules]));
    }
  }
  errors.push(...oneOfRequired(owner, ["device", "application"], dataPath, `${schemaPath}/oneOf`));
  return errors;
}

function checkString(value: unknown, dataPath: string, schemaPath: string, rule: { maxLength: number; pattern: string }): AjvError[] {
  if (typeof value !== "string") return [{ keyword: "type", dataPath, schemaPath: `${schemaPath}/type`, params: { type: "string" }, message: "should be string" }];
  const errors: AjvError[] = [];
  if ([...value].length > rule.maxLength) {
    errors.push({ keyword: "maxLength", dataPath, schemaPath: `${schemaPath}/maxLength`, params: { limit: rule.maxLength }, message: `should NOT be longer than ${rule.maxLength} characters` });
  }
  if (!new RegExp(rule.pattern, "u").test(value)) {
    errors.push({ keyword: "pattern", dataPath, schemaPath: `${schemaPath}/pattern`, params: { pattern: rule.pattern }, message: `should match pattern "${rule.pattern}"` });
  }
  return errors;
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

/** `pkiUtils.checkPublicKey` / `pki-utils.js` `checkPublicKey`: RSA of at least 2048 bits, or ECDSA on P-256, P-384 or P-521. */
export function checkPublicKey(spkiDer: ArrayBuffer): void {
  let key;
  try {
    key = createPublicKey({ key: Buffer.from(spkiDer), format: "der", type: "spki" });
  } catch {
    throw new X509Refusal(400, "The public key algorithm must be RSA or ECDSA.");
  }
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === "rsa") {
    if ((details.modulusLength ?? 0) < 2048) throw new X509Refusal(400, "The RSA public key length less than 2048 bits is not supported.");
    return;
  }
  if (key.asymmetricKeyType === "ec") {
    if (!["prime256v1", "secp384r1", "secp521r1"].includes(details.namedCurve ?? "")) {
      throw new X509Refusal(400, "The elliptical curve used in the ECDSA public key algorithm is not supported. (Use the NIST-recommended curves: P-256, P-384 or P-521)");
    }
    return;
  }
  const oid = KEY_OIDS[key.asymmetricKeyType ?? ""];
  throw new X509Refusal(400, `The public key algorithm must be RSA or ECDSA.${oid ? ` The key algorithm with OID=${oid} is not supported` : ""}`);
}

const KEY_OIDS: Record<string, string> = {
  "rsa-pss": "1.2.840.113549.1.1.10",
  dsa: "1.2.840.10040.4.1",
  ed25519: "1.3.101.112",
  ed448: "1.3.101.113",
  x25519: "1.3.101.110",
  x448: "1.3.101.111",
};

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
  return (upper.match(/.{2}/g) ?? []).join(":");
}
