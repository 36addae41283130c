/**
 * Describe: the stored credentials as people want to see them (`status`, like `certbot
 * certificates`): names, chain, dates, renewal, revocation as `check` last saw it, where the key is.
 * Read from the store and the files beside it only: nothing is asked of anyone, no token is opened.
 */

import { stat } from "node:fs/promises";
import { sameBytes } from "../keys/fingerprint.js";
import { isKeyUri, withoutPinValue } from "../keys/pkcs11-uri.js";
import type { CryptoProvider } from "../keys/provider.js";
import * as x509 from "../keys/x509.js";
import { FilesStore } from "../store/files-store.js";
import { KEYCHAIN_SERVICE, KeychainStore } from "../store/keychain-store.js";
import type { CredentialStore, StoredCredentials } from "../store/types.js";
import { displayName, parseCaChain, parseCertificate, sha256Fingerprint } from "./certificate.js";
import { type RenewWindow, renewalStart } from "./inspect.js";
import { caReplacedMark, lastSeenRevocation } from "./revocation.js";
import { completeCredentials } from "./stored.js";

/** The platform and the API the settings name; null where they name none ("not recorded"). */
export interface NamedPlatform {
  url: string | null;
  api: string | null;
}

/** What describe reads. */
export interface DescribeContext {
  deviceId: string;
  store: CredentialStore;
  crypto: CryptoProvider;
  /** The renewal window `check` and `enroll` use. */
  renewBefore: RenewWindow;
  platform: NamedPlatform;
  now: Date;
}

/** Where the device's key is: a file (and its mode), a keychain entry, a token key (its URI, never a PIN), or a store's own words. */
export type KeyLocation =
  | { kind: "file"; path: string; mode: string | null }
  | { kind: "keychain"; service: string; account: string }
  | { kind: "pkcs11"; uri: string; recordedIn: string }
  | { kind: "store"; where: string };

/** A certificate of the stored CA chain. */
export interface ChainEntry {
  subject: string;
  issuer: string;
  sha256Fingerprint: string;
  notAfter: string;
  selfSigned: boolean;
}

/** What the CRL `check` keeps said when it was last fetched (dates as ISO 8601), or that there is none. */
export type RevocationSeen =
  | { state: "never-checked"; crlFile: string }
  | { state: "unusable"; crlFile: string; why: string }
  | {
      state: "good" | "outdated" | "revoked";
      crlFile: string;
      checkedAt: string;
      crlThisUpdate: string;
      crlNextUpdate: string | null;
      revokedAt?: string;
      reason?: string;
    };

/** The stored credentials described: plain data (dates as ISO 8601), what `status --json` prints. Never key material. */
export interface CredentialsDescription {
  deviceId: string;
  /** When it was described: `expiresInDays` and `renewalDue` count from here. */
  describedAt: string;
  store: { kind: string; location: string };
  subject: string;
  /** Subject alternative names: `dns`, `ip`, `uri`, `email`, ... */
  sans: Array<{ type: string; value: string }>;
  issuer: string;
  /** The stored CA certificates, the issuing CA first, up to the root if it is stored. */
  chain: ChainEntry[];
  /** `check` found the platform's CA replaced: the next `enroll` enrolls under the new one. */
  caReplaced: boolean;
  serialNumber: string;
  sha256Fingerprint: string;
  notBefore: string;
  notAfter: string;
  validity: "valid" | "expired" | "not-yet-valid";
  /** Whole days (rounded toward zero) from now until notAfter; negative once it passed. */
  expiresInDays: number;
  /** When the renewal window opens. */
  renewFrom: string;
  renewalDue: boolean;
  revocation: RevocationSeen;
  key: KeyLocation;
  platform: NamedPlatform;
}

const DAY_MS = 24 * 60 * 60_000;

