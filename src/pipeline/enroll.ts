import { createPrivateKey, createPublicKey } from "node:crypto";
import * as x509 from "../crypto/x509.js";
import { CertRetrieverError, describeCause, type Step } from "../errors.js";
import { ExitCode } from "../exit-codes.js";
import { generateKeyPair, privateKeyPem, spkiDer, toPem, type KeyType } from "../crypto/keys.js";
import type { CryptoProvider } from "../crypto/provider.js";
import type { PlatformClient, Session } from "../platform/types.js";
import { acquireLock } from "../store/lock.js";
import {
  credentialPaths,
  ensureDirectory,
  readCredentials,
  recoverInterruptedWrites,
  removeCreatedDirectory,
  writeCredentials,
  type CredentialPaths,
} from "../store/files-store.js";
import { buildCsr, type SubjectAltNames } from "./build-csr.js";
import { parseCertificate, sha256Fingerprint } from "./certificate.js";
import { CLOCK_TOLERANCE_MS, describeSkew, missingSans, validateCertificate } from "./validate.js";
import { faultPoint } from "../fault.js";
import { normalizeFingerprint } from "./pin.js";

/** The enrollment steps, in the order they run. */
export const ENROLL_STEPS = ["authenticate", "fetch-ca", "generate-key", "build-csr", "submit-csr", "validate", "store"] as const;

/** One of {@link ENROLL_STEPS}. */
export type EnrollStep = (typeof ENROLL_STEPS)[number];

/** What an enrollment needs. */
export interface EnrollOptions {
  platform: PlatformClient;
  crypto: CryptoProvider;
  deviceId: string;
  username: string;
  /** Called only when the authenticate step runs, so no secret is read when nothing is to do. */
  password: () => Promise<string>;
  caName: string;
  keyType: KeyType;
  sans: SubjectAltNames;
  outDir: string;
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
  files: CredentialPaths;
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
 * carrying the step and exit code). Nothing is written unless every step before `store` passed.
 */
