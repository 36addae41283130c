/** Where the CLI finds secrets: files, stdin, the environment, systemd credentials, a 0600 config file, a prompt. Never argv. */
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { CertRetrieverError, describeCause } from "../errors.js";
import type { TokenSession } from "../flows/authenticate.js";
import type { PinSource } from "../keys/open.js";
import type { LoginSource } from "../protocols/types.js";
import { type ConfigExtras, checkTrusted } from "./config.js";
import { usage } from "./hints.js";
import { passwordReader, type SecretRead } from "./inputs.js";
import { cliIo } from "./io.js";
import { heldSecret, holdSecret } from "./output.js";
import { ask, askUntil, isInteractive, PROMPT_TRIES, tryAgain } from "./prompts.js";

/** Where an option's value came from (commander's source: cli, env, config, default). */
export type SourceOf = (key: string) => string | undefined;

/** Flags > environment > config file > defaults, as a number to compare. */
export function rank(source: string | undefined): number {
  return { cli: 3, env: 2, config: 1 }[source as "cli"] ?? 0;
}

/** The login flags as commander parses them. */
export interface LoginFlags {
  username?: string;
  passwordFile?: string;
  passwordStdin?: boolean;
  tokenFile?: string;
  nonInteractive?: boolean;
}

/** A systemd credential (`LoadCredential=name:...`), if the unit passed one. */
function credentialPath(name: string): string | undefined {
  const dir = cliIo().env.CREDENTIALS_DIRECTORY;
  return dir ? join(dir, name) : undefined;
}

async function exists(path: string | undefined): Promise<boolean> {
  return (
    path !== undefined &&
    (await stat(path).then(
      () => true,
      () => false,
    ))
  );
}

/**
 * The user's password, read only when the authenticate step runs, from (in order) --password-file,
 * --password-stdin, CERT_RETRIEVER_PASSWORD, the systemd credential `password`, the config file
 * (if 0600), or a masked prompt on a terminal. Never from argv.
 */
async function passwordSource(
  flags: LoginFlags,
  extras: ConfigExtras,
  username: string | (() => string),
  source?: SourceOf,
): Promise<SecretRead> {
  const credential = credentialPath("password");
  const env = cliIo().env.CERT_RETRIEVER_PASSWORD;
  // Precedence: --password-stdin; a password file from a flag or CERT_RETRIEVER_PASSWORD_FILE;
  // CERT_RETRIEVER_PASSWORD; the systemd credential; then the config file's password file or password.
  if (flags.passwordStdin) return passwordReader({ stdin: true });
  const fileFromConfig = flags.passwordFile !== undefined && rank(source?.("passwordFile")) <= 1;
  if (flags.passwordFile && !fileFromConfig) return trustedFile(flags.passwordFile);
  if (env !== undefined) return passwordReader({ env });
  if (await exists(credential)) return passwordReader({ file: credential });
  if (flags.passwordFile) return trustedFile(flags.passwordFile);
  if (extras.password !== undefined) return passwordReader({ env: extras.password });
  if (isInteractive(flags))
    return Object.assign(
      () => ask("password", `Password for ${typeof username === "string" ? username : username()}:`),
      { prompted: true },
    );
  return passwordReader({});
}

/**
 * Whether a user and a password are given beside a token, from somewhere other than a prompt
 * (--password-file, --password-stdin, CERT_RETRIEVER_PASSWORD, the systemd credential `password`,
 * the config file): a run whose token has expired, or is refused, then logs in with them instead.
 */
export async function passwordBesideToken(flags: LoginFlags, extras: ConfigExtras): Promise<boolean> {
  if (flags.username === undefined) return false;
  return (
    Boolean(flags.passwordStdin || flags.passwordFile) ||
    cliIo().env.CERT_RETRIEVER_PASSWORD !== undefined ||
    extras.password !== undefined ||
    (await exists(credentialPath("password")))
  );
}

/**
 * The login of a run: the user from the flag, the environment, the config file or a prompt, and
 * the password from {@link passwordSource}, both read only when the authenticate step runs. When
 * the password is typed at the terminal, a refused one (or an unknown user) is asked for again.
 */
