import { sameBytes } from "../keys/fingerprint.js";
import { SoftwareKeyStore, type KeyHandle, type KeyStore } from "../keys/key-store.js";
import { describeKey, sameKey } from "../keys/pkcs11-uri.js";
import { toPem, type KeyType } from "../keys/key-types.js";
import type { CryptoProvider } from "../keys/provider.js";
import * as x509 from "../keys/x509.js";
import { CertRetrieverError, describeCause, usageError } from "../errors.js";
import { faultPoint } from "../fault.js";
import { openSession, type SessionSource } from "./authenticate.js";
import { API_TRAITS, type PlatformClient, type Session } from "../protocols/types.js";
import type { ProfileName, ProfileRecord } from "../broker/profiles.js";
import { FilesStore, type CredentialPaths } from "../store/files-store.js";
import { readKeyJournal, writeKeyJournal } from "../keys/key-journal.js";
import { isKeyUri, type CredentialPems, type CredentialStore } from "../store/types.js";
import { buildCsr, type SubjectAltNames } from "./build-csr.js";
import { displayName, parseCertificate, sha256Fingerprint } from "./certificate.js";
import { checkPin, inspectCredentials, type RenewWindow } from "./inspect.js";
import type { RevocationVerdict } from "./revocation.js";
import { checkProfileIdentity, CLOCK_TOLERANCE_MS, describeSkew, missingSans, validateCaChain, validateCertificate } from "./validate.js";

/** The enrollment steps, in the order they run. */
export const ENROLL_STEPS = ["authenticate", "fetch-ca", "generate-key", "build-csr", "submit-csr", "validate", "bind", "store"] as const;

/** One of {@link ENROLL_STEPS}. */
export type EnrollStep = (typeof ENROLL_STEPS)[number];

/** What an enrollment needs. `username`, `password` and `retryLogin` are asked for only when the authenticate step runs. */
export interface EnrollOptions extends SessionSource {
  platform: PlatformClient;
  /** Verifies signatures (the CA's on the certificate); software keys are made with it too, unless `keyStore` says otherwise. */
  crypto: CryptoProvider;
  /** Where the key is made: software (default) or a PKCS#11 token. */
  keyStore?: KeyStore;
  /** Also put the certificate into the token, beside its key (a token key store only). */
  storeCertInToken?: boolean;
  deviceId: string;
  /** `session`: a session from a token (`login`), which the authenticate step uses instead of logging in; `sessionSource` says where it came from. */
  /** The key to generate; when absent, the one the platform's API prefers (known after fetch-ca). */
  keyType?: KeyType;
  sans: SubjectAltNames;
  store: CredentialStore;
  /** The identity profile, recorded with the credentials when it is not generic. */
  profile?: { name: ProfileName; uriDomain?: string };
  /** When stored credentials are due for renewal (default: at expiry). */
  renewBefore?: RenewWindow;
  /** Enroll even if valid credentials exist. */
  force: boolean;
  /** Pin: the CA's SHA-256 fingerprint (hex, any case, colons optional); a CA that differs stops the run before any key is made. */
  caFingerprint?: string;
  /** Platform time minus local time, once a reply has told it. */
  clockSkewMs?: () => number | undefined;
  /** Aborts the run between steps (an interrupt); its reason is thrown. */
  signal?: AbortSignal;
  /** The clock (tests may move it). */
  now?: () => Date;
  /** Whether the stored certificate was revoked, by the cached CRL (`check` keeps it fresh). */
  revocation?: (cert: x509.X509Certificate, ca: x509.X509Certificate) => Promise<RevocationVerdict>;
  /** Whether the platform's CA is known (from `check`) to have replaced the stored one. */
  caReplaced?: (ca: x509.X509Certificate) => Promise<boolean>;
  /**
   * When credentials are replaced (a renewal): run after validation, before the new credentials
   * replace the stored ones; a failure keeps the stored ones (a key file only: a token key is
   * checked after the write). Its result is the result's `checkedBeforeStore`.
   */
  beforeReplace?: (pems: CredentialPems) => Promise<unknown>;
  /** After new credentials are stored: the command that lets their users pick them up. Its failure (thrown after all) keeps a replaced certificate unrevoked. */
  afterChange?: (result: EnrollResult) => Promise<void>;
  /** Revoke the certificate the new one replaced, on a platform that can (x509-identity-mgmt). */
  revokePrevious?: boolean;
}

