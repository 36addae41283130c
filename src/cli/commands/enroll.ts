import { rm } from "node:fs/promises";
import { Command, Option } from "commander";
import { isKeyType, type KeyType } from "../../keys/key-types.js";
import { CertRetrieverError } from "../../errors.js";
import { COMMAND_EXIT_CODES } from "../exit-codes.js";
import type { RetryInfo } from "../../transport/http.js";
import type { CredentialStore } from "../../store/types.js";
import { applyConfigFile } from "../config.js";
import {
  checkKeyFlag,
  checkPinFlag,
  caReplacedPath,
  crlCachePath,
  isInteractive,
  openKeyStore,
  type KeyFlags,
  makeStore,
  openPlatformRun,
  login,
  resolveDeviceId,
  resolvePlatformUrl,
  tokenSession,
} from "../context.js";
import { usage } from "../failures.js";
import { boundedRead, checkSans, parseDuration, parseRenewWindow, passwordReader } from "../inputs.js";
import type { CliState } from "../main.js";
import type { ApiChoice } from "../platform.js";
import { addOptions } from "../options.js";
import { exitCodesHelp, heldSecret, holdSecret, printJson, progress, say } from "../output.js";
import { brokerUrl, verifyCredentials, verifyStored, type MqttFlags } from "./verify.js";

interface EnrollFlags extends MqttFlags, KeyFlags {
  verifyBroker?: string;
  entityPasswordFile?: string;
  keyType?: string;
  api: ApiChoice;
  dns: string[];
  ip: string[];
  uri: string[];
  force?: boolean;
  storeCertInToken?: boolean;
  exec?: string;
  reloadUnit?: string;
  hookTimeout: string;
  keepPrevious?: boolean;
}

const EXAMPLES = `
EXAMPLES
  Enroll device f60c28 against a dojot gateway, the password in a file:
    cert-retriever enroll --platform https://dojot.example.com --device-id f60c28 \\
      --username admin --password-file /run/secrets/dojot

  On a factory line, with the token 'cert-retriever login' wrote on the station:
    cert-retriever enroll --platform https://dojot.example.com --device-id "$SERIAL" \\
      --token-file /run/station/token --non-interactive --json

  With the key made and kept in a PKCS#11 token (here SoftHSM2), the PIN in a file:
    cert-retriever enroll --platform https://dojot.example.com --device-id f60c28 \
      --username admin --password-file /run/secrets/dojot \
      --key 'pkcs11:token=device?pin-source=file:/etc/cert-retriever/pin' \
      --pkcs11-module /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so

  Against the lab platform, an ECDSA key (needs 'lab serve --cert-profile open'):
    echo "$PASS" | cert-retriever enroll --platform http://127.0.0.1:8000 --device-id dev1 \\
      --username admin --password-stdin --key-type ec-p256

SETTINGS
  Flags win over CERT_RETRIEVER_* variables, which win over the config file (--config; without it
  $XDG_CONFIG_HOME/cert-retriever/config.json, then /etc/cert-retriever/config.json), which win
  over the defaults. Secrets come from a file, stdin, the environment, systemd credentials
  ($CREDENTIALS_DIRECTORY/password or /token), or a 0600 config file; never from the command line.

FILES
  <out>/<ca-name>.crt, <out>/<device-id>.key (0600, PKCS#8), <out>/<device-id>.crt; <out> is 0700.
  With --key pkcs11:..., <out>/<device-id>.key.uri names the key, which stays in the token.
`;

/** `cert-retriever enroll`: the whole sequence, authenticate to store. */
export function enrollCommand(state: CliState): Command {
  const cmd = new Command("enroll")
    .summary("obtain this device's key, certificate and CA certificate from the platform")
    .description(
      "Authenticates to the platform, fetches the CA certificate, generates the key on this device, submits a CSR, " +
        "validates the certificate it gets back, and only then stores key, certificate and CA. " +
        "Stops at the first failure with the step's exit code; a failed run writes nothing.",
    );
  addOptions(cmd, "enroll")
    .option("--force", "enroll even if valid credentials already exist")
    .addOption(new Option("--verify-broker <url>", "after storing, connect to this mqtts:// broker with the new identity (see 'verify')").env("CERT_RETRIEVER_VERIFY_BROKER"))
    .addHelpText("after", EXAMPLES + exitCodesHelp(COMMAND_EXIT_CODES.enroll))
    .action(async (_flags: EnrollFlags, command: Command) => {
      state.exitCode = await runEnroll(command, state);
    });
  return cmd;
}

