import type { CommandName } from "./options.js";

/** The exit-code table. systemd units and factory scripts depend on these numbers: never renumber. */
export const ExitCode = {
  OK: 0,
  UNEXPECTED: 1,
  USAGE: 2,
  CONFIG: 3,
  AUTH: 10,
  CA: 11,
  KEYGEN: 12,
  CSR: 13,
  VALIDATION: 14,
  STORAGE: 15,
  NOT_ENROLLED: 16,
  NOT_SUPPORTED: 17,
  HOOK_FAILED: 18,
  LOGIN_EXPIRED: 19,
  BROKER_UNREACHABLE: 20,
  BROKER_UNTRUSTED: 21,
  CERT_REFUSED: 22,
  CERT_REQUIRED: 23,
  CONNECT_DENIED: 24,
  PUBLISH_DENIED: 25,
  TOKEN_MODULE: 30,
  TOKEN_MISSING: 31,
  TOKEN_PIN: 32,
  TOKEN_LOCKED: 33,
  TOKEN_FULL: 34,
  TOKEN_KEY_MISSING: 35,
  KEY_IN_TOKEN: 36,
  TOKEN_ERROR: 37,
  SIGNATURE_INVALID: 40,
  SIGNATURE_WRONG_KEY: 41,
  SIGNER_OUT_OF_DATE: 42,
  SIGNER_REVOKED: 43,
  SIGNER_UNTRUSTED: 44,
  MESSAGE_MALFORMED: 45,
  TEMPORARY: 75,
  INTERRUPTED: 130,
  TERMINATED: 143,
} as const;

/** One of the exit codes above. */
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** What each exit code means, for `--help` and the README. */
export const EXIT_CODE_MEANINGS: ReadonlyArray<readonly [ExitCode, string]> = [
  [ExitCode.OK, "success (or valid credentials already present)"],
  [ExitCode.UNEXPECTED, "unexpected error (a bug: please report it with --debug output)"],
  [ExitCode.USAGE, "usage: a flag or argument is missing or invalid"],
  [
    ExitCode.CONFIG,
    "configuration: a file or setting could not be read, or the platform URL is wrong (its host name does not exist, or its path leads to no login)",
  ],
  [ExitCode.AUTH, "authentication: the platform refused the user, password or token"],
  [
    ExitCode.CA,
    "trust: the CA certificate could not be fetched or does not match the pin, or the platform's TLS certificate is not trusted (or it does not speak TLS there)",
  ],
  [ExitCode.KEYGEN, "key generation failed"],
  [
    ExitCode.CSR,
    "the platform rejected the certificate request, or would not bind the issued certificate to the device (nothing was written)",
  ],
  [ExitCode.VALIDATION, "the issued certificate failed validation (nothing was written)"],
  [ExitCode.STORAGE, "the credentials could not be stored (previous ones left intact)"],
  [
    ExitCode.NOT_ENROLLED,
    "verify, export, status: there are no complete stored credentials for this device (enroll first)",
  ],
  [
    ExitCode.NOT_SUPPORTED,
    "register: the platform cannot register a certificate it did not issue (dojot <= v0.6, EJBCA-REST); enroll: the platform would not reset the device's end entity to NEW (EJBCA-REST), or an EST server's /cacerts holds several CA chains and nothing says which",
  ],
  [
    ExitCode.HOOK_FAILED,
    "enroll: the new credentials are stored, but --exec or --reload-unit failed (the previous certificate was not revoked)",
  ],
  [
    ExitCode.LOGIN_EXPIRED,
    "authentication: the platform token has expired (or the platform no longer accepts it) and no password was given to log in again: log in again (cert-retriever login)",
  ],
  [ExitCode.BROKER_UNREACHABLE, "verify: the broker could not be reached"],
  [
    ExitCode.BROKER_UNTRUSTED,
    "verify: the broker's certificate is not trusted by the stored CA (or names another host)",
  ],
  [ExitCode.CERT_REFUSED, "verify: the broker refused our certificate (unknown CA, expired, revoked)"],
  [ExitCode.CERT_REQUIRED, "verify: the broker requires a client certificate and got none"],
  [ExitCode.CONNECT_DENIED, "verify: the broker did not authorise the connection (CONNACK)"],
  [ExitCode.PUBLISH_DENIED, "verify: the broker did not authorise the publish (PUBACK)"],
  [ExitCode.TOKEN_MODULE, "token: the PKCS#11 module cannot be loaded, or this build has no PKCS#11 support"],
  [ExitCode.TOKEN_MISSING, "token: no token matching the --key URI is present"],
  [ExitCode.TOKEN_PIN, "token: the token refused the PIN"],
  [ExitCode.TOKEN_LOCKED, "token: the PIN is locked (too many wrong PINs) or the token is write-protected"],
  [ExitCode.TOKEN_FULL, "token: no room left in the token for the key or certificate"],
  [ExitCode.TOKEN_KEY_MISSING, "token: the token no longer holds the key the stored credentials name (enroll again)"],
  [
    ExitCode.KEY_IN_TOKEN,
    "reserved: no command returns it now (export of a device whose key lives in a token writes its certificate and chain, and says that the key stays in the token)",
  ],
  [ExitCode.TOKEN_ERROR, "token: another PKCS#11 failure (the message names the CKR_ value)"],
  [
    ExitCode.SIGNATURE_INVALID,
    "verify-signature: the signature does not verify (the message or signature was altered)",
  ],
  [ExitCode.SIGNATURE_WRONG_KEY, "verify-signature: the message was signed with another key than the certificate's"],
  [ExitCode.SIGNER_OUT_OF_DATE, "verify-signature: the signer's certificate is expired (or not yet valid)"],
  [ExitCode.SIGNER_REVOKED, "verify-signature: the signer's certificate is revoked (by the cached CRL)"],
  [ExitCode.SIGNER_UNTRUSTED, "verify-signature: the signer's certificate does not chain to the CA"],
  [ExitCode.MESSAGE_MALFORMED, "sign, verify-signature: the message is not of its format's shape, or too large"],
  [
    ExitCode.TEMPORARY,
    "temporary: platform unreachable or overloaded, deadline passed, clock not yet synchronised, another run busy: try again later",
  ],
  [ExitCode.INTERRUPTED, "interrupted (SIGINT); nothing was written"],
  [ExitCode.TERMINATED, "terminated (SIGTERM); nothing was written"],
];