/** Progress, emitted as it happens; the CLI renders it, the library never prints. */
export type EnrollEvent =
  | { type: "step"; step: EnrollStep; index: number; total: number; ms: number; detail: string }
  | { type: "note"; message: string };

/** Timing of one step. */
export interface StepTiming {
  step: EnrollStep;
  ms: number;
}

/** The outcome of {@link enroll}. */
export interface EnrollResult {
  status: "enrolled" | "already-enrolled";
  deviceId: string;
  tenant?: string;
  /** `files.profile` is there only when a profile was recorded. */
  store: { kind: string; location: string; files?: Omit<CredentialPaths, "profile" | "key" | "keyUri"> & { key?: string; keyUri?: string; profile?: string } };
  serialNumber: string;
  sha256Fingerprint: string;
  subject: string;
  issuer: string;
  notBefore: string;
  notAfter: string;
  steps: StepTiming[];
  /** The certificate these credentials replaced, and what became of it on the platform. */
  previous?: { sha256Fingerprint: string; serialNumber: string; notAfter: string; revoked: "revoked" | "absent" | "kept"; why?: string };
  /** What `beforeReplace` returned (the broker check before the swap). */
  checkedBeforeStore?: unknown;
}

/**
 * Runs the fixed enrollment sequence and stops at the first error (a {@link CertRetrieverError}
 * carrying the step and the reason). Nothing is written unless every step before `store` passed.
 */
