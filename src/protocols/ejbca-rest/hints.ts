import type { ProtocolHints } from "../types.js";

/** What to do about EJBCA-REST's own refusals; `{setting}` names a flag. */
export const EJBCA_REST_HINTS: ProtocolHints = {
  "reset-refused": () =>
    "give the platform user the permission to edit end entities (POST /user through the gateway), or reset the device's end entity to NEW on the platform by hand, then run again; the stored credentials stay in use until then",
  "entity-password-refused": (e) =>
    /wrong username or password/i.test(e.facts.platformMessage ?? "")
      ? "EJBCA says this both for an end entity it does not know and for a wrong password: check that the device exists on the platform, and the end-entity password ({entityPasswordFile} or {$ENTITY_PASSWORD}; dojot uses 'dojot')"
      : "check the end-entity password ({entityPasswordFile} or {$ENTITY_PASSWORD}; dojot uses 'dojot')",
};
