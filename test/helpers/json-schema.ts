/**
 * A JSON Schema (2020-12) validator for the keywords docs/cli-output.schema.json uses, and no
 * others: a keyword it does not know is an error, so the schema cannot say more than is checked.
 * Small enough to read in one sitting, which a dependency for the same job would not be.
 */

/** A schema, as JSON gives it. */
type Schema = { readonly [keyword: string]: unknown } | boolean;

/** The keywords this validator checks; annotations it only skips. */
const CHECKED = new Set([
  "$ref",
  "oneOf",
  "type",
  "const",
  "enum",
  "properties",
  "required",
  "additionalProperties",
  "items",
  "pattern",
  "minimum",
]);
const ANNOTATIONS = new Set(["$schema", "$defs", "title", "description"]);

/** Where `value` breaks `schema` (a JSON pointer and what is wrong), or [] where it does not. */
export function validate(root: Schema, value: unknown): string[] {
  return check(root, root, value, "");
}

function check(root: Schema, schema: Schema, value: unknown, at: string): string[] {
  if (schema === true) return [];
  if (schema === false) return [`${at || "/"}: nothing is allowed here`];
  for (const keyword of Object.keys(schema))
    if (!CHECKED.has(keyword) && !ANNOTATIONS.has(keyword))
      throw new Error(`the schema uses ${keyword} at ${at || "/"}, which this validator does not check`);
  const errors: string[] = [];
  const where = at || "/";
  if (schema.$ref !== undefined) errors.push(...check(root, resolveRef(root, schema.$ref as string), value, at));
  if (schema.oneOf !== undefined) {
    const branches = (schema.oneOf as Schema[]).map((s) => check(root, s, value, at));
    const passing = branches.filter((e) => e.length === 0).length;
    if (passing !== 1) {
      const closest = branches.reduce((a, b) => (b.length < a.length ? b : a));
      errors.push(`${where}: matches ${passing} of oneOf's ${branches.length} schemas, not exactly one`);
      if (passing === 0) errors.push(...closest);
    }
  }
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string];
    if (!types.some((t) => isType(value, t)))
      errors.push(`${where}: ${JSON.stringify(value)} is not ${types.join(" or ")}`);
  }
  if ("const" in schema && !sameJson(value, schema.const))
    errors.push(`${where}: ${JSON.stringify(value)} is not ${JSON.stringify(schema.const)}`);
  if (schema.enum !== undefined && !(schema.enum as unknown[]).some((e) => sameJson(value, e)))
    errors.push(`${where}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`);
  if (
    typeof value === "string" &&
    schema.pattern !== undefined &&
    !new RegExp(schema.pattern as string, "u").test(value)
  )
    errors.push(`${where}: ${JSON.stringify(value)} does not match ${schema.pattern as string}`);
  if (typeof value === "number" && schema.minimum !== undefined && value < (schema.minimum as number))
    errors.push(`${where}: ${value} is below ${schema.minimum as number}`);
  if (Array.isArray(value) && schema.items !== undefined)
    for (const [i, item] of value.entries()) errors.push(...check(root, schema.items as Schema, item, `${at}/${i}`));
  if (isType(value, "object")) errors.push(...checkObject(root, schema, value as Record<string, unknown>, at));
  return errors;
}

function checkObject(root: Schema, schema: Exclude<Schema, boolean>, value: Record<string, unknown>, at: string) {
  const errors: string[] = [];
  const properties = (schema.properties ?? {}) as Record<string, Schema>;
  for (const name of (schema.required ?? []) as string[])
    if (!(name in value)) errors.push(`${at || "/"}: ${name} is missing`);
  for (const [name, item] of Object.entries(value)) {
    const path = `${at}/${name}`;
    if (name in properties) errors.push(...check(root, properties[name]!, item, path));
    else if (schema.additionalProperties !== undefined)
      errors.push(...check(root, schema.additionalProperties as Schema, item, path));
  }
  return errors;
}

/** A reference inside the schema's own document (`#/$defs/name`); nothing else is used. */
function resolveRef(root: Schema, ref: string): Schema {
  if (!ref.startsWith("#/")) throw new Error(`${ref}: only references inside the schema are supported`);
  let node: unknown = root;
  for (const part of ref.slice(2).split("/")) node = (node as Record<string, unknown> | undefined)?.[part];
  if (node === undefined) throw new Error(`${ref}: no such place in the schema`);
  return node as Schema;
}

function isType(value: unknown, type: string): boolean {
  switch (type) {
    case "object":
      return typeof value === "object" && value !== null && !Array.isArray(value);
    case "array":
      return Array.isArray(value);
    case "string":
      return typeof value === "string";
    case "number":
      return typeof value === "number" && Number.isFinite(value);
    case "integer":
      return Number.isInteger(value);
    case "boolean":
      return typeof value === "boolean";
    case "null":
      return value === null;
    default:
      throw new Error(`type ${type}: not a JSON Schema type`);
  }
}

/** JSON equality: same type and same members, key order aside. */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return (
    ka.length === kb.length &&
    ka.every((k) => sameJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
  );
}
