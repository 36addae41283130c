/** The steps of an enrollment, in order, plus the phases before and after it. */
export type Step =
  | "usage"
  | "config"
  | "check-existing"
  | "lock"
  | "authenticate"
  | "fetch-ca"
  | "generate-key"
  | "build-csr"
  | "submit-csr"
  | "validate"
  | "bind"
  | "store"
  | "verify"
  | "export"
  | "status"
  | "token"
  | "register"
  | "revoke"
  | "revocation"
  | "hook"
  | "sign"
  | "verify-signature";

/**
 * Why something failed: one closed list, for programs to act on. The library says only this and
 * the facts; what a user should do about it (and the CLI's exit code) is the caller's business.
 */
export const REASONS = {
  // Input and settings
  usage: "an argument is missing or invalid (`facts.field` names it)",
  config: "a settings file, a credentials file or a TLS file could not be read or is unsafe",
  "missing-credentials": "no password or token was given",
  // Reaching the platform
  unreachable: "the platform could not be reached (refused, reset, timed out, the name server not answering)",
  "host-not-found": "the platform's host name does not exist (the name server answered NXDOMAIN, or no address)",
  "url-path-wrong": "the platform URL's path leads to no login: the gateway answered 404 there (its URL has no path)",
  overloaded: "the platform answered 429, 502, 503 or 504 on every attempt",
  deadline: "the run's deadline passed",
  "maybe-sent": "a signing request failed after it may have reached the platform; it was not repeated",
  "tls-not-spoken": "the server does not speak TLS on that port (plain HTTP, or another protocol)",
  "tls-untrusted": "the platform's TLS certificate is not trusted or names another host",
  "client-cert-required": "the gateway requires a client certificate, or refused ours",
  "not-a-dojot-platform": "what answered is not a dojot gateway (an HTML page, another service, no dojot route)",
  "reply-malformed": "a reply from the platform does not have the shape its API promises",
  "reply-altered": "a certificate does not match the fingerprint the platform gave for it",
  "platform-error": "the platform answered an error this client has no better name for (`facts.status`)",
  // Authenticate
  "auth-refused": "the platform refused the password",
  "user-unknown": "the platform does not know the user",
  "user-inactive": "the user exists but is not active",
  "token-expired":
    "the token expired (by this device's clock, or the platform says so), or the platform no longer accepts it",
  "permission-denied": "the user may not make this call (HTTP 403)",
  // Fetch the CA
  "ca-unknown": "the platform has no CA of that name",
  "pin-mismatch": "the CA's fingerprint is not the pinned one",
  // Keys, CSR, issuance, binding
  "keygen-failed": "the key pair could not be generated",
  "csr-refused": "the platform refused the certificate request",
  "key-refused": "the platform does not accept this key type or size",
  "already-issued": "the platform issued a certificate for this device already (EJBCA end entity not in NEW state)",
  "device-unknown": "the platform has no such device",
  "entity-password-refused": "EJBCA refused the end-entity password",
  "reset-refused":
    "the platform would not put the device's end entity back to NEW (EJBCA-REST: the user may not edit end entities), which EJBCA needs before it issues again",
  "bind-refused": "the platform issued a certificate but would not bind it to the device",
  // Registering a certificate the device already has
  "ca-not-trusted":
    "the platform does not trust the CA that issued the certificate (not a trusted CA of the tenant), or cannot tell which it is",
  "already-registered": "the platform holds this certificate already, for another device or tenant, or unbound",
  "registration-refused": "the platform refused to register the certificate (its chain, validity or kind)",
  "not-supported":
    "the platform's API cannot do this (registering a certificate needs x509-identity-mgmt, dojot v0.7+; one device cannot choose among an EST server's several CA chains)",
  "scep-weak-crypto":
    "the SCEP server offers nothing stronger than DES or 3DES, or SHA-1 or MD5, which are used only when the settings say the server is that old",
  // Renewal
  "hook-failed": "the credentials were stored, but the command run after the change failed",
  // Validation
  "cert-invalid": "the certificate is not valid for this device: key, chain or names",
  "cert-out-of-date":
    "the certificate is not valid now (expired, or not yet valid), and the device's clock is not known to be wrong",
  "san-dropped": "the certificate lacks a subject alternative name the profile needs (the platform dropped it)",
  "clock-skew": "this device's clock disagrees with the platform's, so a valid certificate looks invalid here",
  // Storage
  "storage-failed": "the credentials could not be written (read-only, full disk, permissions)",
  "storage-unsafe":
    "the output directory, a directory on its path or a file in it can be written by other users, or has another owner, or is a link",
  "keychain-unavailable": "no OS keychain (Secret Service) is running and unlocked",
  "keychain-addon-missing": "this build has no keychain addon (@napi-rs/keyring)",
  busy: "another run holds the lock on the output directory",
  "not-enrolled": "there are no complete stored credentials for this device",
  // PKCS#11 tokens (--key pkcs11:)
  "pkcs11-unavailable": "this build or installation has no PKCS#11 support (node-webcrypto-p11, pkcs11js)",
  "pkcs11-module-missing": "the PKCS#11 module cannot be read or loaded",
  "pkcs11-module-untrusted":
    "the PKCS#11 module the stored key URI names could have been put there by another user (its owner, mode or directories)",
  "token-missing": "no token matching the URI is present (not inserted, not initialized, another label)",
  "token-pin-refused": "the token refused the PIN",
  "token-locked": "the token's PIN is locked (too many wrong PINs) or the token is write-protected",
  "token-full": "the token has no room for another key or object",
  "token-key-missing":
    "the token no longer holds the key the stored credentials name, or holds no key with the id= its URI names (the device key's, or CMP's bootstrap key's)",
  "token-error": "the token failed in a way this client has no better name for (the CKR_ value says which)",
  "key-in-token":
    "the key lives in a token and never leaves it (reserved: export now copies the certificate and chain of such a device)",
  // Interruptions
  interrupted: "interrupted by SIGINT (or at a prompt)",
  terminated: "terminated by SIGTERM",
  // Broker check
  "broker-unreachable": "the broker could not be reached, or its TLS handshake failed",
  "broker-untrusted": "the broker's certificate is not trusted by the stored CA, or names another host",
  "broker-refused-cert": "the broker refused our certificate (unknown CA, expired, revoked)",
  "broker-cert-required": "the broker requires a client certificate and got none",
  "broker-connect-denied": "the broker did not accept the connection (CONNACK)",
  "broker-publish-denied": "the broker did not accept the publish (PUBACK, or dropped it)",
  // Signed messages (sign, verify-signature)
  "message-malformed": "a message to sign or verify is not of its format's shape, or is larger than the limit",
  "signature-invalid": "the signature does not verify: the message or its signature was altered",
  "signature-wrong-key": "the message was signed with another key than the certificate's (another device's)",
  "signer-out-of-date": "the signer's certificate is not valid at the time of the check (expired, or not yet valid)",
  "signer-revoked": "the signer's certificate is revoked by its CA's cached CRL",
  "signer-untrusted": "the signer's certificate does not chain to the CA it is checked against",
} as const;

