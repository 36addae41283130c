/** Library API of cert-retriever: it never prints and never exits; the CLI in `cli/` does. */
export { enroll, ENROLL_STEPS, type EnrollOptions, type EnrollEvent, type EnrollResult } from "./pipeline/enroll.js";
export { CertRetrieverError, REASONS, type Reason, type Facts, type Step } from "./errors.js";
export { ExitCode, EXIT_CODE_MEANINGS } from "./exit-codes.js";
/** The CLI's mapping of reasons to exit codes, for callers that want the same numbers. */
export { EXIT_RULES, exitCodeOf, exitCodesOf } from "./exit-rules.js";
export { DojotLegacyClient, type DojotLegacyOptions } from "./platform/dojot-legacy.js";
export type { PlatformClient, Session } from "./platform/types.js";
export { softwareCrypto, type CryptoProvider } from "./crypto/provider.js";
export { KEY_TYPES, type KeyType } from "./crypto/keys.js";
/** Where keys are made: in software, or in a PKCS#11 token (whose native packages load only when one is opened). */
export { SoftwareKeyStore, type KeyStore, type KeyHandle } from "./crypto/key-store.js";
export { Pkcs11KeyStore, type Pkcs11Options } from "./crypto/pkcs11-store.js";
export { parsePkcs11Uri, formatPkcs11Uri, type Pkcs11Uri } from "./crypto/pkcs11-uri.js";

// Used by the lab package (lab/, a workspace of this repository, which imports the agent only
// through this entry): what the lab shares with the agent rather than copies.
/** PEM as the agent writes it, and the certificate blocks of a PEM text. */
export { certificatePems, toPem } from "./crypto/keys.js";
/** SHA-256 fingerprints in the colon form openssl prints, and DER comparison. */
export { sameBytes, sha256ColonHex } from "./crypto/fingerprint.js";
/** The OIDs of EST's `/csrattrs`. */
export { OIDS } from "./crypto/pkcs7.js";
/** Whether a host is this machine. */
export { isLoopbackHost } from "./loopback.js";
/** The crash-safe writer of a key, a certificate and a CA file. */
export { FilesStore } from "./store/files-store.js";
