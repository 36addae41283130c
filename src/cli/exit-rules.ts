import type { CertRetrieverError, Reason, Step } from "../errors.js";
import { ExitCode } from "./exit-codes.js";

/**
 * The CLI's exit code for each failure reason: one exhaustive mapping (the compiler checks that
 * every reason has one), so that the documented numbers, which systemd units and factory scripts
 * depend on, are decided in one place. The library's errors carry no exit code.
 */

/** An exit code, or one per step where the same reason means a different failure per step. */
type ExitRule = ExitCode | { readonly byStep: Partial<Record<Step, ExitCode>>; readonly otherwise: ExitCode };

/** The exit code of a platform's refusal, by the step it stopped. */
const PLATFORM_STEP: ExitRule = {
  byStep: {
    authenticate: ExitCode.AUTH,
    "fetch-ca": ExitCode.CA,
    "submit-csr": ExitCode.CSR,
    bind: ExitCode.CSR,
    register: ExitCode.CSR,
  },
  otherwise: ExitCode.CSR,
};

/** Reason -> exit code. The compiler checks that every reason has one. */
export const EXIT_RULES: { readonly [R in Reason]: ExitRule } = {
  usage: ExitCode.USAGE,
  config: ExitCode.CONFIG,
  "missing-credentials": ExitCode.USAGE,
  unreachable: ExitCode.TEMPORARY,
  "host-not-found": ExitCode.CONFIG,
  "url-path-wrong": ExitCode.CONFIG,
  overloaded: ExitCode.TEMPORARY,
  deadline: ExitCode.TEMPORARY,
  "maybe-sent": ExitCode.TEMPORARY,
  "tls-not-spoken": ExitCode.CA,
  "tls-untrusted": ExitCode.CA,
  "client-cert-required": ExitCode.AUTH,
  "not-a-dojot-platform": PLATFORM_STEP,
  "reply-malformed": PLATFORM_STEP,
  "reply-altered": { byStep: { "fetch-ca": ExitCode.CA }, otherwise: ExitCode.VALIDATION },
  "platform-error": PLATFORM_STEP,
  "auth-refused": ExitCode.AUTH,
  "user-unknown": ExitCode.AUTH,
  "user-inactive": ExitCode.AUTH,
  "token-expired": ExitCode.LOGIN_EXPIRED,
  "permission-denied": ExitCode.AUTH,
  "ca-unknown": ExitCode.CA,
  "pin-mismatch": ExitCode.CA,
  "keygen-failed": ExitCode.KEYGEN,
  "csr-refused": ExitCode.CSR,
  "key-refused": ExitCode.CSR,
  "already-issued": ExitCode.CSR,
  "device-unknown": ExitCode.CSR,
  "entity-password-refused": ExitCode.CSR,
  "reset-refused": ExitCode.NOT_SUPPORTED,
  "bind-refused": ExitCode.CSR,
  "ca-not-trusted": ExitCode.CSR,
  "already-registered": ExitCode.CSR,
  "registration-refused": ExitCode.CSR,
  "not-supported": ExitCode.NOT_SUPPORTED,
  "scep-weak-crypto": ExitCode.NOT_SUPPORTED,
  "hook-failed": ExitCode.HOOK_FAILED,
  "cert-invalid": ExitCode.VALIDATION,
  "cert-out-of-date": ExitCode.VALIDATION,
  "san-dropped": ExitCode.VALIDATION,
  "clock-skew": ExitCode.TEMPORARY,
  "storage-failed": ExitCode.STORAGE,
  "storage-unsafe": ExitCode.STORAGE,
  "keychain-unavailable": ExitCode.STORAGE,
  "keychain-addon-missing": ExitCode.STORAGE,
  busy: ExitCode.TEMPORARY,
  "not-enrolled": ExitCode.NOT_ENROLLED,
  "pkcs11-unavailable": ExitCode.TOKEN_MODULE,
  "pkcs11-module-missing": ExitCode.TOKEN_MODULE,
  "pkcs11-module-untrusted": ExitCode.TOKEN_MODULE,
  "token-missing": ExitCode.TOKEN_MISSING,
  "token-pin-refused": ExitCode.TOKEN_PIN,
  "token-locked": ExitCode.TOKEN_LOCKED,
  "token-full": ExitCode.TOKEN_FULL,
  "token-key-missing": ExitCode.TOKEN_KEY_MISSING,
  "token-error": ExitCode.TOKEN_ERROR,
  "key-in-token": ExitCode.KEY_IN_TOKEN,
  interrupted: ExitCode.INTERRUPTED,
  terminated: ExitCode.TERMINATED,
  "broker-unreachable": ExitCode.BROKER_UNREACHABLE,
  "broker-untrusted": ExitCode.BROKER_UNTRUSTED,
  "broker-refused-cert": ExitCode.CERT_REFUSED,
  "broker-cert-required": ExitCode.CERT_REQUIRED,
  "broker-connect-denied": ExitCode.CONNECT_DENIED,
  "broker-publish-denied": ExitCode.PUBLISH_DENIED,
  "message-malformed": ExitCode.MESSAGE_MALFORMED,
  "signature-invalid": ExitCode.SIGNATURE_INVALID,
  "signature-wrong-key": ExitCode.SIGNATURE_WRONG_KEY,
  "signer-out-of-date": ExitCode.SIGNER_OUT_OF_DATE,
  "signer-revoked": ExitCode.SIGNER_REVOKED,
  "signer-untrusted": ExitCode.SIGNER_UNTRUSTED,
};

/** The exit codes a reason can give, for documentation and tests. */
export function exitCodesOf(reason: Reason): ExitCode[] {
  const rule = EXIT_RULES[reason];
  return typeof rule === "number" ? [rule] : [...new Set([...Object.values(rule.byStep), rule.otherwise])];
}

/** The exit code of a failure. */
export function exitCodeOf(err: CertRetrieverError): ExitCode {
  const rule = EXIT_RULES[err.reason];
  return typeof rule === "number" ? rule : (rule.byStep[err.step] ?? rule.otherwise);
}
