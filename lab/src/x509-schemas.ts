import type { X509Rules } from "./x509-rules.js";

/**
 * x509-identity-mgmt's JSON schemas (`schemas/*.json` at dojot v0.5.0 and v0.7.0/v0.8.0) as ajv 6
 * (`allErrors`, `useDefaults`, `removeAdditional`) reports a body that fails them: compared body by
 * body with ajv 6 running the real schema files. Only what the lab reads is checked.
 */

/** One error as ajv 6 (`allErrors`, `removeAdditional`) reports it. */
export interface AjvError {
  keyword: string;
  dataPath: string;
  schemaPath: string;
  params: Record<string, unknown>;
  message: string;
}

/** The `$id`s of `schemas/*.json` at each tag. */
const SCHEMA_IDS: Record<
  X509Rules,
  {
    defs: string;
    generate: string;
    changeOwner: string;
    newTrustedCa: string;
    updTrustedCa: string;
    externalKey: string;
  }
> = {
  "v0.5": {
    defs: "http://www.dojot.com.br/schemas/defs",
    generate: "http://www.dojot.com.br/schemas/reg-or-gen-cert",
    changeOwner: "http://www.dojot.com.br/schemas/ch-owner-cert",
    newTrustedCa: "http://www.dojot.com.br/schemas/reg-trust-ca",
    updTrustedCa: "http://www.dojot.com.br/schemas/upd-trust-ca",
    externalKey: "certificatePem",
  },
  "v0.7": {
    defs: "https://raw.githubusercontent.com/dojot/dojot/development/iam/x509-identity-mgmt/js/schemas/defs.json",
    generate:
      "https://raw.githubusercontent.com/dojot/dojot/development/iam/x509-identity-mgmt/js/schemas/register-or-generate-certificate.json",
    changeOwner:
      "https://raw.githubusercontent.com/dojot/dojot/development/iam/x509-identity-mgmt/js/schemas/change-owner-certificate.json",
    newTrustedCa:
      "https://raw.githubusercontent.com/dojot/dojot/development/iam/x509-identity-mgmt/js/schemas/register-trusted-ca-certificate.json",
    updTrustedCa:
      "https://raw.githubusercontent.com/dojot/dojot/development/iam/x509-identity-mgmt/js/schemas/update-trusted-ca-certificate.json",
    externalKey: "certificateChain",
  },
};

/** `schemas/defs.json` at each tag: the patterns and limits of the fields the lab checks. */
const DEFS: Record<
  X509Rules,
  { csr: string; certPem: string; device: StringRule; application: StringRule; fingerprint?: StringRule }
