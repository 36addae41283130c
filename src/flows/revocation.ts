import { stat } from "node:fs/promises";
import { describeCause } from "../errors.js";
import { readTrustedFile, replaceFile } from "../fs/safe-dir.js";
import { sameBytes, sha256ColonHex } from "../keys/fingerprint.js";
import { toPem } from "../keys/key-types.js";
import type { CryptoProvider } from "../keys/provider.js";
import * as x509 from "../keys/x509.js";
import { displayName } from "./certificate.js";

/** How to learn whether a certificate was revoked: a cached CRL, refreshed from the platform when it is old. */
export interface RevocationOptions {
  crypto: CryptoProvider;
  now: Date;
  /** Where the last good CRL is kept (PEM); none: fetched every time. */
  cachePath?: string;
  /** A cached CRL younger than this is used without asking the platform (unless `due` says when). */
  refreshMs: number;
  /** Whether the platform is to be asked now, given when the cached CRL was fetched (check's traffic budget). */
  due?: (cachedAt: Date) => boolean;
  /**
   * Fetches the CA's latest CRL (DER), or "unchanged" when the platform says the cached one (`cached`,
   * DER) is still its latest; absent: only the cache is read (enroll's "nothing to do").
   */
  fetch?: (cached: Uint8Array | undefined) => Promise<Uint8Array | "unchanged">;
}

/** What the CRL says of a certificate, or why no CRL could say it. */
export type RevocationVerdict =
  | { state: "good"; crl: CrlFacts; cacheError?: string }
  | { state: "revoked"; crl: CrlFacts; revokedAt: Date; reason?: string; cacheError?: string }
  | { state: "unknown"; why: string };

/** Which CRL gave the answer, in words for messages. */
export interface CrlFacts {
  thisUpdate: Date;
  nextUpdate?: Date;
  /** Fetched by this run (from the platform or a distribution point), or read from the cache. */
  from: "fetched" | "cache";
  /** Why the cache was used although the platform was asked (it could not be reached), if so. */
  note?: string;
  /** When the device last had it from the platform (the cache's time, or now). */
  fetchedAt: Date;
  /** It is past its next update (read so only within check's budget: see {@link revocationOf}). */
  pastNextUpdate: boolean;
}

/** RFC 5280 5.2.4 and 5.2.5. */
const DELTA_CRL_INDICATOR = "2.5.29.27";
const ISSUING_DISTRIBUTION_POINT = "2.5.29.28";

/** CRL reason codes (RFC 5280, 5.3.1) by number, as openssl names them. */
const REASON_NAMES = [
  "unspecified",
  "keyCompromise",
  "cACompromise",
  "affiliationChanged",
  "superseded",
  "cessationOfOperation",
  "certificateHold",
  "",
  "removeFromCRL",
  "privilegeWithdrawn",
  "aACompromise",
];

/**
 * Whether `cert` is revoked, by a CRL of its issuer `ca` whose signature is checked. A cached CRL
 * is used until the platform is due to be asked (`due`, else `refreshMs` after it was fetched),
 * even past its nextUpdate (the answer says how old it is); then the platform is asked, and a CRL it
 * sends is kept. When the platform cannot be asked, a cached CRL that is not past its nextUpdate
 * still answers; else the answer is "unknown" with the reason, never a guess.
 */
export async function revocationOf(
  cert: x509.X509Certificate,
  ca: x509.X509Certificate,
  opts: RevocationOptions,
): Promise<RevocationVerdict> {
  const cached = opts.cachePath ? await readCachedCrl(opts.cachePath, ca, opts.crypto, opts.now) : undefined;
  const current = cached && (!cached.crl.nextUpdate || cached.crl.nextUpdate > opts.now) ? cached : undefined;
  // A listing stays true however old the CRL: check and enroll must agree on it, or the unit would run for nothing every day.
  const listed = cached?.crl.findRevoked(cert.serialNumber) ? cached : undefined;
  const usable = current ?? listed;
  if (!opts.fetch) {
    if (usable) return verdict(cert, usable.crl, "cache", opts.now, usable.fetchedAt);
    return { state: "unknown", why: cached ? "the cached CRL is past its next update" : "no CRL has been fetched yet" };
  }
  const due = opts.due ?? ((at: Date) => opts.now.getTime() - at.getTime() >= opts.refreshMs);
  if (cached && !due(cached.fetchedAt))
    return verdict(cert, cached.crl, "cache", opts.now, cached.fetchedAt, { pastNextUpdate: "answers" });
  let crl: x509.X509Crl;
  try {
    const fetched = await opts.fetch(cached?.crl.rawData ? new Uint8Array(cached.crl.rawData) : undefined);
    if (fetched === "unchanged") {
      if (!cached) throw new Error("the platform says it has not changed, but none is kept");
      return await confirmed(cert, cached.crl, opts);
    }
    crl = new x509.X509Crl(new Uint8Array(fetched));
    const problem = await crlProblem(crl, ca, opts.crypto);
    if (problem) throw new Error(problem);
  } catch (err) {
    const why = `the CRL could not be fetched or is not good (${describeCause(err)})`;
    if (current)
      return verdict(cert, current.crl, "cache", opts.now, current.fetchedAt, {
        note: `${why}; the cached one, current until ${current.crl.nextUpdate?.toISOString() ?? "its issuer's next CRL"}, answered`,
      });
    if (listed)
      return verdict(cert, listed.crl, "cache", opts.now, listed.fetchedAt, {
        note: `${why}; the cached one lists it`,
      });
    return { state: "unknown", why };
  }
  // A CRL older than the one kept (a stale replica, a replay) does not replace it.
  if (cached && crl.thisUpdate < cached.crl.thisUpdate)
    return verdict(cert, cached.crl, "cache", opts.now, cached.fetchedAt, {
      note: "the platform sent an older CRL than the one kept",
    });
  return kept(cert, crl, opts, "fetched");
}

