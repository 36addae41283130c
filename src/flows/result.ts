/** What an enrollment or a renewal gives back. */
import type * as x509 from "../keys/x509.js";
import { type CredentialPaths, FilesStore } from "../store/files-store.js";
import type { CredentialStore } from "../store/types.js";
import { displayName, sha256Fingerprint } from "./certificate.js";
import type { StepTiming } from "./steps.js";

/** The enrollment steps, in the order they run. */
export const ENROLL_STEPS = [
  "authenticate",
  "fetch-ca",
  "generate-key",
  "build-csr",
  "submit-csr",
  "validate",
  "bind",
  "store",
] as const;

/** One of {@link ENROLL_STEPS}. */
export type EnrollStep = (typeof ENROLL_STEPS)[number];

/** The outcome of an enrollment (or renewal). */
export interface EnrollResult {
  status: "enrolled" | "already-enrolled";
  deviceId: string;
  tenant?: string;
  /** `files.profile` is there only when a profile was recorded. */
  store: {
    kind: string;
    location: string;
    files?: Omit<CredentialPaths, "profile" | "key" | "keyUri" | "settings" | "der"> & {
      key?: string;
      keyUri?: string;
      profile?: string;
      /** The settings the enrollment used, when they were recorded. */
      settings?: string;
    };
  };
  serialNumber: string;
  sha256Fingerprint: string;
  subject: string;
  issuer: string;
  notBefore: string;
  notAfter: string;
  steps: StepTiming<EnrollStep>[];
  /** The certificate these credentials replaced, and what became of it on the platform. */
  previous?: {
    sha256Fingerprint: string;
    serialNumber: string;
    notAfter: string;
    revoked: "revoked" | "absent" | "kept";
    why?: string;
  };
  /** What the broker check before the swap returned. */
  checkedBeforeStore?: unknown;
}

/** The result's description of `cert` and where it is stored; the profile file is listed only when one was recorded. */
export function describeStored(
  cert: x509.X509Certificate,
  store: CredentialStore,
  who: { deviceId: string; tenant?: string },
  steps: StepTiming<EnrollStep>[],
  kept: { profiled: boolean; keyInToken: boolean },
): Omit<EnrollResult, "status"> {
  let files: EnrollResult["store"]["files"];
  if (store instanceof FilesStore) {
    const { profile, key, keyUri, settings: _recorded, der: _copies, ...always } = store.paths;
    files = { ...always, ...(kept.keyInToken ? { keyUri } : { key }), ...(kept.profiled ? { profile } : {}) };
  }
  return {
    deviceId: who.deviceId,
    tenant: who.tenant,
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
