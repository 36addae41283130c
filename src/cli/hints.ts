import { CertRetrieverError, type Reason } from "../errors.js";
import { findProtocol } from "../protocols/registry.js";
import { ExitCode } from "./exit-codes.js";
import { renderText } from "./names.js";

export { EXIT_RULES, exitCodeOf, exitCodesOf } from "./exit-rules.js";

/**
 * The one place that turns a failure into what the CLI does about it: the exit code and the
 * hint, which may name flags and variables. The library only says what failed and why.
 */

/** What to pass for a library setting named in `facts.field`. */
const FIELD_HINTS: Record<string, string> = {
  deviceId: "pass the platform's device id with --device-id (dojot's are lower-case hex)",
  fileNames: "pass another --device-id or --ca-name",
  airvantageId: "pass the IMEI or serial number configured in the AirVantage application model as --device-id",
  moscaDeviceId:
    "pass the platform's device id with --device-id (dojot's are lower-case hex, which Mosca takes), or another --profile",
  moscaTenant: "log in as a user of a tenant of letters, digits and '_' only, or use another --profile",
  uriDomain: "pass --uri-domain DOMAIN, the broker's uri_domain (e.g. --uri-domain my.domain.name)",
  key: "--key takes an RFC 7512 URI, e.g. --key 'pkcs11:token=device;object=f60c28?module-path=/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so'",
  pkcs11Module:
    "give module-path= in the --key URI, --pkcs11-module, or PKCS11_MODULE_PATH, e.g. --pkcs11-module /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
  pinValue: "use pin-source=file:/path in the --key URI, CERT_RETRIEVER_PKCS11_PIN, or the systemd credential 'pin'",
  storeCertInToken: "pass --key pkcs11:… with --store-cert-in-token",
  keyKind: "leave --key out, or enroll with it",
  recordedProfile: "pass --profile (and --client-id/--topic), or enroll again to record it anew",
};

/** The install command that keeps PKCS#11 (docs/packaging.md): npm 11 asks for pkcs11js's build to be allowed. */
const INSTALL_WITH_PKCS11 = "sudo npm install -g --allow-scripts=pkcs11js ./cert-retriever-<version>.tgz";
/** Whether this is the self-contained executable (a single executable application), which cannot carry a native addon. */
const inExecutable = (): boolean =>
  (process.getBuiltinModule("node:sea") as typeof import("node:sea") | undefined)?.isSea() === true;
const TEMPORARY = "this is temporary, so run again later (the systemd unit does so by itself on exit 75)";
/** What lets a run with a token log in again by itself. */
const RELOGIN = "--username with --password-file, CERT_RETRIEVER_PASSWORD or the systemd credential 'password'";
const MAYBE_SENT =
  "run again later; if the platform then says the certificate was issued already, reset the device on the platform";

/**
 * dojot's device manager makes device ids of lower-case hex, and finds a device by its id as
 * given: an id with upper-case letters names no device there. Said beside a refusal that names one.
 */
function lowerCaseHint(message: string): string {
  const id = /device '([^']+)'/.exec(message)?.[1];
  return id && id !== id.toLowerCase()
    ? `; dojot's device ids are lower-case hex: if this is one, pass --device-id ${id.toLowerCase()}`
    : "";
}

