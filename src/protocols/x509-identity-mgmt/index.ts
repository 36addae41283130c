/** x509-identity-mgmt, dojot >= v0.5: the plug-in. */
import { CertRetrieverError } from "../../errors.js";
import type { ProtocolHints, ProtocolPlugin, SettingsToCheck } from "../types.js";
import { X509_IDENTITY_MGMT, X509_IDENTITY_MGMT_TITLE } from "./name.js";
import { x509DeviceIdProblem } from "./rules.js";

/** What to do about a device id x509-identity-mgmt cannot take. */
const HINTS: ProtocolHints = {
  usage: (e) =>
    e.facts.field === "deviceId" ? "use the platform's device id (dojot's are lower-case hex)" : undefined,
};

/**
 * Refuses, before any request, a device id no release can enroll, or (to register, which needs
 * v0.7+) one v0.7+ cannot bind. Which release answers is known only after fetch-ca.
 */
export function checkX509DeviceId(settings: SettingsToCheck): void {
  if (settings.deviceId === undefined || (settings.purpose !== "enroll" && settings.purpose !== "register")) return;
  const problem = x509DeviceIdProblem(settings.deviceId, settings.purpose === "register" ? "v0.7" : undefined);
  if (problem)
    throw new CertRetrieverError(problem, {
      step: "usage",
      reason: "usage",
      facts: { field: "deviceId", protocol: X509_IDENTITY_MGMT },
    });
}

/** dojot >= v0.5 through Kong: `POST /auth`, `GET /x509/v1/ca`, `POST /x509/v1/certificates`, binding (v0.7+), registration, revocation, CRL. */
export const x509IdentityMgmt: ProtocolPlugin = {
  name: X509_IDENTITY_MGMT,
  aliases: ["dojot"],
  title: X509_IDENTITY_MGMT_TITLE,
  summary: "x509-identity-mgmt, v0.5+",
  hints: HINTS,
  checkSettings: checkX509DeviceId,
  async open(ctx) {
    const { X509IdentityMgmtClient } = await import("./client.js");
    return new X509IdentityMgmtClient({ baseUrl: ctx.url, http: ctx.http });
  },
};
