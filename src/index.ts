/**
 * cert-retriever as a library: `createAgent(settings)` and the types of all it takes and gives.
 * It never prints and never exits; the CLI in `cli/` does, and maps reasons to exit codes. The
 * library imports nothing of the CLI: a program that wants the CLI's numbers imports them from
 * "cert-retriever/exit-codes" (ExitCode, EXIT_CODE_MEANINGS) and "cert-retriever/exit-rules"
 * (EXIT_RULES, exitCodeOf, exitCodesOf).
 */
// Grouped by the folder each export comes from; the lab package (lab/, a workspace of this
// repository, which imports the agent only through this entry) uses the exports marked "the lab".
/** The agent: what a program builds from settings, and the one-shot enroll. */
export { type Agent, createAgent, describeCredentials, enroll } from "./agent.js";
/** The broker check (`verify`): its report, the identity profiles and MQTT versions. */
export type { StageReport } from "./broker/broker.js";
export { MQTT_VERSIONS, type MqttVersion, PROFILES, type ProfileName } from "./broker/profiles.js";
/** One error family: step, reason (from one closed list), facts. */
export { CertRetrieverError, type Facts, REASONS, type Reason, type SettingNamer, type Step } from "./errors.js";
/** The flows: what they take, report as events and return. */
export type { TokenSession } from "./flows/authenticate.js";
export type { SubjectAltNames } from "./flows/build-csr.js";
export type { DeviceSettings, EnrollEvent } from "./flows/context.js";
export type {
  ChainEntry,
  CredentialsDescription,
  KeyLocation,
  NamedPlatform,
  RevocationSeen,
} from "./flows/describe.js";
export type { DryRunResult } from "./flows/enroll.js";
export type { ExportResult } from "./flows/export.js";
export type { ChangeHooks } from "./flows/hooks.js";
export type { RenewWindow } from "./flows/inspect.js";
export {
  type CheckedChain,
  checkChain,
  REGISTER_STEPS,
  type RegisterEvent,
  type RegisterResult,
  type RegisterStep,
} from "./flows/register.js";
export { ENROLL_STEPS, type EnrollResult, type EnrollStep } from "./flows/result.js";
export type { RevocationVerdict } from "./flows/revocation.js";
/** Signing what the device sends (airvantage, jws, raw) with its stored key, and checking it (docs/signing.md). */
export type { MessageSigner, SignedMessage, SignerOptions } from "./flows/sign.js";
export type { RevocationMode, StatusResult } from "./flows/status.js";
export type {
  AgentEvent,
  BrokerEvent,
  HookEvent,
  NoteEvent,
  StartEvent,
  StepEvent,
  StepTiming,
} from "./flows/steps.js";
export type { BrokerSettings } from "./flows/verify.js";
export {
  type SignatureCheck,
  type SignatureCheckContext,
  type SignatureRequest,
  verifySignedMessage,
} from "./flows/verify-signature.js";
/** SHA-256 fingerprints in the colon form openssl prints, and DER comparison (also the lab's). */
export { sameBytes, sha256ColonHex } from "./keys/fingerprint.js";
/** Where keys are made: in software, or in a PKCS#11 token (whose native packages load only when one is opened). */
export {
  type KeyHandle,
  type KeyStore,
  type KeyTransaction,
  type SigningKey,
  SoftwareKeyStore,
} from "./keys/key-store.js";
/** Key types; PEM as the agent writes it, and the certificate blocks of a PEM text (the lab's too). */
export { certificatePems, KEY_TYPES, type KeyType, toPem } from "./keys/key-types.js";
export type { KeySettings, PinSource } from "./keys/open.js";
/** The OIDs of EST's `/csrattrs` (the lab serves them). */
export { OIDS } from "./keys/pkcs7.js";
export { Pkcs11KeyStore, type Pkcs11Options } from "./keys/pkcs11-store.js";
export { formatPkcs11Uri, type Pkcs11Uri, parsePkcs11Uri } from "./keys/pkcs11-uri.js";
export { type CryptoProvider, softwareCrypto } from "./keys/provider.js";
/** CMP's structures (RFC 4210, RFC 4211) and its PasswordBasedMac, which the lab's CMP server reads and writes too. */
export {
  CertConfirmContent,
  CertificateList,
  CertifiedKeyPair,
  CertRepMessage,
  CertResponse,
  ErrorMsgContent,
  ID_IT_CA_CERTS,
  ID_PASSWORD_BASED_MAC,
  InfoTypeAndValue,
  InfoTypeAndValues,
  PKIBody,
  PKIFreeText,
  PKIHeader,
  PKIMessage,
  PKIStatusInfo,
  ProtectedPart,
} from "./protocols/cmp/asn1.js";
export { failInfoNames } from "./protocols/cmp/messages.js";
export { macMatches, newPbmAlgorithm, passwordBasedMac } from "./protocols/cmp/protection.js";
/** The protocols, their plug-ins and the capabilities a client offers. */
export { DEFAULT_PROTOCOL, findProtocol, PROTOCOLS, protocolNames } from "./protocols/registry.js";
/** SCEP's pkiMessage and pkcsPKIEnvelope (RFC 8894 §3), which the lab's SCEP server reads and writes too. */
export { envelope, openEnvelope } from "./protocols/scep/envelope.js";
export { includedCertificates, readMessage, type ScepAttributes, signedMessage } from "./protocols/scep/signed.js";
export type * from "./protocols/types.js";
/** The settings an agent is built from. */
export {
  type AgentSettings,
  DEFAULT_CA_NAME,
  type NetworkSettings,
  type PlatformSettings,
  type RenewalSettings,
  type StoreSettings,
} from "./settings.js";
export {
  airVantageSigningInput,
  type JwsAlg,
  MESSAGE_LIMIT,
  SIGN_FORMATS,
  type SignFormat,
} from "./sign/formats.js";
/** Where credentials are kept: files (crash-safe) or the OS keychain. */
export { type CopyFormat, type CredentialPaths, FilesStore } from "./store/files-store.js";
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
  type OnWait,
  type RetryInfo,
  type TlsSettings,
  type WaitInfo,
} from "./transport/http.js";
/** Whether a host is this machine (the lab's exposure warning). */
export { isLoopbackHost } from "./transport/loopback.js";