/** The cached CRL, which the platform says is still its latest (304): kept anew (its time is now), and what it says. */
function confirmed(cert: x509.X509Certificate, crl: x509.X509Crl, opts: RevocationOptions): Promise<RevocationVerdict> {
  return kept(cert, crl, opts, "cache", {
    note: "the platform says the cached one is still its latest",
    pastNextUpdate: "answers",
  });
}

/** Keeps `crl` in the cache and says what it says of `cert`; a cache that cannot be written is noted. */
async function kept(
  cert: x509.X509Certificate,
  crl: x509.X509Crl,
  opts: RevocationOptions,
  from: CrlFacts["from"],
  how: { note?: string; pastNextUpdate?: "answers" } = {},
): Promise<RevocationVerdict> {
  let cacheError: string | undefined;
  if (opts.cachePath)
    await writeCache(opts.cachePath, crl).catch(
      (err: unknown) => (cacheError = `the CRL could not be kept in ${opts.cachePath} (${describeCause(err)})`),
    );
  const answer = verdict(cert, crl, from, opts.now, opts.now, how);
  return answer.state === "unknown" || !cacheError ? answer : { ...answer, cacheError };
}

/**
 * What `crl` says of `cert`: listed is revoked, whatever the CRL's age; not listed counts while the
 * CRL is current, and past its next update only where the caller says so (`pastNextUpdate`: check's
 * budget, which reads it for the device's own status and says how old it is).
 */
function verdict(
  cert: x509.X509Certificate,
  crl: x509.X509Crl,
  from: CrlFacts["from"],
  now: Date,
  fetchedAt: Date,
  how: { note?: string; pastNextUpdate?: "answers" } = {},
): RevocationVerdict {
  const pastNextUpdate = crl.nextUpdate !== undefined && crl.nextUpdate <= now;
  const { thisUpdate, nextUpdate } = crl;
  const facts: CrlFacts = { thisUpdate, nextUpdate, from, note: how.note, fetchedAt, pastNextUpdate };
  const entry = crl.findRevoked(cert.serialNumber);
  if (!entry && pastNextUpdate && !how.pastNextUpdate)
    return { state: "unknown", why: `the platform's CRL is past its next update (${crl.nextUpdate.toISOString()})` };
  if (!entry) return { state: "good", crl: facts };
  const code = entry.reason;
  return {
    state: "revoked",
    crl: facts,
    revokedAt: entry.revocationDate,
    reason: code === undefined ? undefined : (REASON_NAMES[code] ?? `reason ${code}`),
  };
}

/** Why `crl` is not the CRL of `ca` (issuer, signature), or undefined. */
async function crlProblem(
  crl: x509.X509Crl,
  ca: x509.X509Certificate,
  crypto: CryptoProvider,
): Promise<string | undefined> {
  if (!sameBytes(crl.issuerName.toArrayBuffer(), ca.subjectName.toArrayBuffer())) {
    return `it was issued by ${displayName(crl.issuerName)}, not by the stored CA ${displayName(ca.subjectName)}`;
  }
  // A complete CRL only: a delta or partitioned one cannot say that a certificate is not revoked.
  if (crl.getExtension(DELTA_CRL_INDICATOR)) return "it is a delta CRL";
  if (crl.getExtension(ISSUING_DISTRIBUTION_POINT))
    return "it covers only a part of the CA's certificates (issuing distribution point)";
  // The CA's key as such (its own certificate's signature algorithm may be another CA's, RSA over an EC key).
  const signed = await crl.verify({ publicKey: ca.publicKey }, crypto).catch(() => false);
  return signed ? undefined : "its signature does not verify with the stored CA's key";
}

