/** What the enroll and renew flows work with: built by the agent from its settings, or by a test from fakes. */

import type { ProfileName } from "../broker/profiles.js";
import type { SettingNamer } from "../errors.js";
import type { KeyStore } from "../keys/key-store.js";
import type { KeyType } from "../keys/key-types.js";
import type { CryptoProvider } from "../keys/provider.js";
import type * as x509 from "../keys/x509.js";
import type { LoginSource, ProtocolClient } from "../protocols/types.js";
import type { CredentialPems, CredentialStore } from "../store/types.js";
import type { TokenSession } from "./authenticate.js";
import type { SubjectAltNames } from "./build-csr.js";
import type { RenewWindow } from "./inspect.js";
import type { EnrollResult, EnrollStep } from "./result.js";
import type { RevocationVerdict } from "./revocation.js";
import type { AgentEvent } from "./steps.js";

/** Progress of an enrollment. */
export type EnrollEvent = AgentEvent<EnrollStep>;

/** The device an enrollment is for. */
export interface DeviceSettings {
  id: string;
  /** The key to generate; when absent, the one the platform asks for, else the protocol's. */
  keyType?: KeyType;
  /** Subject alternative names to request. */
  sans?: SubjectAltNames;
  /** The identity profile, recorded with the credentials when it is not generic. */
  profile?: { name: ProfileName; uriDomain?: string };
}

/** A run of the enroll or renew flow. */
export interface EnrollContext {
  device: DeviceSettings & { sans: SubjectAltNames };
  client: ProtocolClient;
  store: CredentialStore;
  keyStore: KeyStore;
  /** Verifies signatures (the CA's on the certificate). */
  crypto: CryptoProvider;
  /** The CA's SHA-256 fingerprint as given (hex, any case, colons optional): a CA that differs stops the run before any key is made. */
  pin?: string;
  login?: LoginSource;
  token?: TokenSession;
  /** When stored credentials are due for renewal. */
  renewBefore: RenewWindow;
  /** Whether the stored certificate was revoked, by the cached CRL (`check` keeps it fresh). */
  revocation?: (cert: x509.X509Certificate, ca: x509.X509Certificate) => Promise<RevocationVerdict>;
  /** Whether the platform's CA is known (from `check`) to have replaced the stored one. */
  caReplaced?: (ca: x509.X509Certificate) => Promise<boolean>;
  /** Platform time minus local time, once a reply has told it. */
  clockSkewMs: () => number | undefined;
  /** Also put the certificate into the token, beside its key. */
  storeCertInToken: boolean;
  /** Revoke the certificate a renewal replaced, where the protocol can. */
  revokePrevious: boolean;
  /**
   * When credentials are replaced: the broker check with the new ones, run after validation and
   * before they replace the stored ones (a failure keeps the stored ones). Only where the key store
   * lets TLS use a new key while it is open; its result is the result's `checkedBeforeStore`.
   */
  beforeReplace?: (pems: CredentialPems) => Promise<unknown>;
  /** After new credentials are stored: what lets their users pick them up. Its failure (thrown after all) keeps a replaced certificate unrevoked. */
  afterChange?: (result: EnrollResult) => Promise<void>;
  /** After new credentials are stored: records the settings they were obtained with (`api`: the protocol that answered); a note when it could not. */
  remember?: (api: string) => Promise<string | undefined>;
  now: () => Date;
  signal?: AbortSignal;
  emit: (event: EnrollEvent) => void;
  /** How messages name settings. */
  name: SettingNamer;
}
