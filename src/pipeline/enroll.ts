import { generateKeyPair, privateKeyPem, spkiDer, toPem, type KeyType } from "../crypto/keys.js";
import type { CryptoProvider } from "../crypto/provider.js";
import * as x509 from "../crypto/x509.js";
import { CertRetrieverError, describeCause } from "../errors.js";
import { faultPoint } from "../fault.js";
import { logIn, type LoginSource } from "../platform/login.js";
import { API_TRAITS, type PlatformClient, type Session } from "../platform/types.js";
import type { ProfileName, ProfileRecord } from "../profiles.js";
import { FilesStore, type CredentialPaths } from "../store/files-store.js";
import type { CredentialStore } from "../store/types.js";
import { buildCsr, type SubjectAltNames } from "./build-csr.js";
import { displayName, parseCertificate, sha256Fingerprint } from "./certificate.js";
import { checkPin, inspectCredentials } from "./inspect.js";
import { checkProfileIdentity, CLOCK_TOLERANCE_MS, describeSkew, missingSans, validateCertificate } from "./validate.js";

/** The enrollment steps, in the order they run. */
export const ENROLL_STEPS = ["authenticate", "fetch-ca", "generate-key", "build-csr", "submit-csr", "validate", "bind", "store"] as const;

/** One of {@link ENROLL_STEPS}. */
export type EnrollStep = (typeof ENROLL_STEPS)[number];

/** What an enrollment needs. `username`, `password` and `retryLogin` are asked for only when the authenticate step runs. */
export interface EnrollOptions extends LoginSource {
  platform: PlatformClient;
  crypto: CryptoProvider;
  deviceId: string;
  /** A session from a token (`login`): the authenticate step uses it instead of logging in. */
  session?: Session;
  /** Says where `session` came from, for the step's line. */
  sessionSource?: string;
  /** The key to generate; when absent, the one the platform's API prefers (known after fetch-ca). */
  keyType?: KeyType;
  sans: SubjectAltNames;
  store: CredentialStore;
  /** The identity profile, recorded with the credentials when it is not generic. */
  profile?: { name: ProfileName; uriDomain?: string };
  /** Credentials expiring within this many milliseconds are enrolled again. */
  renewBeforeMs?: number;
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
  store: { kind: string; location: string; files?: Omit<CredentialPaths, "profile"> & { profile?: string } };
  serialNumber: string;
  sha256Fingerprint: string;
  subject: string;
  issuer: string;
  notBefore: string;
  notAfter: string;
  steps: StepTiming[];
}

/**
 * Runs the fixed enrollment sequence and stops at the first error (a {@link CertRetrieverError}
 * carrying the step and the reason). Nothing is written unless every step before `store` passed.
 */