/** Describes the stored credentials; none (or a write left unfinished) is `not-enrolled`, as verify and export say. */
export async function describeStoredCredentials(ctx: DescribeContext): Promise<CredentialsDescription> {
  const { store, now } = ctx;
  const stored = await completeCredentials(store, ctx.deviceId, "status");
  const { cert, chain } = parseStored(stored);
  const ca = chain[0]!;
  const renewFrom = renewalStart(cert, ctx.renewBefore);
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON() ?? [];
  return {
    deviceId: ctx.deviceId,
    describedAt: now.toISOString(),
    store: { kind: store.kind, location: store.location },
    subject: displayName(cert.subjectName),
    sans: san.map((n) => ({ type: n.type === "url" ? "uri" : n.type, value: n.value })),
    issuer: displayName(cert.issuerName),
    chain: chain.map(chainEntry),
    caReplaced: await caReplacedMark(store.sidecars.caReplacedMark, ca),
    serialNumber: cert.serialNumber,
    sha256Fingerprint: sha256Fingerprint(cert),
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
    validity: now < cert.notBefore ? "not-yet-valid" : now >= cert.notAfter ? "expired" : "valid",
    expiresInDays: Math.trunc((cert.notAfter.getTime() - now.getTime()) / DAY_MS) || 0,
    renewFrom: renewFrom.toISOString(),
    renewalDue: now >= renewFrom,
    revocation: await revocationSeen(ctx, cert, ca),
    key: await keyLocation(store, stored),
    platform: ctx.platform,
  };
}

/** The certificate and the CA chain; a damaged one is as good as none (`not-enrolled`: enroll replaces it). */
function parseStored(stored: StoredCredentials) {
  const pems = stored.pems!;
  return {
    cert: parseCertificate(pems.certificatePem, stored.where.certificatePem, "status", "not-enrolled"),
    chain: parseCaChain(pems.caPem, stored.where.caPem, "status", "not-enrolled"),
  };
}

function chainEntry(cert: x509.X509Certificate): ChainEntry {
  return {
    subject: displayName(cert.subjectName),
    issuer: displayName(cert.issuerName),
    sha256Fingerprint: sha256Fingerprint(cert),
    notAfter: cert.notAfter.toISOString(),
    selfSigned: sameBytes(cert.subjectName.toArrayBuffer(), cert.issuerName.toArrayBuffer()),
  };
}

/** What the cached CRL said, its dates as ISO 8601. */
async function revocationSeen(
  ctx: DescribeContext,
  cert: x509.X509Certificate,
  ca: x509.X509Certificate,
): Promise<RevocationSeen> {
  const crlFile = ctx.store.sidecars.crlCache;
  const seen = await lastSeenRevocation(cert, ca, { cachePath: crlFile, crypto: ctx.crypto, now: ctx.now });
  if (seen.state === "never-checked" || seen.state === "unusable") return { ...seen, crlFile };
  return {
    state: seen.state,
    crlFile,
    checkedAt: seen.checkedAt.toISOString(),
    crlThisUpdate: seen.thisUpdate.toISOString(),
    crlNextUpdate: seen.nextUpdate?.toISOString() ?? null,
    ...(seen.revokedAt ? { revokedAt: seen.revokedAt.toISOString() } : {}),
    ...(seen.reason ? { reason: seen.reason } : {}),
  };
}

/** Where the key is, from the stored record: the token key a URI names (the token is not opened), else the store's own place for it. */
async function keyLocation(store: CredentialStore, stored: StoredCredentials): Promise<KeyLocation> {
  const record = stored.pems!.key;
  if (isKeyUri(record)) return { kind: "pkcs11", uri: withoutPinValue(record.trim()), recordedIn: stored.where.key };
  if (store instanceof KeychainStore)
    return { kind: "keychain", service: KEYCHAIN_SERVICE, account: store.accounts.key };
  if (store instanceof FilesStore) {
    const path = stored.where.key;
    const st = await stat(path).catch(() => undefined); // gone since it was read: its mode is not known
    return { kind: "file", path, mode: st ? (st.mode & 0o777).toString(8).padStart(4, "0") : null };
  }
  return { kind: "store", where: stored.where.key };
}