/** The cached CRL if it is still the stored CA's, with when it was fetched (the file's time, never later than now). */
async function readCachedCrl(
  path: string,
  ca: x509.X509Certificate,
  crypto: CryptoProvider,
  now: Date,
): Promise<{ crl: x509.X509Crl; fetchedAt: Date } | undefined> {
  const cached = await loadCachedCrl(path, ca, crypto, now);
  // None, unreadable, not ours alone (a link, another user's), damaged or another CA's: as if there were none.
  return "crl" in cached ? cached : undefined;
}

/** The cached CRL and when it was fetched; or that there is none; or why the one there cannot be used. */
async function loadCachedCrl(
  path: string,
  ca: x509.X509Certificate,
  crypto: CryptoProvider,
  now: Date,
): Promise<{ crl: x509.X509Crl; fetchedAt: Date } | { absent: true } | { problem: string }> {
  try {
    const text = await readTrustedFile(path); // the directory was walked when the credentials were read
    if (text === undefined) return { absent: true };
    const st = await stat(path);
    const crl = new x509.X509Crl(text);
    const problem = await crlProblem(crl, ca, crypto);
    return problem ? { problem } : { crl, fetchedAt: st.mtime < now ? st.mtime : now };
  } catch (err) {
    return { problem: describeCause(err) };
  }
}

/**
 * What the CRL `check` kept last said of a certificate, as `status` shows it: read from the cache
 * only (nothing is fetched). Never checked: there is no cached CRL. Unusable: the file there is
 * not the stored CA's CRL (or cannot be read). Else `good` (not listed, the CRL still current),
 * `outdated` (not listed, but past its next update) or `revoked` (listed, however old the CRL).
 */
export type LastSeenRevocation =
  | { state: "never-checked" }
  | { state: "unusable"; why: string }
  | {
      state: "good" | "outdated" | "revoked";
      /** When the CRL was fetched (the cache file's time). */
      checkedAt: Date;
      thisUpdate: Date;
      nextUpdate?: Date;
      revokedAt?: Date;
      reason?: string;
    };

/** What the cached CRL at `cachePath` says of `cert` (see {@link LastSeenRevocation}). */
export async function lastSeenRevocation(
  cert: x509.X509Certificate,
  ca: x509.X509Certificate,
  opts: { cachePath: string; crypto: CryptoProvider; now: Date },
): Promise<LastSeenRevocation> {
  const cached = await loadCachedCrl(opts.cachePath, ca, opts.crypto, opts.now);
  if ("absent" in cached) return { state: "never-checked" };
  if ("problem" in cached) return { state: "unusable", why: cached.problem };
  const { crl, fetchedAt } = cached;
  const seen = { checkedAt: fetchedAt, thisUpdate: crl.thisUpdate, nextUpdate: crl.nextUpdate };
  const answer = verdict(cert, crl, "cache", opts.now, fetchedAt);
  if (answer.state === "revoked")
    return { state: "revoked", ...seen, revokedAt: answer.revokedAt, reason: answer.reason };
  return { state: answer.state === "good" ? "good" : "outdated", ...seen };
}

/** Replaces the cache whole; public, as the CA certificate beside it. */
function writeCache(path: string, crl: x509.X509Crl): Promise<void> {
  return replaceFile(path, toPem(crl.rawData, "X509 CRL"), 0o644);
}

/** A verdict in a few words, for `check` and `enroll`. */
export function describeRevocation(
  v: Exclude<RevocationVerdict, { state: "unknown" }>,
  cert: x509.X509Certificate,
): string {
  const past = v.crl.pastNextUpdate ? `, past its next update ${v.crl.nextUpdate?.toISOString()}` : "";
  const when = v.crl.from === "cache" ? `, from the platform at ${v.crl.fetchedAt.toISOString()}` : "";
  const crl = `${v.crl.from === "cache" ? "the cached CRL" : "the CRL just fetched"} (issued ${v.crl.thisUpdate.toISOString()}${past}${when})`;
  return v.state === "revoked"
    ? `certificate ${cert.serialNumber} was revoked at ${v.revokedAt.toISOString()}${v.reason ? ` (${v.reason})` : ""}, says ${crl}`
    : `certificate ${cert.serialNumber} is not revoked, says ${crl}`;
}

/**
 * What `check` learned from the platform that `enroll` cannot see offline: that the platform's CA
 * is no longer the stored one. Kept beside the CA certificate as the stored CA's fingerprint, it
 * names that CA only: once new credentials (under the new CA) are stored, it no longer applies.
 */
export function markCaReplaced(path: string, storedCa: x509.X509Certificate): Promise<void> {
  return replaceFile(path, `${sha256ColonHex(storedCa.rawData)}\n`, 0o644);
}

/** Whether `check` found the platform's CA replaced while `storedCa` was the stored one. */
export async function caReplacedMark(path: string, storedCa: x509.X509Certificate): Promise<boolean> {
  const text = (await readTrustedFile(path).catch(() => undefined)) ?? "";
  return text.trim() === sha256ColonHex(storedCa.rawData);
}