/** Reason -> what the user can do, for `command` (a hint names only flags that command has). The compiler checks that every reason is considered. */
const HINTS: { readonly [R in Reason]: (err: CertRetrieverError, command: string | undefined) => string | undefined } =
  {
    usage: (e) => (e.facts.field ? FIELD_HINTS[e.facts.field] : undefined),
    config: (e) => (/the recorded profile of .* is damaged/.test(e.message) ? FIELD_HINTS.recordedProfile : undefined),
    "missing-credentials": (_e, command) =>
      `pass --password-file FILE or --password-stdin, or set CERT_RETRIEVER_PASSWORD (never on the command line)${command === "login" ? "" : ", or use --token-file"}`,
    unreachable: () => `check --platform and the network; ${TEMPORARY}`,
    "host-not-found": (e) =>
      `check the host name ${e.facts.host ? `'${e.facts.host}' ` : ""}in --platform (or in HTTPS_PROXY if it is the proxy's): the name server says it does not exist, so running again will not help`,
    "url-path-wrong": () =>
      "give --platform the gateway's URL without a path, e.g. --platform https://dojot.example.com:8000 (dojot's gateway, Kong, answers at the root of its port, usually 8000)",
    overloaded: (e) =>
      e.facts.status === 429
        ? "the gateway limits requests (dojot: 5 logins a minute); wait and run again, or log in once with 'cert-retriever login' and use --token-file"
        : `the platform is busy or down; ${TEMPORARY}`,
    deadline: () => `the run's --deadline passed; ${TEMPORARY}`,
    "maybe-sent": () => MAYBE_SENT,
    "tls-not-spoken": (e) =>
      `the server at ${e.facts.host ?? "that address"} does not speak TLS there: use http:// if it serves plain HTTP (beyond this machine only with --allow-http: the password travels in clear), or the gateway's HTTPS port in --platform`,
    "tls-untrusted": () =>
      "if the gateway uses a private CA, pass it with --platform-ca FILE; check --platform's host name",
    "client-cert-required": () => "pass the station's certificate and key with --client-cert FILE --client-key FILE",
    "not-a-dojot-platform": (_e, command) =>
      `check --platform: it must be dojot's gateway (Kong, usually port 8000), e.g. http://dojot.example.com:8000${command === "enroll" ? "; or choose the API with --api" : ""}`,
    "reply-malformed": () => "check that --platform points at a dojot gateway (Kong, port 8000); nothing was written",
    "reply-altered": () => "the reply was altered on the way or the platform misbehaves; nothing was written",
    "platform-error": () => undefined,
    "auth-refused": () => "check the password given by --password-file, --password-stdin or CERT_RETRIEVER_PASSWORD",
    "user-unknown": () => "check --username (or CERT_RETRIEVER_USERNAME)",
    "user-inactive": () => "ask the platform administrator to activate the user",
    "token-expired": (e) =>
      /after logging in again$/.test(e.message)
        ? "the gateway refuses even the token its own login just gave (a gateway in front of another platform's login, or the platform's clock far off): check --platform"
        : e.step === "authenticate"
          ? `log in again on the station (cert-retriever login --token-file FILE) and hand the device the new token, or give it a password too (${RELOGIN}), with which it logs in again by itself; if this device's clock is wrong, synchronise it first`
          : `the platform refused the token (expired or invalid): log in again with 'cert-retriever login --token-file FILE', or give a password too (${RELOGIN}), with which a run logs in again by itself`,
    "permission-denied": (e) =>
      e.step === "bind"
        ? "the user may issue certificates but not change their owner (permission on PATCH /x509/v1/certificates/)"
        : "the user lacks the permission for this call (dojot's group `user` has ro_ca and wo_sign)",
    "ca-unknown": () => "check --ca-name (dojot's default is IOTmidCA)",
    "pin-mismatch": () =>
      "the platform's CA is not the one you pinned with --ca-fingerprint: check the platform URL and the pin (a mismatch may be an attack); nothing was generated or written",
    "keygen-failed": () => "the crypto provider failed; run again with --debug and report the output",
    "csr-refused": (e) =>
      /SubjectDN/i.test(e.facts.platformMessage ?? "")
        ? "dojot v0.5-v0.6 accept a CN of letters, digits and spaces only: use the platform's device id (--device-id)"
        : undefined,
    "key-refused": (e) =>
      /RSA public key length|elliptical curve|public key algorithm/i.test(e.facts.platformMessage ?? "")
        ? "use --key-type ec-p256 (or rsa-2048 and up)"
        : "use an RSA key of 2048 to 8192 bits (--key-type rsa-2048): dojot's CFREE profile accepts nothing else",
    "already-issued": () =>
      "the end entity is not in NEW state: the platform issued a certificate for this device already; reset the device on the platform to issue again",
    "device-unknown": (e) => {
      const create =
        e.step === "bind" || e.step === "register"
          ? "create the device on the platform for this user's tenant, then run again"
          : "create the device on the platform first (dojot's device manager makes its end entity), then run again";
      return `${create}${lowerCaseHint(e.message)}`;
    },
    "entity-password-refused": () => undefined,
    "reset-refused": () =>
      "reset the device's end entity to NEW on the platform by hand (or give the user the permission to), then run again; the stored credentials stay in use until then",
    "bind-refused": () => "bind it to the device on the platform",
    "ca-not-trusted": () =>
      "have the platform trust the root CA (POST /x509/v1/trusted-cas with its caPem), then put that root CA last in --cert-chain or pass its fingerprint with --root-ca-fingerprint",
    "already-registered": (e) =>
      `remove it on the platform (DELETE /x509/v1/certificates/${e.facts.fingerprint ?? "<fingerprint>"}) if it is to be registered anew, or bind it to this device with PATCH {"belongsTo": {"device": ID}}`,
    "registration-refused": (e) =>
      /chain of trust/i.test(e.facts.platformMessage ?? "")
        ? "--cert-chain must hold the device certificate first, then its intermediate CAs, all issued under the trusted root CA"
        : undefined,
    "not-supported": () =>
      "register certificates on dojot v0.7 or later (x509-identity-mgmt); on older platforms use 'cert-retriever enroll' for a certificate the platform issues",
    "scep-weak-crypto": () =>
      "have the SCEP server offer AES and SHA-256; if it cannot be upgraded, pass --scep-crypto legacy to speak its DES or 3DES and SHA-1 or MD5",
    "hook-failed": () =>
      "the new credentials are in place: fix the command (--exec) or the unit (--reload-unit) and run it by hand; the previous certificate was kept unrevoked so that what still uses it keeps working",
    "cert-invalid": (e, command) =>
      command === "register"
        ? "--cert-chain must start with the device's own certificate (not a CA), followed by its CA certificates"
        : e.step === "check-existing"
          ? "enroll again (--force) to replace the stored credentials"
          : "the platform misbehaves: check --ca-name and the platform's certificate profile",
    "cert-out-of-date": (e, command) =>
      command === "register"
        ? "have the certificate's CA issue a new one (or enroll for one the platform issues); if it should be valid now, check this device's clock"
        : e.step === "check-existing"
          ? "enroll again to replace the stored credentials; if they should be valid, check the device clock"
          : "check the device clock (and the platform's); if both are right, the platform issued a certificate that is not valid now",
    "san-dropped": () =>
      "the platform dropped the CSR's subject alternative names: its certificate profile must keep them (EJBCA: enable 'Allow Extension Override' in the certificate profile)",
    "clock-skew": () =>
      "wait for time synchronisation (systemd-timesyncd, chrony, NTP) and run again; nothing was written",
    "storage-failed": (e, command) => {
      // export writes its copies in --to; every other command writes in --out.
      const dir = command === "export" ? "--to" : "--out";
      return e.facts.errno === "EROFS"
        ? `the file system is mounted read-only: choose a writable ${dir} (e.g. under /var/lib)`
        : e.facts.errno === "ENOSPC" || e.facts.errno === "EDQUOT"
          ? `free some space on the file system of ${dir}, then run again`
          : e.facts.errno === "EACCES" || e.facts.errno === "EPERM"
            ? `run as a user that may write ${dir}, or choose another ${dir}`
            : `check that the output directory (${dir}) is writable and has free space`;
    },
    "storage-unsafe": (e, command) => {
      const other = command === "login" ? "--token-file" : command === "export" ? "--to or --out" : "--out";
      return /other users can write/.test(e.message)
        ? `make it writable by its owner only (chmod go-w ${e.facts.path ?? "DIR"}), or choose another ${other}`
        : /symbolic link|too many symbolic links/.test(e.message)
          ? `replace the link by the directory or file itself, or choose another ${other}`
          : `have ${e.facts.path ?? "it"} owned by root or by the user that runs cert-retriever, or choose another ${other}`;
    },
    "keychain-unavailable": () =>
      "on Linux a Secret Service (gnome-keyring, KWallet) must run on the session bus and be unlocked; or use --store files",
    "keychain-addon-missing": () =>
      inExecutable()
        ? "the self-contained executable cannot carry @napi-rs/keyring, a native addon: install the Debian package (cert-retriever_<version>_<arch>.deb), which brings it; or use --store files"
        : "install the package (npm install -g cert-retriever-<version>.tgz), which brings the addon, or put @napi-rs/keyring in a node_modules beside the single file (npm install @napi-rs/keyring); or use --store files",
    busy: () => "wait for the other run to finish and run again",
    "not-enrolled": (e) =>
      /was interrupted/.test(e.message)
        ? `run enroll (it finishes or undoes the write first)${e.step === "verify" ? "; no broker was contacted" : ""}`
        : e.step === "verify"
          ? "enroll first; no broker was contacted"
          : e.step === "export"
            ? "enroll first, or name where the device's credentials are with --out and --store (as enroll was given them)"
            : "enroll first",
    "pkcs11-unavailable": (e) =>
      inExecutable()
        ? "the self-contained executable cannot carry pkcs11js, a native addon: install the Debian package (cert-retriever_<version>_<arch>.deb), which brings it, or put pkcs11js in a node_modules beside the executable (npm install pkcs11js@2 there)"
        : /pkcs11\.node/.test(e.message)
          ? `pkcs11js is installed but was never built (npm ran without its install script, e.g. with --ignore-scripts): install the package again with g++, make and python3 present (${INSTALL_WITH_PKCS11})`
          : `install the package with g++, make and python3 present (${INSTALL_WITH_PKCS11}), which builds pkcs11js; the single file needs pkcs11js in a node_modules beside it (npm install pkcs11js@2 there)`,
    "pkcs11-module-untrusted": (e) =>
      `have ${e.facts.path ?? "it"} owned by root and writable by no one else (chown root, chmod go-w), or name the token with --key, whose module-path= is trusted as given`,
    "pkcs11-module-missing": () =>
      "give the module's path with module-path= in --key, --pkcs11-module or PKCS11_MODULE_PATH (e.g. /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so)",
    "token-missing": () =>
      "insert or initialize the token, or fix token= in --key (pkcs11-tool --module MODULE --list-token-slots shows what is present)",
    "token-pin-refused": () =>
      "check the PIN in pin-source=, CERT_RETRIEVER_PKCS11_PIN or the systemd credential 'pin'; each wrong try brings the token closer to locking",
    "token-locked": () =>
      "unlock the token with its security officer PIN (e.g. pkcs11-tool --init-pin --login --login-type so), or use another token",
    "token-full": () => "free room in the token (remove keys or certificates no longer used), or use another token",
    "token-key-missing": (e) =>
      e.step === "generate-key"
        ? "check id= (and object=) in --key against the token's keys (pkcs11-tool --module MODULE --login --list-objects --type privkey), or leave id= out to make a new key"
        : e.facts.field === "clientKey"
          ? "check id= (and object=) in --client-key against the token's keys (pkcs11-tool --module MODULE --login --list-objects --type privkey): it names the key made at manufacturing for --client-cert"
          : "enroll again to make a new key in the token",
    "token-error": () => undefined,
    "key-in-token": () =>
      "the key never leaves the token: point programs at its pkcs11: URI (the .key.uri file) through OpenSSL's pkcs11 engine",
    interrupted: () => undefined,
    terminated: () => undefined,
    "broker-unreachable": (e) =>
      /TLS/.test(e.message)
        ? "check --broker (is it an mqtts:// listener?)"
        : "check --broker and that the broker listens there",
    "broker-untrusted": (e) =>
      `the stored CA must have signed the broker's certificate, and it must name ${e.facts.host || "the broker's host"} (or pass --servername)`,
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
    "message-malformed": (_e, command) =>
      `check --format and the message given by --in (or stdin): docs/signing.md shows each format${command === "verify-signature" ? "; a raw signature needs the message and --signature FILE" : ""}`,
    "signature-invalid": () =>
      "the message or its signature changed after it was signed: do not trust its content; if it is genuine, check --format",
    "signature-wrong-key": () =>
      "another key signed it: check --device-id (or --cert): the message comes from another device, or the device's key was replaced (verify with its current certificate)",
    "signer-out-of-date": () =>
      "the device must enroll again (cert-retriever enroll) before its messages are trusted; if the certificate should be valid now, check this machine's clock",
    "signer-revoked": () =>
      "the device's certificate was revoked: do not trust its messages; the device must enroll again for a new one",
    "signer-untrusted": () =>
      "give the CA chain that issued the signer's certificate with --ca FILE (or after the certificate in --cert), or check that the certificate is the device's",
  };

