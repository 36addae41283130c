import type { ProtocolSettingSpec } from "../types.js";

/** dojot sets this end-entity password for every device. */
const DOJOT_ENTITY_PASSWORD = "dojot";

/** The end-entity password EJBCA checks when it signs, read from a file (or the environment), never from argv. */
export const ENTITY_PASSWORD_FILE: ProtocolSettingSpec = {
  name: "entityPasswordFile",
  argument: "file",
  description: "read the EJBCA end-entity password from this file (default: dojot's 'dojot', or {$ENTITY_PASSWORD})",
  env: "ENTITY_PASSWORD_FILE",
  secret: { what: "end-entity password", secretEnv: "ENTITY_PASSWORD", into: "entityPassword" },
};

/** The end-entity password of a run: the one given, else dojot's. */
export function entityPasswordOf(options: Readonly<Record<string, unknown>>): string {
  return typeof options.entityPassword === "string" ? options.entityPassword : DOJOT_ENTITY_PASSWORD;
}
