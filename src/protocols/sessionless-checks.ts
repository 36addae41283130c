/** Checks that protocols without a login share (EST, CMP): no dojot token, and a CA trusted explicitly. */
import { CertRetrieverError, nameSettings, type SettingNamer } from "../errors.js";
import { certificatePems } from "../keys/key-types.js";
import type { SettingsToCheck, TrustToCheck } from "./types.js";

/** Refuses a dojot login token for an enrollment by `protocol`, which keeps no session. */
export function refuseToken(settings: SettingsToCheck, name: SettingNamer, protocol: string, title: string): void {
  if (settings.purpose === "enroll" && settings.token)
    throw new CertRetrieverError(nameSettings(`{tokenFile} holds a dojot login; ${title} keeps no session`, name), {
      step: "usage",
      reason: "usage",
      facts: { field: "tokenFile", protocol },
    });
}

/** Refuses a first enrollment whose trust would rest on the first CA seen: a pin, platform CAs or a stored chain must vouch for it. */
export function refuseFirstCaSeen(trust: TrustToCheck, protocol: string, message: string): void {
  if (
    trust.pin === undefined &&
    !trust.platformCa &&
    (trust.storedCaPem === undefined || certificatePems(trust.storedCaPem).length === 0)
  )
    throw new CertRetrieverError(message, {
      step: "usage",
      reason: "usage",
      facts: { field: "trustAnchor", protocol },
    });
}