/**
 * What the user can do about a failure of `command`: the CLI's own hint if it set one; for a
 * request that may have reached the platform, what to do about a certificate it may have issued;
 * else the reason's. A certificate the platform issued and may still hold is named, for removal.
 */
export function hintOf(err: CertRetrieverError, command?: string): string | undefined {
  const hint =
    err.hint ?? (err.facts.maybeSent ? MAYBE_SENT : (protocolHint(err, command) ?? HINTS[err.reason](err, command)));
  const fingerprint = err.step === "bind" ? err.facts.fingerprint : undefined;
  if (!fingerprint || hint?.includes("DELETE")) return hint;
  const removal = `remove the unbound certificate with DELETE /x509/v1/certificates/${fingerprint}`;
  return hint ? `${hint}; ${removal}` : removal;
}

/** The hint of the protocol whose rule or reply this is (`facts.protocol`), its settings named by their flags. */
function protocolHint(err: CertRetrieverError, command: string | undefined): string | undefined {
  const text =
    err.facts.protocol === undefined
      ? undefined
      : findProtocol(err.facts.protocol)?.hints?.[err.reason]?.(err, command);
  return text === undefined ? undefined : renderText(text);
}

/** The commands whose output `--json` shapes (docs/cli-output.schema.json): `command` in every object. */
const JSON_COMMANDS: ReadonlySet<string> = new Set([
  "enroll",
  "login",
  "check",
  "status",
  "verify",
  "export",
  "register",
  "sign",
  "verify-signature",
]);