export async function enroll(opts: EnrollOptions, onEvent: (e: EnrollEvent) => void = () => {}): Promise<EnrollResult> {
  const now = opts.now ?? (() => new Date());
  const keyStore: KeyStore = opts.keyStore ?? new SoftwareKeyStore(opts.crypto);
  const opened = await opts.store.open();
  let succeeded = false;
  // With a token: the store's list of the key this run makes, so that the next run removes what a killed one left.
  const journal = keyStore.kind === "pkcs11" ? opts.store.keyJournal : undefined;
  const note = (message: string) => onEvent({ type: "note", message });
  // The token key this run made, until its credentials are stored.
  let madeKey: string | undefined;
  // Keys listed by an earlier run that are in another token than this run's: they stay listed.
  const elsewhere: string[] = [];
  /** Removes a key cert-retriever made, saying why; a failure is a note (the key stays listed, for the next run). */
  const removeKey = async (record: string, why: string): Promise<"done" | "kept"> => {
    try {
      const outcome = await keyStore.remove(record);
      if (outcome === "removed") note(`removed ${describeKey(record)}: ${why}`);
      if (outcome === "elsewhere") note(`${describeKey(record)} is not in ${keyStore.location}, so it stays (${why}); a run with that token removes it`);
      return outcome === "elsewhere" ? "kept" : "done";
    } catch (err) {
      note(`could not remove ${describeKey(record)} (${describeCause(err)}); the next run tries again`);
      return "kept";
    }
  };
  try {
    for (const message of opened.notes) note(message);
    // The key the stored credentials name: never removed but by a new enrollment that replaces it.
    const storedParts = (await opts.store.read()).parts;
    const storedKey = storedParts.key?.trim();
    // The certificate a new one would replace (revoked once the new one is stored).
    const previousCert = readCertificate(storedParts.certificatePem);
    const storedInToken = storedKey !== undefined && isKeyUri(storedKey) ? storedKey : undefined;
    if (journal) {
      const left = (await readKeyJournal(journal)).filter((record) => !(storedInToken && sameKey(record, storedInToken)));
      for (const record of left) {
        const outcome = await removeKey(record, "an earlier run made it and stored no credentials with it");
        if (outcome === "kept") elsewhere.push(record);
      }
      await writeKeyJournal(journal, elsewhere);
    }
    // A renewal proper: valid credentials whose renewal window has begun.
    let renewal = false;
    // Not revoked either: credentials that can still authenticate a renewal (EST's re-enrollment).
    let stillGood = false;
    if (!opts.force) {
      const existing = await inspectCredentials(opts.store, {
        ...opts,
        publicKeysOf: (record) => keyStore.publicKeysOf(record),
        renewBefore: opts.renewBefore ?? { ms: 0 },
        now: now(),
        revocation: opts.revocation,
        caReplaced: opts.caReplaced,
      });
      // With a token at hand, asking for the CA costs no login: a CA the platform has changed is found too.
      const caChanged = existing.state === "valid" && opts.session ? await platformCaDiffers(opts, existing.ca, now(), onEvent) : false;
      if (existing.state === "valid" && !caChanged) {
        succeeded = true;
        return { ...describe(existing.cert, opts.store, opts.deviceId, undefined, [], existing.profiled, keyStore.kind === "pkcs11"), status: "already-enrolled" };
      }
      renewal = (existing.state === "expiring" || existing.state === "revoked") && existing.cert !== undefined && existing.cert.notAfter > now();
      stillGood = renewal && existing.state === "expiring" && existing.cert!.notBefore <= now();
      if (caChanged) onEvent({ type: "note", message: "existing credentials will be replaced: the platform's CA differs from the stored one" });
      else if (existing.state !== "missing" && existing.state !== "valid") onEvent({ type: "note", message: `existing credentials will be replaced: ${existing.reason}` });
    }

    const steps: StepTiming[] = [];
    const run = async <T>(step: EnrollStep, work: () => Promise<T>, detail: (value: T) => string): Promise<T> => {
      opts.signal?.throwIfAborted();
      const start = performance.now();
      const value = await work();
      const ms = Math.round(performance.now() - start);
      steps.push({ step, ms });
      onEvent({ type: "step", step, index: ENROLL_STEPS.indexOf(step) + 1, total: ENROLL_STEPS.length, ms, detail: detail(value) });
      faultPoint(`after-${step}`);
      return value;
    };

    const { session } = await run("authenticate", () => (opts.platform.signIn ? opts.platform.signIn(opts) : openSession(opts.platform, opts, now())), (opened) => opened.detail);
    const fetched = await run(
      "fetch-ca",
      async () => {
        const fetched = await opts.platform.fetchCa(session);
        const chain = [fetched.der, ...(fetched.chain ?? [])].map((der, i) => parseCertificate(der, i === 0 ? "the CA the platform sent" : `CA certificate ${i + 1} the platform sent`, "fetch-ca", "reply-malformed"));
        checkPin(chain, opts.caFingerprint, "the CA the platform sent");
        if (chain.length > 1) await validateCaChain(chain, opts.crypto, now(), "fetch-ca", "cert-invalid", "the CA chain the platform sent");
        // Only now, checked, may the chain vouch for the platform's own TLS (EST).
        opts.platform.trustCa?.(chain.map((c) => new Uint8Array(c.rawData)));
        return { chain, vouchedBy: fetched.vouchedBy };
      },
      ({ chain: [c, ...up], vouchedBy }) =>
        `CA ${displayName(c!.subjectName)}, SHA-256 ${sha256Fingerprint(c!)}${up.length ? `, under ${up.map((u) => displayName(u.subjectName)).join(" < ")}` : ""}${opts.caFingerprint ? " (matches the pin)" : vouchedBy ? ` (${vouchedBy})` : " (not pinned)"}; API ${API_TRAITS[opts.platform.api()].title}`,
    );
    const caChain = fetched.chain;
    const ca = caChain[0]!;
    const traits = API_TRAITS[opts.platform.api()];
    const replacing = previousCert !== undefined && issuedBy(previousCert, ca);
    if (renewal && replacing && opts.platform.api() === "dojot-legacy") {
      // EJBCA signs for an end entity in state NEW only, and its first certificate left it GENERATED.
      throw new CertRetrieverError(
        `fetch-ca failed: a renewal on EJBCA-REST (dojot <= v0.4) needs the device's end entity reset to NEW on the platform, which cert-retriever cannot see or do; no key was made, and the stored credentials (valid until ${previousCert!.notAfter.toISOString()}) stay`,
        { step: "fetch-ca", reason: "not-supported" },
      );
    }
    await opts.platform.prepare?.(session, opts.deviceId);
    const asked = opts.platform.csrAttributes?.() ?? { notes: [] };
    for (const message of asked.notes) note(message);
    if (opts.keyType && asked.keyType && asked.keyType !== opts.keyType) note(`the platform asks for a ${asked.keyType} key; the ${opts.keyType} key asked for here is made as given, and the platform may refuse it`);
    const keyType = opts.keyType ?? asked.keyType ?? traits.keyType;
    const key: KeyHandle = await run(
      "generate-key",
      async () => {
        try {
          const made = await keyStore.generate(keyType, opts.deviceId);
          if (journal) {
            madeKey = await made.record();
            await writeKeyJournal(journal, [...elsewhere, madeKey]);
          }
          return made;
        } catch (err) {
          if (err instanceof CertRetrieverError) throw err;
          throw new CertRetrieverError(`generate-key failed: ${describeCause(err)}`, { step: "generate-key", reason: "keygen-failed", cause: err });
        }
      },
      (k) => `${keyType} key ${k.where}${opts.keyType ? "" : asked.keyType ? " (as the platform's CSR attributes ask)" : " (the API's preferred key)"}`,
    );
    // Credentials that are still good authenticate their own renewal where the platform takes that (EST); a token key cannot go into Node's TLS.
    const current =
      traits.renewsWithCurrent && stillGood && replacing && storedKey && !isKeyUri(storedKey) && storedParts.certificatePem ? { certificatePem: storedParts.certificatePem, keyPem: storedKey } : undefined;
    // Such a renewal asks for the names the certificate has (RFC 7030 §4.2.2), whatever this run's settings say.
    const keeping = current ? previousCert : undefined;
    if (keeping && missingSans(keeping, opts.sans).length > 0) {
      note(`a renewal keeps the names the certificate has (RFC 7030 §4.2.2), not ${missingSans(keeping, opts.sans).join(", ")}; a forced enrollment with the bootstrap credentials asks for new ones`);
    }
    const csr = await run(
      "build-csr",
      () => buildCsr(opts.deviceId, key.keys, opts.sans, key.crypto, keeping),
      () => (keeping ? `CSR for ${displayName(keeping.subjectName)}, the names of the certificate it renews` : `CSR for CN=${opts.deviceId}`),
    );
    const issued = await run(
      "submit-csr",
      async () => {
        const reply = await opts.platform.submitCsr(session, { deviceId: opts.deviceId, csrDer: new Uint8Array(csr.rawData), current });
        return { reply, cert: parseCertificate(reply.der, "the certificate the platform sent", "validate", "cert-invalid") };
      },
      ({ cert: c }) => `certificate ${c.serialNumber} issued`,
    );
    const cert = issued.cert;
    await run(
      "validate",
      async () => {
        const clockSkewMs = opts.clockSkewMs?.();
        await validateCertificate(
          {
            cert,
            ca,
            publicKeySpki: await key.spki(),
            deviceId: opts.deviceId,
            commonNames: traits.commonNames(opts.deviceId, session.tenant),
            now: now(),
            clockSkewMs,
          },
          opts.crypto,
        );
        if (clockSkewMs !== undefined && Math.abs(clockSkewMs) > CLOCK_TOLERANCE_MS) {
          onEvent({ type: "note", message: `this device's clock is ${describeSkew(clockSkewMs)} the platform's; TLS connections may fail until it is synchronised` });
        }
        checkProfileIdentity(cert, opts.profile?.name ?? "generic", opts.sans);
        const missing = missingSans(cert, opts.sans);
        if (missing.length > 0) onEvent({ type: "note", message: `the platform left out requested names: ${missing.join(", ")}` });
      },
      () => `key, signature, validity and subject checked`,
    );
    // Only a certificate that passed validation changes anything more on the platform.
    const binding = await run(
      "bind",
      async () => (opts.platform.bind ? opts.platform.bind(session, issued.reply, opts.deviceId) : { bound: false, detail: `not needed: ${traits.title} ${traits.unbound}` }),
      (b) => b.detail,
    );
    const keyRecord = await key.record();
    const profileJson =
      opts.profile && opts.profile.name !== "generic"
        ? `${JSON.stringify({ profile: opts.profile.name, deviceId: opts.deviceId, tenant: session.tenant, uriDomain: opts.profile.uriDomain } satisfies ProfileRecord, null, 2)}\n`
        : undefined;
    const pems: CredentialPems = { key: keyRecord, certificatePem: toPem(cert.rawData, "CERTIFICATE"), caPem: caChain.map((c) => toPem(c.rawData, "CERTIFICATE")).join(""), profileJson };
    let checkedBeforeStore: unknown;
    const notStored = (err: unknown): never => {
      if (binding.bound) note(`certificate ${issued.reply.fingerprint ?? sha256Fingerprint(cert)} is bound to device ${opts.deviceId} on the platform but was not stored here; the next run issues and binds a new one`);
      throw err;
    };
    await run(
      "store",
      async () => {
        // A renewal swaps only credentials that proved themselves (the broker check): else the stored ones stay in use.
        // A token key is checked after the write: a process cannot use the token for the new key and open it again for TLS.
        if (previousCert && opts.beforeReplace && keyStore.kind !== "pkcs11") checkedBeforeStore = await opts.beforeReplace(pems).catch(notStored);
        // Until the write is done, either key may be the one stored: the next run keeps that one and removes the other.
        if (journal && storedInToken && !sameKey(storedInToken, keyRecord)) await writeKeyJournal(journal, [...elsewhere, keyRecord, storedInToken]);
        if (opts.storeCertInToken) {
          if (!keyStore.storeCertificate) throw usageError("the certificate can be stored in a token only beside a key in that token", "storeCertInToken");
          await keyStore.storeCertificate(keyRecord, cert);
        }
        await opts.store.write(pems).catch(notStored);
        madeKey = undefined; // stored: from here on, nothing removes it
      },
      () => `stored in ${opts.store.location}${opts.storeCertInToken ? ` and the certificate in ${keyStore.location}` : ""}${keyStore.kind === "pkcs11" ? `; the key stays in the token (${keyRecord})` : ""}`,
    );
    // The key the new credentials replaced is cert-retriever's (it stored it): it goes.
    const keptKeys = storedInToken && !sameKey(storedInToken, keyRecord) && (await removeKey(storedInToken, "the new key replaces it")) === "kept" ? [storedInToken] : [];
    // A stale entry names the stored key, which is never removed.
    if (journal) await writeKeyJournal(journal, [...elsewhere, ...keptKeys]).catch(() => undefined);
    succeeded = true;
    const result: EnrollResult = {
      ...describe(cert, opts.store, opts.deviceId, session.tenant, steps, Boolean(opts.profile && opts.profile.name !== "generic"), keyStore.kind === "pkcs11"),
      status: "enrolled",
      ...(checkedBeforeStore !== undefined ? { checkedBeforeStore } : {}),
    };
    const replaced = previousCert && sha256Fingerprint(previousCert) !== result.sha256Fingerprint ? previousCert : undefined;
    const previous = replaced && { sha256Fingerprint: sha256Fingerprint(replaced), serialNumber: replaced.serialNumber, notAfter: replaced.notAfter.toISOString(), revoked: "kept" as const };
    if (previous) result.previous = previous;
    let hookError: unknown;
    await opts.afterChange?.(result).catch((err: unknown) => (hookError = err));
    if (!replaced) {
      if (hookError !== undefined) throw hookError;
      return result;
    }
    const revoked = await settlePrevious(opts, session, replaced, replacing, hookError !== undefined, now());
    result.previous = { ...previous!, ...revoked };
    note(revoked.revoked === "revoked" ? `revoked the replaced certificate ${replaced.serialNumber} on the platform` : `the replaced certificate ${replaced.serialNumber} ${revoked.revoked === "absent" ? "was no longer on the platform" : `stays valid: ${revoked.why}`}`);
    if (hookError !== undefined) throw hookError;
    return result;
  } finally {
    // A failed run takes its token key out again (a killed one leaves it to the next, by the journal).
    if (madeKey && (await removeKey(madeKey, "this run made it and failed")) === "done" && journal) {
      await writeKeyJournal(journal, elsewhere).catch(() => undefined);
    }
    await opened.close(succeeded);
  }
}