export async function enroll(opts: EnrollOptions, onEvent: (e: EnrollEvent) => void = () => {}): Promise<EnrollResult> {
  const now = opts.now ?? (() => new Date());
  const paths = credentialPaths(opts.outDir, opts.deviceId, opts.caName);
  const createdDir = await ensureDirectory(opts.outDir);
  let release: (() => Promise<void>) | undefined;
  let succeeded = false;
  try {
    release = await acquireLock(opts.outDir);
    for (const message of await recoverInterruptedWrites(opts.outDir)) onEvent({ type: "note", message });
    if (!opts.force) {
      const existing = await checkExisting(paths, opts, now());
      if (existing.valid) {
        succeeded = true;
        return { ...describe(existing.cert, paths, opts.deviceId, undefined, []), status: "already-enrolled" };
      }
      if (existing.reason) onEvent({ type: "note", message: `existing credentials will be replaced: ${existing.reason}` });
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

    const session: Session = await run(
      "authenticate",
      async () => opts.platform.authenticate(opts.username, await opts.password()),
      (s) => `logged in as ${opts.username}${s.tenant ? ` (tenant ${s.tenant})` : ""}`,
    );
    const ca = await run(
      "fetch-ca",
      async () => {
        const fetched = parseCertificate((await opts.platform.fetchCa(session)).der, "the CA the platform sent", "fetch-ca", ExitCode.CA);
        checkPin(fetched, opts.caFingerprint, "the CA the platform sent");
        return fetched;
      },
      (c) => `CA ${c.subject}, SHA-256 ${sha256Fingerprint(c)}${opts.caFingerprint ? " (matches the pin)" : " (not pinned: pin it with --ca-fingerprint)"}`,
    );
    const keys = await run(
      "generate-key",
      async () => {
        try {
          return await generateKeyPair(opts.keyType, opts.crypto);
        } catch (err) {
          throw new CertRetrieverError(`generate-key failed: ${describeCause(err)}`, { step: "generate-key", exitCode: ExitCode.KEYGEN, cause: err });
        }
      },
      () => `${opts.keyType} key generated on this device`,
    );
    const csr = await run("build-csr", () => buildCsr(opts.deviceId, keys, opts.sans, opts.crypto), () => `CSR for CN=${opts.deviceId}`);
    const cert = await run(
      "submit-csr",
      async () => {
        const issued = await opts.platform.submitCsr(session, { deviceId: opts.deviceId, csrDer: new Uint8Array(csr.rawData) });
        return parseCertificate(issued.der, "the certificate the platform sent", "validate", ExitCode.VALIDATION);
      },
      (c) => `certificate ${c.serialNumber} issued`,
    );
    await run(
      "validate",
      async () => {
        const clockSkewMs = opts.clockSkewMs?.();
        await validateCertificate(
          { cert, ca, publicKeySpki: await spkiDer(keys.publicKey, opts.crypto), deviceId: opts.deviceId, now: now(), clockSkewMs },
          opts.crypto,
        );
        if (clockSkewMs !== undefined && Math.abs(clockSkewMs) > CLOCK_TOLERANCE_MS) {
          onEvent({ type: "note", message: `this device's clock is ${describeSkew(clockSkewMs)} the platform's; TLS connections may fail until it is synchronised` });
        }
        const missing = missingSans(cert, opts.sans);
        if (missing.length > 0) onEvent({ type: "note", message: `the platform left out requested names: ${missing.join(", ")}` });
      },
      () => `key, signature, validity and subject checked`,
    );
    await run(
      "store",
      async () =>
        writeCredentials(paths, {
          keyPem: await privateKeyPem(keys.privateKey, opts.crypto),
          certificatePem: toPem(cert.rawData, "CERTIFICATE"),
          caPem: toPem(ca.rawData, "CERTIFICATE"),
        }),
      () => `stored in ${opts.outDir}`,
    );
    succeeded = true;
    return { ...describe(cert, paths, opts.deviceId, session.tenant, steps), status: "enrolled" };
  } finally {
    await release?.();
    if (!succeeded) await removeCreatedDirectory(opts.outDir, createdDir);
  }
}

function describe(cert: x509.X509Certificate, files: CredentialPaths, deviceId: string, tenant: string | undefined, steps: StepTiming[]) {
  return {
    deviceId,
    tenant,
    files,
    serialNumber: cert.serialNumber,
    sha256Fingerprint: sha256Fingerprint(cert),
    subject: cert.subject,
    issuer: cert.issuer,
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
    steps,
  };
}

type ExistingCheck = { valid: true; cert: x509.X509Certificate } | { valid: false; reason?: string };

/** Whether the stored credentials are complete and valid now: the key matches, the CA signed it, the device is named. */
async function checkExisting(paths: CredentialPaths, opts: EnrollOptions, now: Date): Promise<ExistingCheck> {
  const pems = await readCredentials(paths);
  if (!pems) return { valid: false };
  const step: Step = "check-existing";
  try {
    const cert = parseCertificate(pems.certificatePem, paths.certificate, step, ExitCode.VALIDATION);
    const ca = parseCertificate(pems.caPem, paths.ca, step, ExitCode.VALIDATION);
    checkPin(ca, opts.caFingerprint, `the stored CA ${paths.ca}`);
    const spki = new Uint8Array(createPublicKey(createPrivateKey(pems.keyPem)).export({ type: "spki", format: "der" }));
    await validateCertificate({ cert, ca, publicKeySpki: spki, deviceId: opts.deviceId, now }, opts.crypto, step);
    return { valid: true, cert };
  } catch (err) {
    return { valid: false, reason: describeCause(err).replace(/^[a-z-]+ failed: /, "") };
  }
}

/** Stops the run (exit 11) if `ca` does not match the pin. */
function checkPin(ca: x509.X509Certificate, pin: string | undefined, what: string): void {
  if (!pin) return;
  const actual = sha256Fingerprint(ca);
  if (actual.replace(/:/g, "") !== normalizeFingerprint(pin)) {
    throw new CertRetrieverError(`fetch-ca failed: ${what} has SHA-256 fingerprint ${actual}, not the pinned ${pin}`, {
      step: "fetch-ca",
      exitCode: ExitCode.CA,
      hint: "the platform's CA is not the one you pinned with --ca-fingerprint: check the platform URL and the pin; nothing was generated or written",
    });
  }
}

