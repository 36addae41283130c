import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { CertRetrieverError, describeCause } from "../errors.js";
import type { HttpClient, RetryInfo } from "../transport/http.js";
import type { LoginSource } from "../flows/authenticate.js";
import type { Session } from "../protocols/types.js";
import type { CredentialStore } from "../store/types.js";
import { checkTrusted, type ConfigExtras } from "./config.js";
import { usage } from "./failures.js";
import { checkDeviceId, checkFileName, checkPlatformUrl, checkStoreNames, parseCount, parseDuration, passwordReader, readPemFile } from "./inputs.js";
import { heldSecret, holdSecret, say } from "./output.js";

/** The shared options as commander parses them (see options.ts). */
export interface CommonFlags {
  platform?: string;
  username?: string;
  passwordFile?: string;
  passwordStdin?: boolean;
  tokenFile?: string;
  platformCa?: string;
  clientCert?: string;
  clientKey?: string;
  allowHttp?: boolean;
  deadline: string;
  retries: string;
  requestTimeout: string;
  deviceId?: string;
  deviceIdFile?: string;
  caName: string;
  caFingerprint?: string;
  out: string;
  store: string;
  renewBefore: string;
  revocation: "auto" | "distribution-points" | "off";
  json?: boolean;
  nonInteractive?: boolean;
  config?: string;
}

/** Prompts only when asked for, on a terminal (stdin and stderr), and never with --non-interactive. */
export function isInteractive(flags: { nonInteractive?: boolean }): boolean {
  return !flags.nonInteractive && Boolean(process.stdin.isTTY) && Boolean(process.stderr.isTTY);
}

/** Asks on the terminal (stderr, so stdout stays clean for --json); Ctrl-C is exit 130. The prompt module loads only here. */
export async function ask(kind: "input" | "password", message: string, defaultValue?: string): Promise<string> {
  // Inquirer's prompts one by one (the @inquirer/prompts bundle would drag in the editor prompt and iconv-lite).
  const [{ default: input }, { default: password }] = await Promise.all([import("@inquirer/input"), import("@inquirer/password")]);
  const context = { output: process.stderr };
  try {
    const answer =
      kind === "password"
        ? await password({ message, mask: "*", validate: (v) => v.length > 0 || "the password is required" }, context)
        : await input({ message, default: defaultValue, required: true }, context);
    return answer.trim() && kind === "input" ? answer.trim() : answer;
  } catch (err) {
    if ((err as Error).name === "ExitPromptError" || (err as Error).name === "AbortPromptError") {
      throw new CertRetrieverError("interrupted at the prompt; nothing was written", { step: "usage", reason: "interrupted" });
    }
    throw err;
  }
}

/** The platform URL: the flag, the environment, the config file, or (on a terminal) a prompt. */
export async function resolvePlatformUrl(flags: CommonFlags): Promise<URL> {
  const value = flags.platform ?? (isInteractive(flags) ? await ask("input", "Platform URL (dojot gateway):", "https://") : undefined);
  return checkPlatformUrl(value, Boolean(flags.allowHttp), say);
}

/** Where an option's value came from (commander's source: cli, env, config, default). */
export type SourceOf = (key: string) => string | undefined;

/** Flags > environment > config file > defaults, as a number to compare. */
function rank(source: string | undefined): number {
  return { cli: 3, env: 2, config: 1 }[source as "cli"] ?? 0;
}

/** The device id: --device-id or --device-id-file, whichever was given at the higher layer, or (on a terminal) a prompt. */
export async function resolveDeviceId(flags: CommonFlags, source?: SourceOf): Promise<string> {
  const fileWins = flags.deviceIdFile !== undefined && (flags.deviceId === undefined || rank(source?.("deviceIdFile")) > rank(source?.("deviceId")));
  if (flags.deviceId !== undefined && !fileWins) return checkDeviceId(flags.deviceId);
  if (flags.deviceIdFile) {
    let text: string;
    try {
      text = await readFile(flags.deviceIdFile, "utf8");
    } catch (err) {
      throw new CertRetrieverError(`cannot read --device-id-file ${flags.deviceIdFile}: ${describeCause(err)}`, {
      cause: err,
        step: "config",
        reason: "config",
        hint: "check the path given to --device-id-file",
      });
    }
    return checkDeviceId(text.split("\n")[0]!.trim());
  }
  return checkDeviceId(isInteractive(flags) ? await ask("input", "Device id:") : undefined);
}

/** The output directory must be a directory if it exists. */
export async function checkOutDir(out: string): Promise<void> {
  const info = await stat(out).catch(() => undefined);
  if (info && !info.isDirectory()) throw usage(`--out ${out} exists and is not a directory`);
}