/** What becomes of the certificate a renewal replaced: revoked on the platform, unless that is not wanted, not possible, or not yet safe. */
async function settlePrevious(
  opts: EnrollOptions,
  session: Session,
  previous: x509.X509Certificate,
  issuedHere: boolean,
  hookFailed: boolean,
  now: Date,
): Promise<{ revoked: "revoked" | "absent" | "kept"; why?: string }> {
  if (hookFailed) return { revoked: "kept", why: "the command after the change failed, so what uses the identity may still hold the old one" };
  if (!opts.revokePrevious) return { revoked: "kept", why: "asked to keep it" };
  if (!issuedHere) return { revoked: "kept", why: "another CA issued it" };
  if (!opts.platform.revoke) return { revoked: "kept", why: `${API_TRAITS[opts.platform.api()].title} has no revocation for devices` };
  if (session.expiresAt && session.expiresAt <= now) return { revoked: "kept", why: "the session expired before it could be revoked; revoke it on the platform" };
  try {
    const outcome = await opts.platform.revoke(session, sha256Fingerprint(previous));
    return outcome === "not-supported" ? { revoked: "kept", why: `${API_TRAITS[opts.platform.api()].title} has no revocation for devices` } : { revoked: outcome };
  } catch (err) {
    return { revoked: "kept", why: `the platform did not revoke it (${describeCause(err)}); revoke it there` };
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

/** Whether `ca` issued `cert` (same name; the signature is not needed to decide what to revoke on the platform that holds both). */
function issuedBy(cert: x509.X509Certificate, ca: x509.X509Certificate): boolean {
  return sameBytes(cert.issuerName.toArrayBuffer(), ca.subjectName.toArrayBuffer());
}

/** Whether the platform's CA differs from the stored one; a check that cannot be made keeps the valid credentials. */
async function platformCaDiffers(opts: EnrollOptions, stored: x509.X509Certificate, now: Date, onEvent: (e: EnrollEvent) => void): Promise<boolean> {
  const session = opts.session!;
  if (session.expiresAt && session.expiresAt <= now) return false; // nothing to do needs no fresh token
  try {
    const fetched = await opts.platform.fetchCa(session);
    return !sameBytes(fetched.der, stored.rawData);
  } catch (err) {
    onEvent({ type: "note", message: `could not compare the platform's CA with the stored one (${describeCause(err)}); the stored credentials are valid and stay` });
    return false;
  }
}

/** The result's description of `cert` and where it is stored; the profile file is listed only when one was recorded. */
function describe(cert: x509.X509Certificate, store: CredentialStore, deviceId: string, tenant: string | undefined, steps: StepTiming[], profiled: boolean, keyInToken: boolean) {
  let files: EnrollResult["store"]["files"];
  if (store instanceof FilesStore) {
    const { profile, key, keyUri, ...always } = store.paths;
    files = { ...always, ...(keyInToken ? { keyUri } : { key }), ...(profiled ? { profile } : {}) };
  }
  return {
    deviceId,
    tenant,
    store: { kind: store.kind, location: store.location, files },
    serialNumber: cert.serialNumber,
    sha256Fingerprint: sha256Fingerprint(cert),
    subject: displayName(cert.subjectName),
    issuer: displayName(cert.issuerName),
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
    steps,
  };
}
