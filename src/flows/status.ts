/**
 * Status: what `check` asks. Are the stored credentials whole and valid, outside their renewal
 * window, not revoked (by the CA's CRL: from the platform's crl capability, or the certificate's own
 * distribution points), and is the stored CA still the platform's?
 */
import { describeCause, type SettingNamer } from "../errors.js";
import { storageError } from "../fs/safe-dir.js";
import type { CryptoProvider } from "../keys/provider.js";
import type * as x509 from "../keys/x509.js";
import type { ProtocolClient, Session } from "../protocols/types.js";
import type { CredentialStore } from "../store/types.js";
import { nextContact, PlatformExchange, readContactRecord } from "./contact.js";
import { type Inspection, inspectCredentials, type RenewWindow } from "./inspect.js";
import { markCaReplaced, type RevocationVerdict, revocationOf } from "./revocation.js";

/** Where a CRL comes from: the platform, the certificate's own distribution points, or none (`off`). */
export type RevocationMode = "auto" | "distribution-points" | "off";

/** What the status flow works with. */
export interface StatusContext {
  deviceId: string;
  store: CredentialStore;
  crypto: CryptoProvider;
  /** The CA's SHA-256 fingerprint as given: a stored CA that differs needs enrollment. */
  pin?: string;
  publicKeysOf: (record: string) => Promise<Uint8Array[]>;
  renewBefore: RenewWindow;
  revocation: RevocationMode;
  /**
   * The traffic budget: a device whose credentials are valid asks the platform at most once in each
   * slot this long (slots shifted by its id), unless the stored CA ends within two of them.
   */
  crlRefreshMs: number;
  /** Ask the platform now, whatever the budget says. */
  contactNow?: boolean;
  /** Asks the platform (opened on first use), or undefined when it is not to be asked. */
  ask?: <T>(question: (client: ProtocolClient, session: Session) => Promise<T>) => Promise<T>;
  /** A CRL from the certificate's own http distribution points, if it names any. */
  fromDistributionPoints?: (cert: x509.X509Certificate) => Promise<(() => Promise<Uint8Array>) | undefined>;
  now: Date;
  name: SettingNamer;
}

/** What status found: enrollment is needed (and why), or the valid credentials and what revocation said. */
export type StatusResult =
  | { needed: true; state: Exclude<Inspection["state"], "valid">; reason: string }
  | {
      needed: false;
      state: "valid";
      cert: x509.X509Certificate;
      renewFrom: Date;
      revocation?: RevocationVerdict;
      location: string;
      /** When check asks the platform next, if it asks one; a note if when it asked could not be kept. */
      contact?: { next: Date; note?: string };
    };

/** Inspects the stored credentials, asking the platform (or a distribution point) only about revocation and the CA. */
export async function status(ctx: StatusContext): Promise<StatusResult> {
  const record = ctx.ask ? await readContactRecord(ctx.store.sidecars.contactRecord, ctx.deviceId) : undefined;
  const exchange = new PlatformExchange(record);
  const noCrl = (title: string) =>
    `${title} serves no CRL (${ctx.name("revocation")} distribution-points reads one from the certificate's own distribution points)`;
  const fetchFor = async (cert: x509.X509Certificate, ca: x509.X509Certificate) =>
    ctx.ask
      ? (cached: Uint8Array | undefined) =>
          ctx.ask!((client, session) => exchange.ask(client, session, ca, cached, noCrl))
      : ctx.revocation === "distribution-points"
        ? await ctx.fromDistributionPoints?.(cert)
        : undefined;
  // Within the budget unless told to ask, or the stored CA ends within two periods (its replacement must be found in time).
  const due = (ca: x509.X509Certificate) => (cachedAt: Date) =>
    ctx.contactNow ||
    ca.notAfter.getTime() - ctx.now.getTime() < 2 * ctx.crlRefreshMs ||
    exchange.due(ctx.deviceId, ctx.crlRefreshMs, ctx.now, cachedAt);
  const verdict = await inspectCredentials(ctx.store, {
    deviceId: ctx.deviceId,
    crypto: ctx.crypto,
    publicKeysOf: ctx.publicKeysOf,
    caFingerprint: ctx.pin,
    renewBefore: ctx.renewBefore,
    now: ctx.now,
    revocation:
      ctx.revocation === "off"
        ? undefined
        : async (cert, ca) =>
            revocationOf(cert, ca, {
              crypto: ctx.crypto,
              now: ctx.now,
              cachePath: ctx.store.sidecars.crlCache,
              refreshMs: ctx.crlRefreshMs,
              due: ctx.ask ? due(ca) : undefined,
              fetch: await fetchFor(cert, ca),
            }),
  });
  const result = await settle(ctx, verdict, exchange.caReplaced);
  if (!ctx.ask || result.needed) return result;
  const note = await exchange.keep(ctx.store.sidecars.contactRecord, ctx.deviceId, ctx.now);
  const last = exchange.contacted
    ? ctx.now
    : (record?.at ?? (result.revocation && "crl" in result.revocation ? result.revocation.crl.fetchedAt : undefined));
  const next = last ? nextContact(ctx.deviceId, last, ctx.crlRefreshMs) : ctx.now;
  return { ...result, contact: { next, ...(note ? { note } : {}) } };
}

/** The verdict as status reports it; a CA found replaced is noted for enroll, which cannot see it offline. */
async function settle(ctx: StatusContext, verdict: Inspection, caReplaced: string | undefined): Promise<StatusResult> {
  if (verdict.state === "valid" && caReplaced) {
    const mark = ctx.store.sidecars.caReplacedMark;
    // enroll sees this only through the mark: without it, the unit would be started every day for nothing.
    await markCaReplaced(mark, verdict.ca).catch((err: unknown) => {
      throw storageError(
        `${caReplaced}, but that could not be noted for enroll in ${mark} (${describeCause(err)})`,
        err,
      );
    });
    return { needed: true, state: "ca-changed", reason: caReplaced };
  }
  if (verdict.state === "valid")
    return {
      needed: false,
      state: "valid",
      cert: verdict.cert,
      renewFrom: verdict.renewFrom,
      revocation: verdict.revocation,
      location: ctx.store.location,
    };
  if (verdict.state === "revoked" && verdict.cacheError)
    throw storageError(`${verdict.reason}, but ${verdict.cacheError}, where enroll reads it`, undefined);
  return { needed: true, state: verdict.state, reason: verdict.reason };
}
