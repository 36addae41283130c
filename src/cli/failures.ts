import { CertRetrieverError, type Reason, type Step } from "../errors.js";
import { ExitCode } from "../exit-codes.js";

/**
 * The one place that turns a failure into what the CLI does about it: the exit code and the
 * hint, which may name flags and variables. The library only says what failed and why.
 */

/** An exit code, or one per step where the same reason means a different failure per step. */
type ExitRule = ExitCode | { readonly byStep: Partial<Record<Step, ExitCode>>; readonly otherwise: ExitCode };

/** The exit code of a platform's refusal, by the step it stopped. */
const PLATFORM_STEP: ExitRule = {
  byStep: { authenticate: ExitCode.AUTH, "fetch-ca": ExitCode.CA, "submit-csr": ExitCode.CSR, bind: ExitCode.CSR },
  otherwise: ExitCode.CSR,
};

/** Reason -> exit code. The compiler checks that every reason has one. */
export const EXIT_RULES: { readonly [R in Reason]: ExitRule } = {
  usage: ExitCode.USAGE,
  config: ExitCode.CONFIG,
  "missing-credentials": ExitCode.USAGE,
  unreachable: ExitCode.TEMPORARY,
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
  "token-expired": ExitCode.AUTH,
  "permission-denied": ExitCode.AUTH,
  "ca-unknown": ExitCode.CA,
  "pin-mismatch": ExitCode.CA,
  "keygen-failed": ExitCode.KEYGEN,
  "csr-refused": ExitCode.CSR,
  "key-refused": ExitCode.CSR,
  "already-issued": ExitCode.CSR,
  "device-unknown": ExitCode.CSR,
  "entity-password-refused": ExitCode.CSR,
  "bind-refused": ExitCode.CSR,
  "cert-invalid": ExitCode.VALIDATION,
  "san-dropped": ExitCode.VALIDATION,
  "clock-skew": ExitCode.TEMPORARY,
  "storage-failed": ExitCode.STORAGE,
  "storage-unsafe": ExitCode.STORAGE,
  "keychain-unavailable": ExitCode.STORAGE,
  "keychain-addon-missing": ExitCode.STORAGE,
  busy: ExitCode.TEMPORARY,
  "not-enrolled": ExitCode.NOT_ENROLLED,
  interrupted: ExitCode.INTERRUPTED,
  terminated: ExitCode.TERMINATED,
  "broker-unreachable": ExitCode.BROKER_UNREACHABLE,
  "broker-untrusted": ExitCode.BROKER_UNTRUSTED,
  "broker-refused-cert": ExitCode.CERT_REFUSED,
  "broker-cert-required": ExitCode.CERT_REQUIRED,
  "broker-connect-denied": ExitCode.CONNECT_DENIED,
  "broker-publish-denied": ExitCode.PUBLISH_DENIED,
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

/** What to pass for a library setting named in `facts.field`. */
const FIELD_HINTS: Record<string, string> = {
  deviceId: "pass the platform's device id with --device-id (dojot's are hex)",
  fileNames: "pass another --device-id or --ca-name",
  airvantageId: "pass the IMEI or serial number configured in the AirVantage application model as --device-id",
  uriDomain: "pass --uri-domain DOMAIN, the broker's uri_domain (e.g. --uri-domain my.domain.name)",
};

const TEMPORARY = "this is temporary, so run again later (the systemd unit does so by itself on exit 75)";
const MAYBE_SENT = "run again later; if the platform then says the certificate was issued already, reset the device on the platform";

/** Reason -> what the user can do. The compiler checks that every reason is considered. */
const HINTS: { readonly [R in Reason]: (err: CertRetrieverError) => string | undefined } = {
  usage: (e) => (e.facts.field ? FIELD_HINTS[e.facts.field] : undefined),
  config: () => undefined,
  "missing-credentials": () => "pass --password-file FILE or --password-stdin, or set CERT_RETRIEVER_PASSWORD (never on the command line), or use --token-file",
  unreachable: () => `check --platform and the network; ${TEMPORARY}`,
  overloaded: (e) =>
    e.facts.status === 429
        ? "the gateway limits requests (dojot: 5 logins a minute); wait and run again, or log in once with 'cert-retriever login' and use --token-file"
        : `the platform is busy or down; ${TEMPORARY}`,
  deadline: () => `the run's --deadline passed; ${TEMPORARY}`,
  "maybe-sent": () => MAYBE_SENT,
  "tls-not-spoken": (e) =>
    `the server at ${e.facts.host ?? "that address"} does not speak TLS there: use http:// if it is plain HTTP on this machine, or the gateway's HTTPS port in --platform`,
  "tls-untrusted": () => "if the gateway uses a private CA, pass it with --platform-ca FILE; check --platform's host name",
  "client-cert-required": () => "pass the station's certificate and key with --client-cert FILE --client-key FILE",
  "not-a-dojot-platform": () => "check --platform: it must be dojot's gateway (Kong, usually port 8000), e.g. http://dojot.example.com:8000; or choose the API with --api",
  "reply-malformed": () => "check that --platform points at a dojot gateway (Kong, port 8000); nothing was written",
  "reply-altered": () => "the reply was altered on the way or the platform misbehaves; nothing was written",
  "platform-error": () => undefined,
  "auth-refused": () => "check the password given by --password-file, --password-stdin or CERT_RETRIEVER_PASSWORD",
  "user-unknown": () => "check --username (or CERT_RETRIEVER_USERNAME)",
  "user-inactive": () => "ask the platform administrator to activate the user",
  "token-expired": (e) =>
    e.step === "authenticate"
      ? "log in again on the station: cert-retriever login --token-file FILE"
      : "the token was refused (expired or invalid): log in anew (run again, or 'cert-retriever login' for --token-file)",
  "permission-denied": (e) =>
    e.step === "bind"
      ? `the user may issue certificates but not change their owner (permission on PATCH /x509/v1/certificates/)${e.facts.fingerprint ? `; remove the unbound certificate with DELETE /x509/v1/certificates/${e.facts.fingerprint}` : ""}`
      : "the user lacks the permission for this call (dojot's group `user` has ro_ca and wo_sign)",
  "ca-unknown": () => "check --ca-name (dojot's default is IOTmidCA)",
  "pin-mismatch": () => "the platform's CA is not the one you pinned with --ca-fingerprint: check the platform URL and the pin (a mismatch may be an attack); nothing was generated or written",
  "keygen-failed": () => "the crypto provider failed; run again with --debug and report the output",
  "csr-refused": (e) =>
    /SubjectDN/i.test(e.facts.platformMessage ?? "") ? "dojot v0.5-v0.6 accept a CN of letters, digits and spaces only: use the platform's device id (--device-id)" : undefined,
  "key-refused": (e) =>
    /RSA public key length|elliptical curve|public key algorithm/i.test(e.facts.platformMessage ?? "")
      ? "use --key-type ec-p256 (or rsa-2048 and up)"
      : "use an RSA key of 2048 to 8192 bits (--key-type rsa-2048): dojot's CFREE profile accepts nothing else",
  "already-issued": () => "the end entity is not in NEW state: the platform issued a certificate for this device already; reset the device on the platform to issue again",
  "device-unknown": (e) =>
    e.step === "bind"
      ? "create the device on the platform for this user's tenant, then run again"
      : "register the device on the platform first (lab: cert-retriever lab device add)",
  "entity-password-refused": () => "check the end-entity password (--entity-password-file or CERT_RETRIEVER_ENTITY_PASSWORD; dojot uses 'dojot')",
  "bind-refused": (e) => (e.facts.fingerprint ? `bind it on the platform, or remove it with DELETE /x509/v1/certificates/${e.facts.fingerprint}` : undefined),
  "cert-invalid": (e) => (e.step === "check-existing" ? "enroll again (--force) to replace the stored credentials" : "the platform misbehaves: check --ca-name and the platform's certificate profile"),
  "san-dropped": () => "the platform dropped the CSR's subject alternative names: its certificate profile must keep them (EJBCA: enable 'Allow Extension Override' in the certificate profile)",
  "clock-skew": () => "wait for time synchronisation (systemd-timesyncd, chrony, NTP) and run again; nothing was written",
  "storage-failed": (e) =>
    e.facts.errno === "EROFS"
      ? "the file system is mounted read-only: choose a writable --out (e.g. under /var/lib)"
      : e.facts.errno === "ENOSPC" || e.facts.errno === "EDQUOT"
        ? "free some space on the file system of --out, then run again"
        : e.facts.errno === "EACCES" || e.facts.errno === "EPERM"
          ? "run as a user that may write --out, or choose another --out"
          : "check that the output directory (--out) is writable and has free space",
  "storage-unsafe": (e) =>
    /other users/.test(e.message)
      ? `make it writable by its owner only (chmod go-w ${e.facts.path ?? "DIR"}), or choose another --out`
      : "have it owned by root or by the user that runs cert-retriever, or choose another --out",
  "keychain-unavailable": () => "on Linux a Secret Service (gnome-keyring, KWallet) must run on the session bus and be unlocked; or use --store files",
  "keychain-addon-missing": () =>
    "install the package (npm install -g cert-retriever-<version>.tgz), which brings the addon, or put @napi-rs/keyring in a node_modules beside the single file (npm install @napi-rs/keyring); or use --store files",
  busy: () => "wait for the other run to finish and run again",
  "not-enrolled": (e) => (e.step === "verify" ? "enroll first; no broker was contacted" : "enroll first"),
  interrupted: () => undefined,
  terminated: () => undefined,
  "broker-unreachable": (e) => (/TLS/.test(e.message) ? "check --broker (is it an mqtts:// listener?)" : "check --broker and that the broker listens there"),
  "broker-untrusted": (e) => `the stored CA must have signed the broker's certificate, and it must name ${e.facts.host || "the broker's host"} (or pass --servername)`,
  "broker-refused-cert": () => "enroll again, or check that the broker trusts the platform's CA",
  "broker-cert-required": () => "enroll first, and check --out/--device-id",
  "broker-connect-denied": (e) =>
    /closed the connection without a CONNACK/.test(e.message)
      ? "a broker that speaks only MQTT 3.1.1 does this, and so does one that refuses the client id or the certificate's identity: try --mqtt-version auto, or check --profile and --client-id"
      : /did not accept an MQTT 5 connection/.test(e.message)
        ? "the broker speaks only MQTT 3.1.1: pass --mqtt-version 3.1.1 or auto"
        : "the client id or the certificate's identity is not what the broker allows: check --profile and --client-id",
  "broker-publish-denied": (e) =>
    /no (PUBACK|SUBACK) within/.test(e.message)
      ? "the broker did not answer in time: it may be overloaded, or drop what it refuses without a word; try a longer --broker-timeout, and check --profile and --topic"
      : "the broker's ACL does not let this identity publish there (or read it back): check --profile and --topic",
};

/**
 * What the user can do about a failure: the CLI's own hint if it set one; for a request that may
 * have reached the platform, what to do about a certificate it may have issued; else the reason's.
 */
export function hintOf(err: CertRetrieverError): string | undefined {
  return err.hint ?? (err.facts.maybeSent ? MAYBE_SENT : HINTS[err.reason](err));
}

/** A failure as `--json` prints it on stdout. */
export function failureJson(err: CertRetrieverError, exitCode: number): Record<string, unknown> {
  const hint = hintOf(err);
  return {
    ok: false,
    error: {
      step: err.step,
      reason: err.reason,
      exitCode,
      message: err.message,
      ...(hint ? { hint } : {}),
      ...(err.facts.status !== undefined ? { status: err.facts.status } : {}),
      ...(err.facts.platformMessage !== undefined ? { platformMessage: err.facts.platformMessage } : {}),
      ...(err.facts.path !== undefined ? { path: err.facts.path } : {}),
      ...(err.facts.errno !== undefined ? { errno: err.facts.errno } : {}),
      ...(err.facts.fingerprint !== undefined ? { fingerprint: err.facts.fingerprint } : {}),
    },
  };
}

/** A failure that is not a {@link CertRetrieverError} (a bug), as `--json` prints it. */
export function bugJson(message: string): Record<string, unknown> {
  return { ok: false, error: { step: "unknown", reason: "bug", exitCode: ExitCode.UNEXPECTED, message, hint: "this is a bug; run again with --debug and report the output" } };
}

/** A usage error raised by the CLI itself (exit 2), with a hint that may name flags. */
export function usage(message: string, hint?: string, cause?: unknown): CertRetrieverError {
  return new CertRetrieverError(message, { step: "usage", reason: "usage", hint, cause });
}

/** A settings error raised by the CLI itself (exit 3): a file it was pointed at cannot be used. */
export function configError(message: string, hint?: string, cause?: unknown, path?: string): CertRetrieverError {
  return new CertRetrieverError(message, { step: "config", reason: "config", hint, cause, facts: path ? { path } : {} });
}
