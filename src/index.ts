/** Library API of cert-retriever: it never prints and never exits; the CLI in `cli/` does. */
export { enroll, ENROLL_STEPS, type EnrollOptions, type EnrollEvent, type EnrollResult } from "./flows/enroll.js";
export { CertRetrieverError, REASONS, type Reason, type Facts, type Step } from "./errors.js";
export { ExitCode, EXIT_CODE_MEANINGS } from "./cli/exit-codes.js";
/** The CLI's mapping of reasons to exit codes, for callers that want the same numbers. */
export { EXIT_RULES, exitCodeOf, exitCodesOf } from "./cli/exit-rules.js";
export { DojotLegacyClient, type DojotLegacyOptions } from "./protocols/ejbca-rest/client.js";
export type { PlatformClient, Session } from "./protocols/types.js";
export { softwareCrypto, type CryptoProvider } from "./keys/provider.js";
export { KEY_TYPES, type KeyType } from "./keys/key-types.js";
/** Where keys are made: in software, or in a PKCS#11 token (whose native packages load only when one is opened). */
export { SoftwareKeyStore, type KeyStore, type KeyHandle } from "./keys/key-store.js";
export { Pkcs11KeyStore, type Pkcs11Options } from "./keys/pkcs11-store.js";
export { parsePkcs11Uri, formatPkcs11Uri, type Pkcs11Uri } from "./keys/pkcs11-uri.js";