/** The `command` of a --json object: the command that ran, or null when none of them did (an unknown command). */
function jsonCommand(command: string | undefined): string | null {
  return command !== undefined && JSON_COMMANDS.has(command) ? command : null;
}

/** A failure of `command` as `--json` prints it on stdout: `ok`, `command`, then the error object. */
export function failureJson(err: CertRetrieverError, exitCode: number, command?: string): Record<string, unknown> {
  const hint = hintOf(err, command);
  return {
    ok: false,
    command: jsonCommand(command),
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
export function bugJson(
  message: string,
  exitCode: number = ExitCode.UNEXPECTED,
  command?: string,
): Record<string, unknown> {
  return {
    ok: false,
    command: jsonCommand(command),
    error: {
      step: "unknown",
      reason: "bug",
      exitCode,
      message,
      hint: "this is a bug; run again with --debug and report the output",
    },
  };
}

/** A usage error raised by the CLI itself (exit 2), with a hint that may name flags. */
export function usage(message: string, hint?: string, cause?: unknown): CertRetrieverError {
  return new CertRetrieverError(message, { step: "usage", reason: "usage", hint, cause });
}

/** A settings error raised by the CLI itself (exit 3): a file it was pointed at cannot be used. */
export function configError(message: string, hint?: string, cause?: unknown, path?: string): CertRetrieverError {
  return new CertRetrieverError(message, {
    step: "config",
    reason: "config",
    hint,
    cause,
    facts: path ? { path } : {},
  });
}