/** The store chosen with --store. The keychain module loads only when chosen. */
export async function makeStore(flags: CommonFlags, deviceId: string): Promise<CredentialStore> {
  await checkOutDir(flags.out);
  checkFileName(flags.caName, "--ca-name", "the CA's name becomes <out>/<ca-name>.crt");
  await checkStoreNames(deviceId, flags.caName);
  if (flags.store === "keychain") {
    const { KeychainStore } = await import("../store/keychain-store.js");
    return new KeychainStore(deviceId, flags.caName, flags.out);
  }
  const { FilesStore } = await import("../store/files-store.js");
  return new FilesStore(flags.out, deviceId, flags.caName);
}

/** Checks --ca-fingerprint's form (before any request). */
export async function checkPinFlag(flags: CommonFlags): Promise<void> {
  const { normalizeFingerprint } = await import("../flows/pin.js");
  if (flags.caFingerprint !== undefined && !normalizeFingerprint(flags.caFingerprint)) {
    throw usage(`--ca-fingerprint '${flags.caFingerprint}' is not a SHA-256 fingerprint`, "give it as sha256:<64 hex digits> (colons allowed), as the last run printed it");
  }
}

/** The HTTP client from the network options; retries are reported and collected. */
export async function makeHttp(flags: CommonFlags, startedAt: number, signal: AbortSignal, retries: RetryInfo[]): Promise<HttpClient> {
  const deadlineMs = parseDuration(flags.deadline, "--deadline");
  const attempts = parseCount(flags.retries, "--retries", 0, 100) + 1;
  const requestTimeout = parseDuration(flags.requestTimeout, "--request-timeout");
  if (Boolean(flags.clientCert) !== Boolean(flags.clientKey)) throw usage("--client-cert and --client-key go together");
  const tls = {
    ca: flags.platformCa ? [await readPemFile(flags.platformCa, "--platform-ca", /-----BEGIN CERTIFICATE-----/)] : [],
    cert: flags.clientCert ? await readPemFile(flags.clientCert, "--client-cert", /-----BEGIN CERTIFICATE-----/) : undefined,
    key: flags.clientKey ? await readPemFile(flags.clientKey, "--client-key", /-----BEGIN ([A-Z]+ )?PRIVATE KEY-----/) : undefined,
  };
  try {
    // Refuse unusable TLS material now (exit 3), not later as a network failure that is retried.
    const { createSecureContext } = await import("node:tls");
    createSecureContext({ ca: tls.ca.length ? tls.ca : undefined, cert: tls.cert, key: tls.key });
  } catch (err) {
    throw new CertRetrieverError(`the TLS files given to --platform-ca, --client-cert or --client-key cannot be used: ${describeCause(err)}`, {
      cause: err,
      step: "config",
      reason: "config",
      hint: "check that --client-key is the unencrypted PEM key of --client-cert",
    });
  }
  const { HttpClient } = await import("../transport/http.js");
  return new HttpClient({
    timeouts: { connect: Math.min(10_000, requestTimeout), headers: requestTimeout, body: requestTimeout },
    attempts,
    deadline: startedAt + deadlineMs,
    tls,
    signal,
    onRetry: (info) => {
      retries.push(info);
      say(`retry: ${info.step} attempt ${info.attempt} of ${info.attempts} failed (${info.reason}); trying again in ${(info.waitMs / 1000).toFixed(1)} s`);
    },
  });
}

/** A systemd credential (`LoadCredential=name:...`), if the unit passed one. */
export function credentialPath(name: string): string | undefined {
  const dir = process.env.CREDENTIALS_DIRECTORY;
  return dir ? join(dir, name) : undefined;
}

async function exists(path: string | undefined): Promise<boolean> {
  return path !== undefined && (await stat(path).then(() => true, () => false));
}

/**
 * The user's password, read only when the authenticate step runs, from (in order) --password-file,
 * --password-stdin, CERT_RETRIEVER_PASSWORD, the systemd credential `password`, the config file
 * (if 0600), or a masked prompt on a terminal. Never from argv.
 */
export async function passwordSource(flags: CommonFlags, extras: ConfigExtras, username: string | (() => string), source?: SourceOf): Promise<() => Promise<string>> {
  const credential = credentialPath("password");
  const env = process.env.CERT_RETRIEVER_PASSWORD;
  // Precedence: --password-stdin; a password file from a flag or CERT_RETRIEVER_PASSWORD_FILE;
  // CERT_RETRIEVER_PASSWORD; the systemd credential; then the config file's password file or password.
  if (flags.passwordStdin) return passwordReader({ stdin: true });
  const fileFromConfig = flags.passwordFile !== undefined && rank(source?.("passwordFile")) <= 1;
  if (flags.passwordFile && !fileFromConfig) return trustedFile(flags.passwordFile);
  if (env !== undefined) return passwordReader({ env });
  if (await exists(credential)) return passwordReader({ file: credential });
  if (flags.passwordFile) return trustedFile(flags.passwordFile);
  if (extras.password !== undefined) return passwordReader({ env: extras.password });
  if (isInteractive(flags)) return Object.assign(() => ask("password", `Password for ${typeof username === "string" ? username : username()}:`), { prompted: true });
  return passwordReader({});
}