const C = ExitCode;
const BROKER = [
  C.BROKER_UNREACHABLE,
  C.BROKER_UNTRUSTED,
  C.CERT_REFUSED,
  C.CERT_REQUIRED,
  C.CONNECT_DENIED,
  C.PUBLISH_DENIED,
];
const TOKEN = [
  C.TOKEN_MODULE,
  C.TOKEN_MISSING,
  C.TOKEN_PIN,
  C.TOKEN_LOCKED,
  C.TOKEN_FULL,
  C.TOKEN_KEY_MISSING,
  C.TOKEN_ERROR,
];

/** The commands whose exit codes are this table's (check has its own three). */
export type TableCommand = Exclude<CommandName, "check">;

/** The exit codes each command can return, for its --help (check has its own three). */
export const COMMAND_EXIT_CODES: Record<TableCommand, readonly ExitCode[]> = {
  enroll: [
    C.OK,
    C.UNEXPECTED,
    C.USAGE,
    C.CONFIG,
    C.AUTH,
    C.CA,
    C.KEYGEN,
    C.CSR,
    C.VALIDATION,
    C.STORAGE,
    C.NOT_SUPPORTED,
    C.HOOK_FAILED,
    C.LOGIN_EXPIRED,
    ...BROKER,
    ...TOKEN,
    C.TEMPORARY,
    C.INTERRUPTED,
    C.TERMINATED,
  ],
  login: [C.OK, C.UNEXPECTED, C.USAGE, C.CONFIG, C.AUTH, C.CA, C.STORAGE, C.TEMPORARY, C.INTERRUPTED, C.TERMINATED],
  verify: [
    C.OK,
    C.UNEXPECTED,
    C.USAGE,
    C.CONFIG,
    C.STORAGE,
    C.NOT_ENROLLED,
    ...BROKER,
    ...TOKEN,
    C.INTERRUPTED,
    C.TERMINATED,
  ],
  export: [C.OK, C.UNEXPECTED, C.USAGE, C.CONFIG, C.STORAGE, C.NOT_ENROLLED, C.TEMPORARY, C.INTERRUPTED, C.TERMINATED],
  status: [C.OK, C.UNEXPECTED, C.USAGE, C.CONFIG, C.STORAGE, C.NOT_ENROLLED],
  sign: [
    C.OK,
    C.UNEXPECTED,
    C.USAGE,
    C.CONFIG,
    C.VALIDATION,
    C.STORAGE,
    C.NOT_ENROLLED,
    C.NOT_SUPPORTED,
    ...TOKEN,
    C.MESSAGE_MALFORMED,
    C.INTERRUPTED,
    C.TERMINATED,
  ],
  "verify-signature": [
    C.OK,
    C.UNEXPECTED,
    C.USAGE,
    C.CONFIG,
    C.STORAGE,
    C.NOT_ENROLLED,
    C.SIGNATURE_INVALID,
    C.SIGNATURE_WRONG_KEY,
    C.SIGNER_OUT_OF_DATE,
    C.SIGNER_REVOKED,
    C.SIGNER_UNTRUSTED,
    C.MESSAGE_MALFORMED,
  ],
  register: [
    C.OK,
    C.UNEXPECTED,
    C.USAGE,
    C.CONFIG,
    C.AUTH,
    C.CA,
    C.CSR,
    C.VALIDATION,
    C.NOT_SUPPORTED,
    C.LOGIN_EXPIRED,
    C.TEMPORARY,
    C.INTERRUPTED,
    C.TERMINATED,
  ],
};