export async function login(
  flags: LoginFlags,
  extras: ConfigExtras,
  source?: SourceOf,
): Promise<LoginSource & { username: () => Promise<string>; password: SecretRead; onToken: (token: string) => void }> {
  let user: string | undefined;
  let askUser = false;
  const username = async () => {
    if (user === undefined || askUser)
      user = await resolveUsername(askUser ? { ...flags, username: undefined } : flags, user);
    askUser = false;
    return user;
  };
  const read = await passwordSource(flags, extras, () => user ?? "", source);
  const prompted = "prompted" in read;
  // Held with the user it goes with: HTTP Basic sends them together, in base64.
  const password = async (signal?: AbortSignal) => {
    const secret = await read(signal);
    holdSecret(secret, user);
    return secret;
  };
  return {
    username,
    password,
    onToken: holdSecret,
    retryLogin: prompted
      ? (err, attempt) => {
          if (attempt >= PROMPT_TRIES) return false;
          tryAgain(err.message, attempt);
          askUser = err.reason === "user-unknown";
          return true;
        }
      : undefined,
  };
}

/** A password file's reader, refusing (when read) a file another user could have written. */
function trustedFile(file: string): SecretRead {
  const read = passwordReader({ file });
  return async (signal) => {
    await checkTrusted(file, "password file");
    return read(signal);
  };
}

/** The username: the flag, the environment, the config file, or a prompt (offering `previous`, else admin), asked again when left empty. */
async function resolveUsername(flags: LoginFlags, previous?: string): Promise<string> {
  const required = (name: string | undefined) => {
    if (!name)
      throw usage(
        "a platform user is required",
        "pass --username or set CERT_RETRIEVER_USERNAME (or use --token-file from 'cert-retriever login')",
      );
    return name;
  };
  if (flags.username !== undefined || !isInteractive(flags)) return required(flags.username);
  return askUntil("Platform user:", required, { default: previous ?? "admin" });
}

/** The token from --token-file (or the systemd credential `token`); its expiry is checked when the authenticate step runs. */
export async function tokenSession(flags: LoginFlags): Promise<TokenSession | undefined> {
  const credential = credentialPath("token");
  const path = flags.tokenFile ?? ((await exists(credential)) ? credential : undefined);
  if (!path) return undefined;
  await checkTrusted(path, "token file");
  let text: string;
  try {
    text = (await readFile(path, "utf8")).trim();
  } catch (err) {
    throw new CertRetrieverError(`cannot read the token file ${path}: ${describeCause(err)}`, {
      cause: err,
      step: "config",
      reason: "config",
      hint: "write it with 'cert-retriever login --token-file FILE'",
    });
  }
  if (!/^[\w-]+\.[\w-]+\.[\w-]*$/.test(text)) {
    throw new CertRetrieverError(`the token file ${path} does not hold a token`, {
      step: "authenticate",
      reason: "token-expired",
      hint: "log in again with 'cert-retriever login'",
    });
  }
  return { jwt: text, source: path };
}

/**
 * A token's PIN, read only when the token asks for a login, from (in order) the URI's
 * `pin-source=` (a file, `file:` or a path), CERT_RETRIEVER_PKCS11_PIN, the systemd credential
 * `pin`, or a masked prompt on a terminal. Never from argv; never printed.
 */
export async function tokenPin(
  uri: { pinSource?: string },
  flags: { nonInteractive?: boolean },
  tokenName: string,
): Promise<PinSource> {
  const what = "token PIN";
  if (uri.pinSource !== undefined) {
    const file = uri.pinSource.replace(/^file:(\/\/)?/, "");
    const read = passwordReader({ file }, what);
    return {
      read: heldSecret(async () => {
        await checkTrusted(file, "PIN file");
        return read();
      }),
      where: `the PIN file ${file}`,
    };
  }
  const env = cliIo().env.CERT_RETRIEVER_PKCS11_PIN;
  if (env !== undefined) return { read: heldSecret(passwordReader({ env }, what)), where: "CERT_RETRIEVER_PKCS11_PIN" };
  const credential = credentialPath("pin");
  if (await exists(credential))
    return { read: heldSecret(passwordReader({ file: credential }, what)), where: "the systemd credential 'pin'" };
  if (isInteractive(flags))
    return {
      read: heldSecret(() => ask("password", `PIN for ${tokenName}:`)),
      where: "the PIN typed",
      // A token locks its PIN after some wrong ones (often 3 to 10): asked again within that, and said when the token counts the last.
      again: (refused, attempt, finalTry) => {
        if (attempt >= PROMPT_TRIES) return false;
        tryAgain(refused.message, attempt, finalTry ? "the token says one more wrong PIN locks it" : undefined);
        return true;
      },
    };
  const missing = new CertRetrieverError(`token failed: no PIN for ${tokenName}`, {
    step: "token",
    reason: "missing-credentials",
    hint: "give it with pin-source=file:/path in --key, CERT_RETRIEVER_PKCS11_PIN, or the systemd credential 'pin' (never on the command line)",
  });
  return { read: () => Promise.reject(missing), where: "nowhere" };
}
