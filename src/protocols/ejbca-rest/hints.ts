import type { ProtocolHints } from "../types.js";

/** What to do about EJBCA-REST's own refusals; `{setting}` names a flag. */
export const EJBCA_REST_HINTS: ProtocolHints = {
  "not-supported": (_e, command) =>
    command === "enroll"
      ? "reset the device's end entity to NEW on the platform (on dojot <= v0.4: edit the device), then run 'cert-retriever enroll {force}'; the stored credentials stay in use until then"
      : undefined,
  "entity-password-refused": () =>
    "check the end-entity password ({entityPasswordFile} or {$ENTITY_PASSWORD}; dojot uses 'dojot')",
};