async function runEnroll(command: Command, state: CliState): Promise<number> {
  const startedAt = Date.now();
  const extras = await applyConfigFile(command, say);
  const flags = command.opts<EnrollFlags>();
  state.json ||= Boolean(flags.json);
  // Everything is checked, and everything missing asked for, before the first request.
  const est = flags.api === "est";
  const baseUrl = await resolvePlatformUrl(flags);
  if (est) (await import("../../protocols/est/client.js")).estBaseUrl(baseUrl);
  if (est && flags.tokenFile) throw usage("--token-file holds a dojot login; EST keeps no session", "leave out --token-file: the enrollment request carries the credentials");
  const source = (key: string) => command.getOptionValueSource(key);
  const deviceId = await resolveDeviceId(flags, source);
  if (flags.keyType !== undefined && !isKeyType(flags.keyType)) throw usage(`unknown key type '${flags.keyType}'`);
  const keyType = flags.keyType as KeyType | undefined;
  if (flags.api === "dojot") {
    // Which release answers is known only after fetch-ca; an id no release can use is refused now.
    const problem = (await import("../../protocols/x509-identity-mgmt/client.js")).x509DeviceIdProblem(deviceId);
    if (problem) throw usage(problem, "use the platform's device id (dojot's are hex)");
  }
  const { profileSans } = await import("../../broker/profiles.js");
  const sans = profileSans(flags.profile ?? "generic", deviceId, flags.uriDomain, checkSans(flags.dns, flags.ip, flags.uri));
  const renewBefore = parseRenewWindow(flags.renewBefore);
  const hookTimeoutMs = parseDuration(flags.hookTimeout, "--hook-timeout");
  if (flags.exec !== undefined && !flags.exec.trim()) throw usage("--exec is empty", "give the command line to run, e.g. --exec 'systemctl restart my-agent'");
  if (flags.reloadUnit !== undefined && !/^[\w:.@\\][\w:.@\\-]*$/.test(flags.reloadUnit)) throw usage(`--reload-unit '${flags.reloadUnit}' is not a unit name`, "e.g. --reload-unit mosquitto.service");
  const broker = flags.verifyBroker ? brokerUrl(flags.verifyBroker) : undefined;
  await checkPinFlag(flags);
  await checkKeyFlag(flags);
  const token = est ? undefined : await tokenSession(flags);
  // EST: a bootstrap client certificate may authenticate alone (no user given: no HTTP Basic).
  const basic = !est || flags.username !== undefined || !flags.clientCert;
  // Asked for only when the authenticate step runs (EST: when the enrollment request needs it): a device with valid credentials needs no login.
  const credentials = token || !basic ? undefined : await login(flags, extras, source);
  if (token) holdSecret(token.session.jwt);
  const entityEnv = process.env.CERT_RETRIEVER_ENTITY_PASSWORD;
  const entityPassword =
    flags.entityPasswordFile || entityEnv !== undefined
      ? await heldSecret(passwordReader({ file: flags.entityPasswordFile, env: entityEnv }, "end-entity password"))()
      : "dojot";
  const store = await makeStore(flags, deviceId);
  const trust = est ? await estAnchors(store, flags) : undefined;
  if (flags.storeCertInToken && flags.key === undefined) throw usage("--store-cert-in-token needs a token key: pass --key pkcs11:…");
  // A device whose key is in a token keeps it there: without --key, the token the stored key's URI names.
  const keyUri = flags.key ?? (await tokenOfStoredKey(store));
  // A token's PIN is tried before the first request: a wrong one costs the platform nothing.
  const keyStore = await openKeyStore(flags, keyUri, { login: true, source });
  const retries: RetryInfo[] = [];
  const { http, interrupt } = await openPlatformRun(flags, startedAt, retries).catch(async (err: unknown) => {
    await keyStore.close();
    throw err;
  });

  // Heavy modules load only once the input is known to be good.
  const [{ enroll }, { softwareCrypto }, { makePlatform }, { revocationOf, caReplacedMark }, { runChangeHooks }] = await Promise.all([
    import("../../flows/enroll.js"),
    import("../../keys/provider.js"),
    import("../platform.js"),
    import("../../flows/revocation.js"),
    import("../../flows/hooks.js"),
  ]);
  const crypto = softwareCrypto();
  const render = progress(isInteractive(flags));
  try {
    const result = await enroll(
      {
        platform: await makePlatform(flags.api, {
          baseUrl,
          caName: flags.caName,
          entityPassword,
          http,
          est: trust && { ...trust, platformCa: Boolean(flags.platformCa), basic, clientCert: Boolean(flags.clientCert), crypto, signal: interrupt.signal },
        }),
        crypto,
        keyStore,
        storeCertInToken: Boolean(flags.storeCertInToken),
        deviceId,
        username: credentials?.username ?? flags.username ?? "",
        password: boundedRead(credentials?.password ?? (async () => ""), interrupt.signal, startedAt + parseDuration(flags.deadline, "--deadline")),
        retryLogin: credentials?.retryLogin,
        session: token?.session,
        sessionSource: token?.source,
        keyType,
        sans,
        store,
        renewBefore,
        profile: flags.profile ? { name: flags.profile, uriDomain: flags.uriDomain } : undefined,
        force: Boolean(flags.force),
        caFingerprint: flags.caFingerprint,
        clockSkewMs: () => http.clockSkewMs,
        signal: interrupt.signal,
        // The CRL check keeps fresh (enroll itself never waits for a CRL): a certificate it lists is enrolled again.
        revocation: flags.revocation === "off" ? undefined : (cert, ca) => revocationOf(cert, ca, { crypto, now: new Date(), cachePath: crlCachePath(flags), refreshMs: Infinity }),
        caReplaced: (ca) => caReplacedMark(caReplacedPath(flags), ca),
        beforeReplace: broker
          ? (pems) =>
              verifyCredentials(pems, deviceId, broker, flags, `the new credentials of '${deviceId}'`, source).catch((err: unknown) => {
                throw saying(err, "with the new credentials, which were not stored: the previous ones stay in use");
              })
          : undefined,
        afterChange: flags.exec || flags.reloadUnit ? (done) => runChangeHooks(done, { exec: flags.exec, reloadUnit: flags.reloadUnit, timeoutMs: hookTimeoutMs }) : undefined,
        revokePrevious: !flags.keepPrevious,
      },
      render,
    );
    // The cached CRL predates the revocation this run made: the next check fetches a new one. A CA change is acted on.
    if (result.previous?.revoked === "revoked") await rm(crlCachePath(flags), { force: true }).catch(() => undefined);
    if (result.status === "enrolled") await rm(caReplacedPath(flags), { force: true }).catch(() => undefined);
    if (result.previous && !flags.exec && !flags.reloadUnit) {
      say("note: no --exec or --reload-unit: programs that loaded the previous identity keep it until they restart");
    }
    if (result.status === "already-enrolled") {
      say(`device '${deviceId}' already has valid credentials in ${store.location} (valid until ${result.notAfter}); nothing to do (use --force to enroll again)`);
    } else {
      const files = result.store.files;
      const where = files ? `${files.keyUri ?? files.key}, ${files.certificate}, ${files.ca}` : store.location;
      say(`enrolled device '${deviceId}': ${where}`);
    }
    let verified: unknown = result.checkedBeforeStore;
    await keyStore.close(); // a token is opened again, for TLS, by the broker check
    if (flags.verifyBroker && verified === undefined) {
      // The credentials are valid and stay; only the broker check failed.
      verified = await verifyStored(store, deviceId, flags.verifyBroker, flags, source).catch((err: unknown) => {
        throw saying(err, "the new credentials are stored and valid; only the broker check failed");
      });
    }
    if (flags.json) printJson({ ...result, retries, ...(verified ? { verify: verified } : {}) });
    return 0;
  } finally {
    interrupt.dispose();
    await http.close();
    await keyStore.close();
  }
}

