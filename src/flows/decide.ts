/** The first step of enroll: what the stored credentials call for (nothing, a renewal, or a new enrollment). */

import { describeCause } from "../errors.js";
import { sameBytes } from "../keys/fingerprint.js";
import { isKeyUri } from "../keys/pkcs11-uri.js";
import * as x509 from "../keys/x509.js";
import type { CredentialStore } from "../store/types.js";
import type { EnrollContext } from "./context.js";
import { type Inspection, inspectCredentials } from "./inspect.js";
import { describeStored, type EnrollResult } from "./result.js";

/** The stored credentials as a run finds them before it changes anything. */
export interface Stored {
  /** The key the stored credentials name (its PEM, or a token key's URI): never removed but by new credentials that replace it. */
  key?: string;
  certificatePem?: string;
  /** The certificate new credentials would replace (revoked once they are stored). */
  cert?: x509.X509Certificate;
  /** The stored key's URI when it is in a token. */
  inToken?: string;
}

/** What the stored credentials call for. `stillGood`: they can still authenticate their own renewal (not revoked, valid now). */
export type Decision =
  | { action: "keep"; result: EnrollResult }
  | { action: "enroll" }
  | { action: "renew"; stillGood: boolean };

/** Reads what is stored (a damaged certificate counts as none). */
export async function readStored(store: CredentialStore): Promise<Stored> {
  const parts = (await store.read()).parts;
  const key = parts.key?.trim();
  return {
    key,
    certificatePem: parts.certificatePem,
    cert: readCertificate(parts.certificatePem),
    inToken: key !== undefined && isKeyUri(key) ? key : undefined,
  };
}

/**
 * Valid credentials that the platform's CA still signs are kept; credentials in their renewal
 * window (or revoked) but not expired are renewed; anything else, or `force`, is enrolled anew.
 */
export async function decide(ctx: EnrollContext, stored: Stored, force: boolean): Promise<Decision> {
  if (force) return { action: "enroll" };
  const now = ctx.now();
  const existing = await inspectCredentials(ctx.store, {
    deviceId: ctx.device.id,
    crypto: ctx.crypto,
    caFingerprint: ctx.pin,
    publicKeysOf: (record) => ctx.keyStore.publicKeysOf(record),
    renewBefore: ctx.renewBefore,
    now,
    revocation: ctx.revocation,
    caReplaced: ctx.caReplaced,
  });
  // With a token at hand, asking for the CA costs no login: a CA the platform has changed is found too.
  const caChanged = existing.state === "valid" && ctx.token ? await platformCaDiffers(ctx, existing.ca, now) : false;
  if (existing.state === "valid" && !caChanged) {
    const kept = { profiled: existing.profiled, keyInToken: stored.inToken !== undefined };
    return {
      action: "keep",
      result: {
        ...describeStored(existing.cert, ctx.store, { deviceId: ctx.device.id }, [], kept),
        status: "already-enrolled",
      },
    };
  }
  if (caChanged)
    ctx.emit({
      type: "note",
      message: "existing credentials will be replaced: the platform's CA differs from the stored one",
    });
  else if (existing.state !== "missing" && existing.state !== "valid")
    ctx.emit({ type: "note", message: `existing credentials will be replaced: ${existing.reason}` });
  return renewalOf(existing, now);
}

/** Credentials inside their renewal window (or revoked) and not expired are renewed; the rest enrolled anew. */
function renewalOf(existing: Inspection, now: Date): Decision {
  const cert = existing.cert;
  if ((existing.state !== "expiring" && existing.state !== "revoked") || !cert || cert.notAfter <= now)
    return { action: "enroll" };
  return { action: "renew", stillGood: existing.state === "expiring" && cert.notBefore <= now };
}

/** Whether the platform's CA differs from the stored one; a check that cannot be made keeps the valid credentials. */
async function platformCaDiffers(ctx: EnrollContext, stored: x509.X509Certificate, now: Date): Promise<boolean> {
  const session = ctx.client.login?.fromToken(ctx.token!.jwt);
  if (!session || (session.expiresAt && session.expiresAt <= now)) return false; // nothing to do needs no fresh token
  try {
    const fetched = await ctx.client.trust.fetchCa(session);
    return !sameBytes(fetched.der, stored.rawData);
  } catch (err) {
    ctx.emit({
      type: "note",
      message: `could not compare the platform's CA with the stored one (${describeCause(err)}); the stored credentials are valid and stay`,
    });
    return false;
  }
}

/** A stored certificate, if one is there and parses. */
function readCertificate(pem: string | undefined): x509.X509Certificate | undefined {
  if (pem === undefined) return undefined;
  try {
    return new x509.X509Certificate(pem);
  } catch {
    return undefined;
  }
}