> = {
  "v0.5": {
    csr: "^-{5}BEGIN CERTIFICATE REQUEST-{5}(\\r\\n|\\r|\\n)([-A-Za-z0-9+/=]{1,64}(\\r\\n|\\r|\\n))+-{5}END CERTIFICATE REQUEST-{5}$",
    certPem:
      "^(-{5}BEGIN CERTIFICATE-{5}(\\r\\n|\\r|\\n)([-A-Za-z0-9+/=]{1,64}(\\r\\n|\\r|\\n))+-{5}END CERTIFICATE-{5})+$",
    device: { pattern: "^[0-9a-fA-F]{10}$", maxLength: 10 },
    application: { maxLength: 64, enum: ["kafka-consumer"] },
  },
  "v0.7": {
    csr: "^-{5}BEGIN CERTIFICATE REQUEST-{5}(\\r\\n|\\r|\\n)([-A-Za-z0-9+/=]{1,64}(\\r\\n|\\r|\\n))+-{5}END CERTIFICATE REQUEST-{5}(\\r\\n|\\r|\\n)?$",
    certPem:
      "^(-{5}BEGIN CERTIFICATE-{5}(\\r\\n|\\r|\\n)([-A-Za-z0-9+/=]{1,64}(\\r\\n|\\r|\\n))+-{5}END CERTIFICATE-{5}(\\r\\n|\\r|\\n)?)+$",
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

/** A body that fails its route's schema, with ajv's errors (answered in the generation's shape by {@link schemaFailure}). */
export class SchemaRefusal extends Error {
  constructor(
    readonly schemaId: string,
    readonly errors: AjvError[],
  ) {
    super("schema validation failure");
  }
}

/** The body error of a schema failure, in each generation's shape (`schema-validator.js` v0.5, `schemaValidator.js` v0.7). */
export function schemaFailure(rules: X509Rules, schemaId: string, schemaErrors: AjvError[]): Record<string, unknown> {
  return rules === "v0.5"
    ? { schema$id: schemaId, schemaErrors }
    : { error: "Input data schema validation failure.", detail: { schemaId, schemaErrors } };
}

/**
 * `POST /certificates` (`register-or-generate-certificate.json`) as ajv 6 reports it: the
 * `dependencies` first, then each property in the schema's order, then the `oneOf`.
 */
export function checkGenerateBody(body: unknown, rules: X509Rules): { schemaId: string; errors: AjvError[] } {
  const ids = SCHEMA_IDS[rules];
  const defs = `${ids.defs}#/definitions`;
  const external = ids.externalKey;
  if (!isObject(body))
    return { schemaId: ids.generate, errors: [typeError("", "#", "object"), oneOfError("", "#/oneOf", [0, 1])] };
  const errors = exclusive(body, [external, "csr"], "", "#");
  if (rules === "v0.7" && "caFingerprint" in body)
    errors.push(...checkString(body.caFingerprint, ".caFingerprint", `${defs}/fingerprint`, DEFS[rules].fingerprint!));
  if (external in body)
    errors.push(
      ...checkString(body[external], `.${external}`, `${defs}/cert-pem`, {
        pattern: DEFS[rules].certPem,
        maxLength: 65536,
      }),
    );
  if ("csr" in body)
    errors.push(...checkString(body.csr, ".csr", `${defs}/csr`, { pattern: DEFS[rules].csr, maxLength: 65536 }));
  if ("belongsTo" in body) errors.push(...checkBelongsTo(body.belongsTo, ".belongsTo", `${defs}/belongsTo`, rules));
  errors.push(...oneOfRequired(body, [external, "csr"], "", "#/oneOf"));
  return { schemaId: ids.generate, errors };
}

/** `PATCH /certificates/:fingerprint` (`change-owner-certificate.json`): the errors ajv 6 reports, or none. */
export function checkChangeOwnerBody(body: unknown, rules: X509Rules): { schemaId: string; errors: AjvError[] } {
  const ids = SCHEMA_IDS[rules];
  if (!isObject(body)) return { schemaId: ids.changeOwner, errors: [typeError("", "#", "object")] };
  if (!("belongsTo" in body)) return { schemaId: ids.changeOwner, errors: [required("", "#/required", "belongsTo")] };
  return {
    schemaId: ids.changeOwner,
    errors: checkBelongsTo(body.belongsTo, ".belongsTo", `${ids.defs}#/definitions/belongsTo`, rules),
  };
}

/**
 * `POST /trusted-cas` (`register-trusted-ca-certificate.json`, the same at v0.5.0 and v0.7.0/v0.8.0
 * but for the `$id`s): `required` first, then each property in the schema's order.
 */
export function checkNewTrustedCaBody(body: unknown, rules: X509Rules): { schemaId: string; errors: AjvError[] } {
  const ids = SCHEMA_IDS[rules];
  if (!isObject(body)) return { schemaId: ids.newTrustedCa, errors: [typeError("", "#", "object")] };
  const errors = "caPem" in body ? [] : [required("", "#/required", "caPem")];
  if ("caPem" in body)
    errors.push(
      ...checkString(body.caPem, ".caPem", `${ids.defs}#/definitions/cert-pem`, {
        pattern: DEFS[rules].certPem,
        maxLength: 65536,
      }),
    );
  errors.push(...checkBoolean(body, "allowAutoRegistration"));
  return { schemaId: ids.newTrustedCa, errors };
}

/** `PATCH /trusted-cas/:caFingerprint` (`update-trusted-ca-certificate.json`): `allowAutoRegistration`, a boolean, required. */
export function checkUpdTrustedCaBody(body: unknown, rules: X509Rules): { schemaId: string; errors: AjvError[] } {
  const ids = SCHEMA_IDS[rules];
  if (!isObject(body)) return { schemaId: ids.updTrustedCa, errors: [typeError("", "#", "object")] };
  if (!("allowAutoRegistration" in body))
    return { schemaId: ids.updTrustedCa, errors: [required("", "#/required", "allowAutoRegistration")] };
  return { schemaId: ids.updTrustedCa, errors: checkBoolean(body, "allowAutoRegistration") };
}

/** A `type: boolean` property, when present. */
function checkBoolean(body: Record<string, unknown>, key: string): AjvError[] {
  return key in body && typeof body[key] !== "boolean" ? [typeError(`.${key}`, `#/properties/${key}`, "boolean")] : [];
}

function isObject(value: unknown): value is Record<string, unknown> {
  return Boolean(value) && typeof value === "object" && !Array.isArray(value);
}

function typeError(dataPath: string, schemaPath: string, type: string): AjvError {
  return {
    keyword: "type",
    dataPath,
    schemaPath: `${schemaPath}/type`,
    params: { type },
    message: `should be ${type}`,
  };
}

function checkBelongsTo(value: unknown, dataPath: string, schemaPath: string, rules: X509Rules): AjvError[] {
  // A non-object passes both `required` branches of the oneOf, which ajv 6 also reports.
  if (!isObject(value))
    return [typeError(dataPath, schemaPath, "object"), oneOfError(dataPath, `${schemaPath}/oneOf`, [0, 1])];
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
function exclusive(
  input: Record<string, unknown>,
  [a, b]: [string, string],
  dataPath: string,
  schemaPath: string,
): AjvError[] {
  if (!(a in input && b in input)) return [];
  return [a, b].map((k) => ({
    keyword: "not",
    dataPath,
    schemaPath: `${schemaPath}/dependencies/${k}/not`,
    params: {},
    message: "should NOT be valid",
  }));
}

function checkString(value: unknown, dataPath: string, schemaPath: string, rule: StringRule): AjvError[] {
  if (typeof value !== "string") return [typeError(dataPath, schemaPath, "string")];
  const errors: AjvError[] = [];
  const length = [...value].length;
  if (length > rule.maxLength) {
    errors.push({
      keyword: "maxLength",
      dataPath,
      schemaPath: `${schemaPath}/maxLength`,
      params: { limit: rule.maxLength },
      message: `should NOT be longer than ${rule.maxLength} characters`,
    });
  }
  if (rule.minLength !== undefined && length < rule.minLength) {
    errors.push({
      keyword: "minLength",
      dataPath,
      schemaPath: `${schemaPath}/minLength`,
      params: { limit: rule.minLength },
      message: `should NOT be shorter than ${rule.minLength} characters`,
    });
  }
  if (rule.pattern !== undefined && !new RegExp(rule.pattern, "u").test(value)) {
    errors.push({
      keyword: "pattern",
      dataPath,
      schemaPath: `${schemaPath}/pattern`,
      params: { pattern: rule.pattern },
      message: `should match pattern "${rule.pattern}"`,
    });
  }
  if (rule.enum && !rule.enum.includes(value)) errors.push(enumError(dataPath, schemaPath, rule.enum));
  return errors;
}

function enumError(dataPath: string, schemaPath: string, allowedValues: string[]): AjvError {
  return {
    keyword: "enum",
    dataPath,
    schemaPath: `${schemaPath}/enum`,
    params: { allowedValues },
    message: "should be equal to one of the allowed values",
  };
}

/** `oneOf: [{required: [a]}, {required: [b]}]`: both missing gives two required errors and the oneOf. */
function oneOfRequired(
  input: Record<string, unknown>,
  keys: [string, string],
  dataPath: string,
  schemaPath: string,
): AjvError[] {
  const present = keys.map((k) => k in input);
  if (present[0] && present[1]) return [oneOfError(dataPath, schemaPath, [0, 1])];
  if (present[0] || present[1]) return [];
  return [
    ...keys.map((k, i) => required(dataPath, `${schemaPath}/${i}/required`, k)),
    oneOfError(dataPath, schemaPath, null),
  ];
}

function required(dataPath: string, schemaPath: string, missingProperty: string): AjvError {
  return {
    keyword: "required",
    dataPath,
    schemaPath,
    params: { missingProperty },
    message: `should have required property '${missingProperty}'`,
  };
}

function oneOfError(dataPath: string, schemaPath: string, passingSchemas: number[] | null): AjvError {
  return {
    keyword: "oneOf",
    dataPath,
    schemaPath,
    params: { passingSchemas },
    message: "should match exactly one schema in oneOf",
  };
}