/** The most times a terminal asks for the user and password before the run gives up. */
export const LOGIN_TRIES = 3;

/**
 * The login of a run: the user from the flag, the environment, the config file or a prompt, and
 * the password from {@link passwordSource}, both read only when the authenticate step runs. When
 * the password is typed at the terminal, a refused one (or an unknown user) is asked for again.
 */
export async function login(flags: CommonFlags, extras: ConfigExtras, source?: SourceOf): Promise<LoginSource & { username: () => Promise<string> }> {
  let user: string | undefined;
  let askUser = false;
  const username = async () => {
    if (user === undefined || askUser) user = await resolveUsername(askUser ? { ...flags, username: undefined } : flags, user);
    askUser = false;
    return user;
  };
  const read = await passwordSource(flags, extras, () => user ?? "", source);
  const prompted = "prompted" in read;
  const password = heldSecret(read);
  return {
    username,
    password,
    retryLogin: prompted
      ? (err, attempt) => {
          if (attempt >= LOGIN_TRIES) return false;
          say(`cert-retriever: ${err.message}`);
          say(`  try again (${attempt + 1} of ${LOGIN_TRIES})`);
          askUser = err.reason === "user-unknown";
          return true;
        }
      : undefined,
  };
}

/** A password file's reader, refusing (when read) a file another user could have written. */
function trustedFile(file: string): () => Promise<string> {
  const read = passwordReader({ file });
  return async () => {
    await checkTrusted(file, "password file");
    return read();
  };
}

/** The username: the flag, the environment, the config file, or a prompt (offering `previous`, else admin). */
export async function resolveUsername(flags: CommonFlags, previous?: string): Promise<string> {
  const name = flags.username ?? (isInteractive(flags) ? await ask("input", "Platform user:", previous ?? "admin") : undefined);
  if (!name) throw usage("a platform user is required", "pass --username or set CERT_RETRIEVER_USERNAME (or use --token-file from 'cert-retriever login')");
  return name;
}

/**
 * The session from --token-file (or the systemd credential `token`).
 */
export async function tokenSession(flags: CommonFlags): Promise<{ session: Session; source: string } | undefined> {
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
  const { sessionFromJwt } = await import("../protocols/types.js");
  if (!/^[\w-]+\.[\w-]+\.[\w-]*$/.test(text)) {
    throw new CertRetrieverError(`the token file ${path} does not hold a token`, { step: "authenticate", reason: "token-expired", hint: "log in again with 'cert-retriever login'" });
  }
  // Its expiry is checked by the authenticate step, so a run with nothing to do needs no fresh token.
  return { session: sessionFromJwt(text), source: path };
}

/** An abort signal raised by SIGINT or SIGTERM, whose reason is the error (exit 130 or 143) to report. */
export function onInterrupt(): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const handlers = (["SIGINT", "SIGTERM"] as const).map((sig) => {
    const handler = () =>
      controller.abort(
        new CertRetrieverError(`interrupted by ${sig}; nothing was written and the previous credentials are unchanged`, {
          step: "usage",
          reason: sig === "SIGINT" ? "interrupted" : "terminated",
        }),
      );
    process.on(sig, handler);
    return [sig, handler] as const;
  });
  return { signal: controller.signal, dispose: () => handlers.forEach(([sig, h]) => process.off(sig, h)) };
}

/** The key options as commander parses them. */
export interface KeyFlags {
  key?: string;
  pkcs11Module?: string;
  nonInteractive?: boolean;
}

/**
 * A token's PIN, read only when the token asks for a login, from (in order) the URI's
 * `pin-source=` (a file, `file:` or a path), CERT_RETRIEVER_PKCS11_PIN, the systemd credential
 * `pin`, or a masked prompt on a terminal. Never from argv; never printed.
 */
export async function tokenPin(uri: { pinSource?: string }, flags: KeyFlags, tokenName: string): Promise<{ read: () => Promise<string>; where: string }> {
  const what = "token PIN";
  if (uri.pinSource !== undefined) {
    const file = uri.pinSource.replace(/^file:(\/\/)?/, "");
    const read = passwordReader({ file }, what);
    return { read: heldSecret(async () => (await checkTrusted(file, "PIN file"), read())), where: `the PIN file ${file}` };
  }
  const env = process.env.CERT_RETRIEVER_PKCS11_PIN;
  if (env !== undefined) return { read: heldSecret(passwordReader({ env }, what)), where: "CERT_RETRIEVER_PKCS11_PIN" };
  const credential = credentialPath("pin");
  if (await exists(credential)) return { read: heldSecret(passwordReader({ file: credential }, what)), where: "the systemd credential 'pin'" };
  if (isInteractive(flags)) return { read: heldSecret(() => ask("password", `PIN for ${tokenName}:`)), where: "the PIN typed" };
  const missing = new CertRetrieverError(`token failed: no PIN for ${tokenName}`, {
    step: "token",
    reason: "missing-credentials",
    hint: "give it with pin-source=file:/path in --key, CERT_RETRIEVER_PKCS11_PIN, or the systemd credential 'pin' (never on the command line)",
  });
  return { read: () => Promise.reject(missing), where: "nowhere" };
}

