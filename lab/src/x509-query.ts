/**
 * How x509-identity-mgmt's lists filter, as its code and libraries do: Express's query parser (qs)
 * leaves strings, and arrays for repeated keys; mongo-querystring 4.1.1 (`index.js`, the same since
 * 2017: `parse`, `parseString`, `parseStringVal`) turns the whitelisted keys into a MongoDB filter,
 * which MongoDB then matches (a comparison across BSON types never matches: a date is not a string).
 */
import type { X509Rules } from "./x509-rules.js";

/** A query as qs leaves it, in order: a string, or an array for a repeated key (or `key[]`). */
export type Query = Record<string, string | string[] | number>;

/** One field's condition in the filter: a value to equal, or operators. */
type Condition = string | number | boolean | Operators;
type Operators = {
  $exists?: boolean;
  $ne?: Scalar;
  $gt?: Scalar;
  $gte?: Scalar;
  $lt?: Scalar;
  $lte?: Scalar;
  $regex?: string;
  $in?: Scalar[];
  $nin?: Scalar[];
};
type Scalar = string | number | boolean;

/** A filter: field path -> condition. */
export type Filter = Record<string, Condition>;

/** The request's query as qs parses it (`a=1&a=2` and `a[]=1` are arrays). */
export function queryOf(url: URL): Query {
  const query: Query = {};
  for (const [raw, value] of url.searchParams) {
    const key = raw.replace(/\[\]$/, "");
    const had = query[key];
    if (had === undefined) query[key] = raw.endsWith("[]") ? [value] : value;
    else query[key] = [...(Array.isArray(had) ? had : [String(had)]), value];
  }
  return query;
}

/** `parseStringVal`: `true`/`false` as booleans, a number as a number, else the string. */
function scalar(text: string): Scalar {
  if (text.toLowerCase() === "true") return true;
  if (text.toLowerCase() === "false") return false;
  return !Number.isNaN(Number.parseInt(text, 10)) && +text - +text + 1 >= 0 ? Number.parseFloat(text) : text;
}

/** `parseString`: a value that starts with an operator (`!`, `>`, `>=`, `<`, `<=`, `^`, `$`, `~`). */
function operator(text: string, inArray: boolean): Operators {
  const op = text[0]!;
  const eq = text[1] === "=";
  const rest = text.slice(eq ? 2 : 1);
  const value = scalar(rest);
  if (op === "!") return inArray ? { $nin: [value] } : rest === "" ? { $exists: false } : { $ne: value };
  if (op === ">") return eq ? { $gte: value } : { $gt: value };
  if (op === "<") return eq ? { $lte: value } : { $lt: value };
  // `^` and `$` anchor the value; `~` strips "undefined" from it (its `replace(this.valReqex, '')` names no field).
  return { $regex: op === "^" ? `^${value}` : op === "$" ? `${value}$` : rest.replace("undefined", "") };
}

/** `MongoQS.parse` with a whitelist and the operators `ops` (4.1.1's default: all of them, and `$in` for arrays). */
function mongoFilter(query: Query, whitelist: readonly string[], ops = ["!", "^", "$", "~", ">", "<", "$in"]): Filter {
  const filter: Filter = {};
  for (const [key, value] of Object.entries(query)) {
    if (!whitelist.includes(key) || !/^[a-zA-Z0-9-_.]+$/i.test(key)) continue;
    if (Array.isArray(value)) {
      if (!ops.includes("$in") || value.length === 0) continue;
      const set: Operators = {};
      for (const item of value)
        addTo(set, ops.includes(item[0] ?? "") ? operator(item, true) : { $in: [scalar(item)] });
      filter[key] = set;
    } else if (typeof value === "string") {
      filter[key] = value === "" ? { $exists: true } : ops.includes(value[0]!) ? operator(value, false) : scalar(value);
    }
  }
  return filter;
}