/**
 * The explicit trust anchors of an EST run (RFC 7030 §4.1.1): the stored CA chain, which vouches
 * for the server once a device is enrolled. A first enrollment needs a pin or --platform-ca instead:
 * no CA is trusted because it was the first one seen.
 */
async function estAnchors(store: CredentialStore, flags: EnrollFlags): Promise<{ anchors: string[]; pin?: string }> {
  const stored = (await store.read().catch(() => undefined))?.parts.caPem;
  const trust = await (await import("../platform.js")).estTrust(stored, flags.caFingerprint);
  if (trust.anchors.length === 0 && !flags.caFingerprint && !flags.platformCa) {
    throw usage(
      "a first EST enrollment needs an explicit trust anchor (RFC 7030 §4.1.1): the EST server's CA is not trusted because it is the first one seen",
      "pass --ca-fingerprint sha256:<hex> (the CA's fingerprint, from its operator) or --platform-ca FILE (the CA that signed the EST server's certificate)",
    );
  }
  return trust;
}

/** A broker check's error with what became of the new credentials added to its message (anything else as it is). */
function saying(err: unknown, what: string): unknown {
  if (!(err instanceof CertRetrieverError)) return err;
  return new CertRetrieverError(`${err.message} (${what})`, { step: err.step, reason: err.reason, facts: err.facts, hint: err.hint, cause: err });
}

/** The token of the stored key, as a URI to make a new key with (its label and module, not its id), if the stored key is in one. */
async function tokenOfStoredKey(store: CredentialStore): Promise<string | undefined> {
  let read = await store.read().catch(() => undefined);
  if (read?.interrupted) {
    // Which key is stored is known once the interrupted write is finished or undone: do that first.
    const opened = await store.open();
    for (const message of opened.notes) say(`note: ${message}`);
    await opened.close(true);
    read = await store.read().catch(() => undefined);
  }
  const stored = read?.parts.key?.trim();
  if (!stored?.startsWith("pkcs11:")) return undefined;
  const { formatPkcs11Uri, parsePkcs11Uri } = await import("../../keys/pkcs11-uri.js");
  const { id: _id, type: _type, ...token } = parsePkcs11Uri(stored);
  return formatPkcs11Uri(token);
}
