/**
 * What the protocols without sessions (EST, SCEP, CMP) share: the rules they check before anything is
 * opened (no dojot token; an explicit trust anchor for a first enrollment) and the wait for a
 * request the server holds for approval.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { CertRetrieverError, nameSettings, type SettingNamer } from "../errors.js";
import { certificatePems } from "../keys/key-types.js";
import type { HttpClient, WaitInfo } from "../transport/http.js";
import type { SettingsToCheck, TrustToCheck } from "./types.js";

/** Refuses a dojot token for an enrollment: `title` keeps no session. */
export function refuseToken(settings: SettingsToCheck, name: SettingNamer, protocol: string, title: string): void {
  if (settings.purpose === "enroll" && settings.token) {
    throw new CertRetrieverError(nameSettings(`{tokenFile} holds a dojot login; ${title} keeps no session`, name), {
      step: "usage",
      reason: "usage",
      facts: { field: "tokenFile", protocol },
    });
  }
}

/** Refuses a first enrollment with no pin, no platform CA and no stored chain: the server's CA is never trusted because it is the first one seen. */
export function requireTrustAnchor(trust: TrustToCheck, protocol: string, message: string): void {
  if (
    trust.pin === undefined &&
    !trust.platformCa &&
    (trust.storedCaPem === undefined || certificatePems(trust.storedCaPem).length === 0)
  ) {
    throw new CertRetrieverError(message, {
      step: "usage",
      reason: "usage",
      facts: { field: "trustAnchor", protocol },
    });
  }
}

/** Waits `ms` as `wait` says (a server that holds a request), told to the run's observer; an interrupt throws its reason (an `interrupted` error at `wait.step`). */
export async function waitBetweenRequests(
  http: HttpClient,
  wait: Omit<WaitInfo, "until">,
  ms: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  const waited = http.waiting({ ...wait, until: Date.now() + ms });
  await sleep(ms, undefined, { signal })
    .catch(() => {
      throw signal?.reason instanceof CertRetrieverError
        ? signal.reason
        : new CertRetrieverError(`${wait.step} failed: interrupted`, { step: wait.step, reason: "interrupted" });
    })
    .finally(waited);
}
