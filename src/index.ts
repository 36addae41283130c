/**
 * cert-retriever as a library: `createAgent(settings)` and the types of all it takes and gives.
 * It never prints and never exits; the CLI in `cli/` does, and maps reasons to exit codes. The
 * library imports nothing of the CLI: a program that wants the CLI's numbers imports them from
 * "cert-retriever/exit-codes" (ExitCode, EXIT_CODE_MEANINGS) and "cert-retriever/exit-rules"
 * (EXIT_RULES, exitCodeOf, exitCodesOf).
 */
export { createAgent, enroll, type Agent } from "./agent.js";
export {
  DEFAULT_CA_NAME,
  type AgentSettings,
  type NetworkSettings,
  type PlatformSettings,
  type RenewalSettings,
  type StoreSettings,
} from "./settings.js";
export type { DeviceSettings, EnrollEvent } from "./flows/context.js";
export { ENROLL_STEPS, type EnrollResult, type EnrollStep } from "./flows/result.js";
export type { AgentEvent, BrokerEvent, HookEvent, NoteEvent, StepEvent, StepTiming } from "./flows/steps.js";
export type { StatusResult, RevocationMode } from "./flows/status.js";
export type { RenewWindow } from "./flows/inspect.js";
export type { RevocationVerdict } from "./flows/revocation.js";
export {
  checkChain,
  REGISTER_STEPS,
  type CheckedChain,
  type RegisterEvent,
  type RegisterResult,
  type RegisterStep,
} from "./flows/register.js";
export type { BrokerSettings } from "./flows/verify.js";
export type { ChangeHooks } from "./flows/hooks.js";
export type { TokenSession } from "./flows/authenticate.js";
export type { SubjectAltNames } from "./flows/build-csr.js";
export type { StageReport } from "./broker/broker.js";
export { PROFILES, MQTT_VERSIONS, type ProfileName, type MqttVersion } from "./broker/profiles.js";
export { CertRetrieverError, REASONS, type Reason, type Facts, type Step, type SettingNamer } from "./errors.js";
/** The protocols, their plug-ins and the capabilities a client offers. */
export { PROTOCOLS, DEFAULT_PROTOCOL, findProtocol, protocolNames } from "./protocols/registry.js";
export type * from "./protocols/types.js";
/** Where keys are made: in software, or in a PKCS#11 token (whose native packages load only when one is opened). */
export { softwareCrypto, type CryptoProvider } from "./keys/provider.js";
export { KEY_TYPES, type KeyType } from "./keys/key-types.js";
export { SoftwareKeyStore, type KeyStore, type KeyHandle, type KeyTransaction } from "./keys/key-store.js";
export { Pkcs11KeyStore, type Pkcs11Options } from "./keys/pkcs11-store.js";
export { parsePkcs11Uri, formatPkcs11Uri, type Pkcs11Uri } from "./keys/pkcs11-uri.js";
export type { KeySettings, PinSource } from "./keys/open.js";
/** Where credentials are kept: files (crash-safe) or the OS keychain. */
export { FilesStore, type CredentialPaths } from "./store/files-store.js";
export { KeychainStore } from "./store/keychain-store.js";
export type {
  CredentialPems,
  CredentialStore,
  OpenStore,
  Sidecars,
  StoredCredentials,
  WriteObserver,
  WritePoint,
} from "./store/types.js";
/** The HTTP client a program may pass in (`network.http`), and what it reports. */
export {
  HttpClient,
  type HttpSettings,
  type HttpTimeouts,
  type RetryInfo,
  type TlsSettings,
} from "./transport/http.js";

// Used by the lab package (lab/, a workspace of this repository, which imports the agent only
// through this entry): what the lab shares with the agent rather than copies.
/** PEM as the agent writes it, and the certificate blocks of a PEM text. */
export { certificatePems, toPem } from "./keys/key-types.js";
/** SHA-256 fingerprints in the colon form openssl prints, and DER comparison. */
export { sameBytes, sha256ColonHex } from "./keys/fingerprint.js";
/** The OIDs of EST's `/csrattrs`. */
export { OIDS } from "./keys/pkcs7.js";
/** Whether a host is this machine. */
export { isLoopbackHost } from "./transport/loopback.js";