/** An array's item added to the key's operators: `$in` and `$nin` gather, the others are replaced. */
function addTo(set: Operators, parsed: Operators): void {
  for (const [op, value] of Object.entries(parsed) as [keyof Operators, Scalar | Scalar[] | boolean][]) {
    if (op === "$in" || op === "$nin") set[op] = [...(set[op] ?? []), ...(value as Scalar[])];
    else Object.assign(set, { [op]: value });
  }
}

/** The fields MongoDB holds as dates (the lab keeps them as ISO text): no string, number or boolean equals one. */
const DATES = new Set(["createdAt", "modifiedAt", "validity.notBefore", "validity.notAfter"]);

/** Whether `record` passes `filter`, as MongoDB would match the stored document. */
export function matches(record: Record<string, unknown>, filter: Filter): boolean {
  return Object.entries(filter).every(([path, condition]) => {
    const found = path
      .split(".")
      .reduce<unknown>(
        (at, part) => (at !== null && typeof at === "object" ? (at as Record<string, unknown>)[part] : undefined),
        record,
      );
    const value = DATES.has(path) && found !== undefined ? new Date(String(found)) : found;
    return typeof condition === "object" ? meets(value, condition) : same(value, condition);
  });
}

/** Equality within one BSON type. */
function same(value: unknown, wanted: Scalar): boolean {
  return typeof value === typeof wanted && value === wanted;
}

function meets(value: unknown, ops: Operators): boolean {
  const order = (test: (a: number | string, b: number | string) => boolean, bound: Scalar | undefined) =>
    bound === undefined ||
    ((typeof value === "string" || typeof value === "number") &&
      typeof value === typeof bound &&
      test(value, bound as never));
  return (
    (ops.$exists === undefined || (value !== undefined) === ops.$exists) &&
    (ops.$ne === undefined || !same(value, ops.$ne)) &&
    order((a, b) => a > b, ops.$gt) &&
    order((a, b) => a >= b, ops.$gte) &&
    order((a, b) => a < b, ops.$lt) &&
    order((a, b) => a <= b, ops.$lte) &&
    (ops.$regex === undefined || (typeof value === "string" && new RegExp(ops.$regex, "i").test(value))) &&
    (ops.$in === undefined || ops.$in.some((v) => same(value, v))) &&
    (ops.$nin === undefined || !ops.$nin.some((v) => same(value, v)))
  );
}

/** What each generation filters a certificate list by: v0.5 the query itself (`db.js`), v0.8 `?keyVal=` alone (`CommonModel.handleFilterField`). */
export function certificateFilter(query: Query, rules: X509Rules): Filter {
  if (rules === "v0.5") {
    // `certificateQueryString` at v0.5.0: these keys, every operator.
    return mongoFilter(query, [
      "fingerprint",
      "pem",
      "createdAt",
      "issuedByDojotPki",
      "autoRegistered",
      "belongsTo.device",
      "belongsTo.application",
      "tenant",
    ]);
  }
  const keyVal = query.keyVal;
  if (keyVal === undefined || keyVal === "") return {};
  if (typeof keyVal !== "string") throw new Error("keyVal.split is not a function"); // a repeated keyVal: the service's 500
  // `handleFilterField` at v0.8.0: pairs split at ',', each at '=', ':' or '|' (so a value loses all after its first ':'), `null` meaning "missing".
  const pairs: Query = {};
  for (const pair of keyVal.split(",")) {
    const [key, value] = pair.split(/[=:|]/);
    if (value === undefined) throw new Error("Cannot read property 'toString' of undefined"); // `parseConditionFields`: a 500
    pairs[key!] = value === "null" ? "!" : value;
  }
  // `CertificateModel.js` at v0.8.0: its whitelist, and `!` the only operator.
  return mongoFilter(
    pairs,
    [
      "fingerprint",
      "caFingerprint",
      "pem",
      "subjectDN",
      "validity.notBefore",
      "validity.notAfter",
      "createdAt",
      "modifiedAt",
      "issuedByDojotPki",
      "autoRegistered",
      "belongsTo.device",
      "belongsTo.application",
      "tenant",
    ],
    ["!"],
  );
}