export async function enroll(opts: EnrollOptions, onEvent: (e: EnrollEvent) => void = () => {}): Promise<EnrollResult> {
  const now = opts.now ?? (() => new Date());
  const opened = await opts.store.open();
  let succeeded = false;
  try {
    for (const message of opened.notes) onEvent({ type: "note", message });
    if (!opts.force) {
      const existing = await inspectCredentials(opts.store, { ...opts, renewBeforeMs: opts.renewBeforeMs ?? 0, now: now() });
      // With a token at hand, asking for the CA costs no login: a CA the platform has changed is found too.
      const caChanged = existing.state === "valid" && opts.session ? await platformCaDiffers(opts, existing.ca, now(), onEvent) : false;
      if (existing.state === "valid" && !caChanged) {
        succeeded = true;
        return { ...describe(existing.cert, opts.store, opts.deviceId, undefined, [], existing.profiled), status: "already-enrolled" };
      }
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

    let loggedInAs = "";
    const session: Session = await run(
      "authenticate",
      async () => {
        if (!opts.session) {
          const { session, username } = await logIn(opts.platform, opts);
          loggedInAs = username;
          return session;
        }
        if (opts.session.expiresAt && opts.session.expiresAt <= now()) {
          throw new CertRetrieverError(`authenticate failed: the token in ${opts.sessionSource ?? "the token file"} expired at ${opts.session.expiresAt.toISOString()}`, {
            step: "authenticate",
            reason: "token-expired",
          });
        }
        return opts.session;
      },
      (s) =>
        opts.session
          ? `using the token from ${opts.sessionSource ?? "login"}${s.tenant ? ` (tenant ${s.tenant})` : ""}`
          : `logged in as ${loggedInAs}${s.tenant ? ` (tenant ${s.tenant})` : ""}`,
    );
    const ca = await run(
      "fetch-ca",
      async () => {
        const fetched = parseCertificate((await opts.platform.fetchCa(session)).der, "the CA the platform sent", "fetch-ca", "reply-malformed");
        checkPin(fetched, opts.caFingerprint, "the CA the platform sent");
        return fetched;
      },
      (c) =>
        `CA ${displayName(c.subjectName)}, SHA-256 ${sha256Fingerprint(c)}${opts.caFingerprint ? " (matches the pin)" : " (not pinned)"}; API ${API_TRAITS[opts.platform.api()].title}`,
    );
    const traits = API_TRAITS[opts.platform.api()];
    await opts.platform.prepare?.(session, opts.deviceId);
    const keyType = opts.keyType ?? traits.keyType;
    const keys = await run(
      "generate-key",
      async () => {
        try {
          return await generateKeyPair(keyType, opts.crypto);
        } catch (err) {
          throw new CertRetrieverError(`generate-key failed: ${describeCause(err)}`, { step: "generate-key", reason: "keygen-failed", cause: err });
        }
      },
      () => `${keyType} key generated on this device${opts.keyType ? "" : " (the API's preferred key)"}`,
    );
    const csr = await run("build-csr", () => buildCsr(opts.deviceId, keys, opts.sans, opts.crypto), () => `CSR for CN=${opts.deviceId}`);
    const issued = await run(
      "submit-csr",
      async () => {
        const reply = await opts.platform.submitCsr(session, { deviceId: opts.deviceId, csrDer: new Uint8Array(csr.rawData) });
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
            publicKeySpki: await spkiDer(keys.publicKey, opts.crypto),
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
      async () => (opts.platform.bind ? opts.platform.bind(session, issued.reply, opts.deviceId) : { bound: false, detail: `not needed: ${traits.title} issues to the device's own end entity` }),
      (b) => b.detail,
    );
    await run(
      "store",
      async () =>
        opts.store
          .write({
            keyPem: await privateKeyPem(keys.privateKey, opts.crypto),
            certificatePem: toPem(cert.rawData, "CERTIFICATE"),
            caPem: toPem(ca.rawData, "CERTIFICATE"),
            profileJson:
              opts.profile && opts.profile.name !== "generic"
                ? `${JSON.stringify({ profile: opts.profile.name, deviceId: opts.deviceId, tenant: session.tenant, uriDomain: opts.profile.uriDomain } satisfies ProfileRecord, null, 2)}\n`
                : undefined,
          })
          .catch((err: unknown) => {
            if (binding.bound) onEvent({ type: "note", message: `certificate ${issued.reply.fingerprint ?? sha256Fingerprint(cert)} is bound to device ${opts.deviceId} on the platform but was not stored here; the next run issues and binds a new one` });
            throw err;
          }),
      () => `stored in ${opts.store.location}`,
    );
    succeeded = true;
    return { ...describe(cert, opts.store, opts.deviceId, session.tenant, steps, Boolean(opts.profile && opts.profile.name !== "generic")), status: "enrolled" };
  } finally {
    await opened.close(succeeded);
  }
}

/** Whether the platform's CA differs from the stored one; a check that cannot be made keeps the valid credentials. */
async function platformCaDiffers(opts: EnrollOptions, stored: x509.X509Certificate, now: Date, onEvent: (e: EnrollEvent) => void): Promise<boolean> {
  const session = opts.session!;
  if (session.expiresAt && session.expiresAt <= now) return false; // nothing to do needs no fresh token
  try {
    const fetched = await opts.platform.fetchCa(session);
    return Buffer.compare(Buffer.from(fetched.der), Buffer.from(stored.rawData)) !== 0;
  } catch (err) {
    onEvent({ type: "note", message: `could not compare the platform's CA with the stored one (${describeCause(err)}); the stored credentials are valid and stay` });
    return false;
  }
}

/** The result's description of `cert` and where it is stored; the profile file is listed only when one was recorded. */
function describe(cert: x509.X509Certificate, store: CredentialStore, deviceId: string, tenant: string | undefined, steps: StepTiming[], profiled: boolean) {
  let files: EnrollResult["store"]["files"];
  if (store instanceof FilesStore) {
    const { profile, ...always } = store.paths;
    files = profiled ? { ...always, profile } : always;
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