/** The broker check's codes, as the table says them for verify, with `prefix` for the check's name. */
function brokerMeanings(prefix: string): Partial<Record<ExitCode, string>> {
  return Object.fromEntries(
    EXIT_CODE_MEANINGS.filter(([code]) => (BROKER as readonly ExitCode[]).includes(code)).map(([code, meaning]) => [
      code,
      `${prefix}${meaning.replace(/^verify: /, "")}`,
    ]),
  );
}

/**
 * What a code means for one command, where the table's words (written for every command) would
 * mislead: `verify` never stores anything, so its 15 is a store it could not read.
 */
const COMMAND_MEANINGS: { readonly [K in TableCommand]: Partial<Record<ExitCode, string>> } = {
  enroll: {
    [C.OK]: "success, or valid credentials already present (nothing was asked of the platform)",
    [C.NOT_SUPPORTED]:
      "a renewal on EJBCA-REST needs the end entity reset on the platform first, or an EST server's /cacerts holds several CA chains and nothing says which",
    [C.HOOK_FAILED]:
      "the new credentials are stored, but --exec or --reload-unit failed (the previous certificate was not revoked)",
    ...brokerMeanings("--verify-broker: "),
  },
  login: {
    [C.OK]: "success: the token is written",
    [C.STORAGE]: "the token file could not be written",
  },
  verify: {
    [C.OK]: "success: the broker took the stored identity (and the publish, with a topic)",
    [C.STORAGE]: "the stored credentials could not be read (a directory others can write, no keychain)",
    [C.NOT_ENROLLED]:
      "there are no complete stored credentials for this device (enroll first); no broker was contacted",
    ...brokerMeanings(""),
  },
  export: {
    [C.OK]: "success: the copies are written (of a key in a token: the certificate and chain; the key stays there)",
    [C.STORAGE]:
      "the stored credentials could not be read (a directory others can write, no keychain), or the copies could not be written in --to (earlier copies left intact)",
    [C.NOT_ENROLLED]: "there are no complete stored credentials for this device (enroll first)",
    [C.TEMPORARY]: "another run holds the lock on --to: try again later",
  },
  status: {
    [C.OK]: "success: the stored credentials are described (expired or revoked ones too)",
    [C.STORAGE]: "the stored credentials could not be read (a directory others can write, no keychain)",
    [C.NOT_ENROLLED]: "there are no complete stored credentials for this device (enroll first)",
  },
  sign: {
    [C.OK]: "success: the signed message (or the raw signature) is written",
    [C.VALIDATION]: "the stored certificate does not hold the stored key's public key (enroll again)",
    [C.STORAGE]: "the stored credentials could not be read, or --to could not be written",
    [C.NOT_ENROLLED]: "there are no complete stored credentials for this device (enroll first)",
    [C.NOT_SUPPORTED]: "the key store cannot sign with the stored key",
    [C.MESSAGE_MALFORMED]:
      "the message is not of its format's shape (airvantage: a JSON object of timestamps, not signed yet), or larger than 1 MiB",
  },
  "verify-signature": {
    [C.OK]: "success: the signature is good, the certificate valid now, chained to the CA, not revoked by a cached CRL",
    [C.STORAGE]: "the stored credentials could not be read (a directory others can write, no keychain)",
    [C.NOT_ENROLLED]: "no --cert, and no complete stored credentials for this device",
    [C.MESSAGE_MALFORMED]:
      "the message is not of its format's shape (no signature datapoint, not a compact JWS, raw without --signature), or larger than 1 MiB",
  },
  register: {
    [C.OK]: "success: the certificate is registered and bound to the device (or was already)",
    [C.CSR]: "the platform refused to register the certificate, or to bind it to the device",
    [C.VALIDATION]: "the chain in --cert-chain failed its checks (the device's own certificate first, valid now)",
    [C.NOT_SUPPORTED]: "the platform cannot register a certificate it did not issue (dojot <= v0.6, EJBCA-REST)",
  },
};

/** The codes `command` can return, each with what it means there, for its --help. */
export function commandExitCodes(command: TableCommand): ReadonlyArray<readonly [ExitCode, string]> {
  const meanings = new Map(EXIT_CODE_MEANINGS);
  return COMMAND_EXIT_CODES[command].map((code) => [code, COMMAND_MEANINGS[command][code] ?? meanings.get(code)!]);
}
