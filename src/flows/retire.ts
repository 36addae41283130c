/** After new credentials are stored: the change hooks, then the replaced certificate revoked where it may be, then the sidecars that no longer apply. */
import { rm } from "node:fs/promises";
import { describeCause } from "../errors.js";
import { isKeyUri } from "../keys/pkcs11-uri.js";
import type * as x509 from "../keys/x509.js";
import { revokeTarget, sha256Fingerprint } from "./certificate.js";
import type { EnrollContext } from "./context.js";
import type { Stored } from "./decide.js";
import type { Installed } from "./install.js";
import type { EnrollStep } from "./result.js";
import { describeStored, type EnrollResult } from "./result.js";
import type { StepTiming } from "./steps.js";
import { clearIssueJournal } from "./unstored.js";

/** What became of a replaced certificate on the platform. */
type Settled = { revoked: "revoked" | "absent" | "kept"; why?: string };

/** The result of an enrollment that stored new credentials, once its hooks ran and the certificate it replaced was settled. */
export async function retire(
  ctx: EnrollContext,
  stored: Stored,
  installed: Installed,
  steps: StepTiming<EnrollStep>[],
): Promise<EnrollResult> {
  const kept = { profiled: installed.profiled, keyInToken: isKeyUri(installed.keyRecord) };
  const result: EnrollResult = {
    ...describeStored(
      installed.cert,
      ctx.store,
      { deviceId: ctx.device.id, tenant: installed.session.tenant },
      steps,
      kept,
    ),
    status: "enrolled",
    ...(installed.checkedBeforeStore !== undefined ? { checkedBeforeStore: installed.checkedBeforeStore } : {}),
  };
  const replaced = stored.cert && sha256Fingerprint(stored.cert) !== result.sha256Fingerprint ? stored.cert : undefined;
  const previous = replaced && {
    sha256Fingerprint: sha256Fingerprint(replaced),
    serialNumber: replaced.serialNumber,
    notAfter: replaced.notAfter.toISOString(),
    revoked: "kept" as const,
  };
  if (previous) result.previous = previous;
  // Stored: no certificate of this device is left unstored on the platform.
  await clearIssueJournal(ctx.store);
  if (ctx.remember) {
    const unrecorded = await ctx.remember(installed.proto.name);
    if (unrecorded) ctx.emit({ type: "note", message: unrecorded });
    else if (result.store.files) result.store.files.settings = ctx.store.sidecars.settingsRecord;
  }
  let hookError: unknown;
  await ctx.afterChange?.(result).catch((err: unknown) => (hookError = err));
  if (replaced) {
    const settled = await settlePrevious(ctx, installed, replaced, hookError !== undefined);
    result.previous = { ...previous!, ...settled };
    ctx.emit({ type: "note", message: settledNote(replaced, settled) });
  }
  if (hookError !== undefined) throw hookError;
  // The cached CRL predates the revocation this run made: the next check fetches a new one. A CA change is acted on.
  if (result.previous?.revoked === "revoked")
    await rm(ctx.store.sidecars.crlCache, { force: true }).catch(() => undefined);
  await rm(ctx.store.sidecars.caReplacedMark, { force: true }).catch(() => undefined);
  return result;
}

/** What becomes of the certificate a renewal replaced: revoked on the platform, unless that is not wanted, not possible, or not yet safe. */
async function settlePrevious(
  ctx: EnrollContext,
  installed: Installed,
  previous: x509.X509Certificate,
  hookFailed: boolean,
): Promise<Settled> {
  const { proto, session } = installed;
  if (hookFailed)
    return {
      revoked: "kept",
      why: "the command after the change failed, so what uses the identity may still hold the old one",
    };
  if (!ctx.revokePrevious) return { revoked: "kept", why: "asked to keep it" };
  if (!installed.replacing) return { revoked: "kept", why: "another CA issued it" };
  if (!proto.revoke) return { revoked: "kept", why: `${proto.title} has no revocation for devices` };
  if (session.expiresAt && session.expiresAt <= ctx.now())
    return { revoked: "kept", why: "the session expired before it could be revoked; revoke it on the platform" };
  try {
    return { revoked: await proto.revoke(session, revokeTarget(previous, "superseded")) };
  } catch (err) {
    return { revoked: "kept", why: `the platform did not revoke it (${describeCause(err)}); revoke it there` };
  }
}

/** The note on what became of the replaced certificate. */
function settledNote(replaced: x509.X509Certificate, settled: Settled): string {
  if (settled.revoked === "revoked") return `revoked the replaced certificate ${replaced.serialNumber} on the platform`;
  return `the replaced certificate ${replaced.serialNumber} ${settled.revoked === "absent" ? "was no longer on the platform" : `stays valid: ${settled.why}`}`;
}