/**
 * The key store a run uses: a PKCS#11 token when `uri` (--key, or a stored key's URI) names one,
 * else software. `login` opens the token for signing (asking for the PIN if it needs one); without
 * it only public objects are read. The PKCS#11 modules load only here.
 */
export async function openKeyStore(
  flags: KeyFlags,
  uri: string | undefined,
  opts: { login: boolean; source?: SourceOf; pin?: { read: () => Promise<string>; where: string } },
): Promise<import("../keys/key-store.js").KeyStore> {
  const { isPkcs11Uri, parsePkcs11Uri } = await import("../keys/pkcs11-uri.js");
  if (uri === undefined || !isPkcs11Uri(uri)) {
    if (uri !== undefined) throw await keyNotUri(uri);
    const { SoftwareKeyStore } = await import("../keys/key-store.js");
    return new SoftwareKeyStore();
  }
  const parsed = parsePkcs11Uri(uri);
  const pin = opts.pin ?? (await tokenPin(parsed, flags, tokenName(parsed)));
  const { Pkcs11KeyStore } = await import("../keys/pkcs11-store.js");
  return Pkcs11KeyStore.open(
    { uri, modulePath: flags.pkcs11Module, pin: pin.read, pinSource: pin.where, refusePinValue: opts.source?.("key") === "cli" },
    opts.login,
  );
}

/**
 * The public keys a stored key record names, for `check`: a PEM's own, or those of the token key
 * its URI (or --key) names, read without a login (a token's public objects need no PIN).
 */
export function publicKeysReader(flags: KeyFlags, source?: SourceOf): (record: string) => Promise<Uint8Array[]> {
  return async (record) => {
    const { isKeyUri } = await import("../store/types.js");
    const keyStore = await openKeyStore(flags, isKeyUri(record) ? (flags.key ?? record.trim()) : flags.key, { login: false, source });
    try {
      return await keyStore.publicKeysOf(record);
    } finally {
      await keyStore.close();
    }
  };
}

/** A token as the messages name it. */
export function tokenName(uri: { token?: string }): string {
  return uri.token !== undefined ? `token '${uri.token}'` : "the token";
}

/** Checks --key's form before anything else is done (a token is opened only later, when needed). */
export async function checkKeyFlag(flags: KeyFlags): Promise<void> {
  if (flags.key === undefined) return;
  const { isPkcs11Uri, parsePkcs11Uri } = await import("../keys/pkcs11-uri.js");
  if (!isPkcs11Uri(flags.key)) throw await keyNotUri(flags.key);
  const { pinValue } = parsePkcs11Uri(flags.key);
  if (pinValue !== undefined) holdSecret(pinValue);
}

async function keyNotUri(key: string): Promise<CertRetrieverError> {
  const { shown } = await import("../keys/pkcs11-uri.js");
  return usage(`--key ${shown(key)} is not a pkcs11: URI`, "--key names a key in a PKCS#11 token (RFC 7512), e.g. --key 'pkcs11:token=device?module-path=/usr/lib/softhsm/libsofthsm2.so'; without it the key is made in software");
}

/** A platform run's HTTP client and interrupt handlers; when bad TLS files stop the client being made, the handlers go too. */
export async function openPlatformRun(flags: CommonFlags, startedAt: number, retries: RetryInfo[]): Promise<{ http: HttpClient; interrupt: ReturnType<typeof onInterrupt> }> {
  const interrupt = onInterrupt();
  const http = await makeHttp(flags, startedAt, interrupt.signal, retries).catch((err: unknown) => {
    interrupt.dispose();
    throw err;
  });
  return { http, interrupt };
}

/** Where `check` keeps the CA's last good CRL, which `enroll` reads too: beside the CA certificate in --out. */
export function crlCachePath(flags: Pick<CommonFlags, "out" | "caName">): string {
  return join(flags.out, `${flags.caName}.crl`);
}

/** Where `check` notes that the platform's CA replaced the stored one, for `enroll` to act on. */
export function caReplacedPath(flags: Pick<CommonFlags, "out" | "caName">): string {
  return join(flags.out, `${flags.caName}.replaced`);
}