/** One of {@link REASONS}. */
export type Reason = keyof typeof REASONS;

/** What the library knows about a failure, as plain facts. */
export interface Facts {
  /** The HTTP status the platform answered. */
  status?: number;
  /** What the platform said, in a few words (its own message). */
  platformMessage?: string;
  /** The file or directory concerned. */
  path?: string;
  /** The system error code (ENOENT, EROFS…). */
  errno?: string;
  /** The host concerned (platform or broker). */
  host?: string;
  /** For `usage`: the setting at fault, by its library name (`deviceId`, `uriDomain`…). */
  field?: string;
  /** The fingerprint of a certificate the platform issued and may still hold. */
  fingerprint?: string;
  /** The request may have reached the platform (so it may have issued a certificate). */
  maybeSent?: boolean;
  /** The run's deadline ended the request (or left no time to repeat it). */
  deadlinePassed?: boolean;
  /** The protocol (its canonical name, e.g. `est`) whose reply or rule this is: its plug-in's hints apply. */
  protocol?: string;
  /** EST: the request was a re-enrollment, authenticated by the current certificate. */
  renewing?: boolean;
  /** CMP: the request was signed by the bootstrap certificate (a first enrollment) or the current one (kur), not protected by the shared secret. */
  signedBy?: "bootstrap" | "current";
  /** EST: the server still holds the request for approval (202). */
  pendingApproval?: boolean;
}

/** Options of a {@link CertRetrieverError}. */
export interface ErrorDetails {
  step: Step;
  reason: Reason;
  facts?: Facts;
  cause?: unknown;
  /** Set only by the CLI: what the user can do, naming flags. The library leaves it to the caller. */
  hint?: string;
}

/**
 * The one error family of cert-retriever: what failed (the step), why (a reason from a closed
 * list), plain facts, and the cause. Its message is a single sentence; it never contains a secret.
 */
export class CertRetrieverError extends Error {
  readonly step: Step;
  readonly reason: Reason;
  readonly facts: Facts;
  readonly hint?: string;

  constructor(message: string, details: ErrorDetails) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = "CertRetrieverError";
    this.step = details.step;
    this.reason = details.reason;
    this.facts = details.facts ?? {};
    this.hint = details.hint;
  }
}

/** A usage error: an argument is missing or invalid; `field` names it for the caller's hint. */
export function usageError(message: string, field?: string, hint?: string): CertRetrieverError {
  return new CertRetrieverError(message, { step: "usage", reason: "usage", facts: field ? { field } : {}, hint });
}

/** How messages name a setting: the library by its own name (`tokenFile`); the CLI by its flag (`--token-file`). */
export type SettingNamer = (setting: string) => string;

/** Names settings by their own names: the library's default. */
export const ownNames: SettingNamer = (setting) => setting;

/** `text` with each `{setting}` placeholder named by `name` (a protocol's texts name settings so). */
export function nameSettings(text: string, name: SettingNamer): string {
  return text.replace(/\{([a-z][A-Za-z]*)\}/g, (_, setting: string) => name(setting));
}

/** The message of any thrown value, for wrapping causes into one sentence. */
export function describeCause(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code && err.message.startsWith(`${code}: `)) {
      // Node's file errors: "ENOSPC: no space left on device, write '/path'" -> "no space left on device (ENOSPC)"
      return `${err.message.slice(code.length + 2).replace(/, \w+( '[^']*')*$/, "")} (${code})`;
    }
    if (/^ERR_SSL_|^ERR_TLS_/.test(String(code))) {
      // OpenSSL's text: "…:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../deps/openssl/…:354:" -> "wrong version number"
      const reason = /:error:[0-9A-F]+:[^:]*:[^:]*:([^:]+):/.exec(err.message)?.[1];
      if (reason) return `${reason} (${code})`;
    }
    return code && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}

/** The system error code of a thrown value, if it has one. */
export function errnoOf(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === "string" ? code : undefined;
}
