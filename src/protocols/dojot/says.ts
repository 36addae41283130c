/**
 * What a dojot platform said, in a few words fit for a message. Its error bodies have shapes of
 * their own: the services' `{message}` and `{status, message}`, Kong's `{message}`,
 * x509-identity-mgmt's `{error, detail}` and its schema errors. Anything else is summarised as the
 * transport summarises any body.
 */
import { bodySummary, type HttpReply, jsonObject, oneLine } from "../../transport/http.js";

/** What the platform said, whatever the shape of its error body (an HTML page or nothing, too). */
export function platformSays(reply: HttpReply): string {
  const obj = jsonObject(reply);
  if (!obj) return bodySummary(reply);
  const schema = schemaErrorText(obj);
  for (const key of ["message", "error"] as const) {
    const value = obj[key];
    if (typeof value === "string" && value.trim()) {
      const detail = typeof obj.detail === "string" ? `: ${obj.detail}` : schema ? `: ${schema}` : "";
      return oneLine(value + detail);
    }
  }
  return oneLine(schema ? `Input data schema validation failure: ${schema}` : reply.text);
}

/** The plain facts of a dojot reply, for an error: its status and what the platform said. */
export function replyFacts(reply: HttpReply): { status: number; platformMessage: string } {
  return { status: reply.status, platformMessage: platformSays(reply) };
}

/**
 * The first schema error of x509-identity-mgmt, in either generation's shape: v0.5
 * `{"schema$id", schemaErrors: [...]}`, v0.7+ `{error, detail: {schemaId, schemaErrors: [...]}}`.
 */
function schemaErrorText(obj: Record<string, unknown>): string | undefined {
  const detail = obj.detail && typeof obj.detail === "object" ? (obj.detail as Record<string, unknown>) : undefined;
  const errors = Array.isArray(obj.schemaErrors)
    ? obj.schemaErrors
    : Array.isArray(detail?.schemaErrors)
      ? detail.schemaErrors
      : undefined;
  const first = errors?.[0] as Record<string, unknown> | undefined;
  if (!first || typeof first !== "object") return undefined;
  const where = [first.instancePath, first.dataPath].find((p) => typeof p === "string" && p) as string | undefined;
  const what = typeof first.message === "string" ? first.message : JSON.stringify(first);
  return `${where ? `${where} ` : ""}${what}${errors!.length > 1 ? ` (and ${errors!.length - 1} more)` : ""}`;
}
