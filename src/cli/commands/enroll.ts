import { Command, Option } from "commander";
import type { Agent } from "../../agent.js";
import type { DryRunResult } from "../../flows/enroll.js";
import type { EnrollResult } from "../../flows/result.js";
import { isKeyType, type KeyType } from "../../keys/key-types.js";
import { protocolNamed } from "../../protocols/registry.js";
import type { ProtocolPlugin } from "../../protocols/types.js";
import type { AgentSettings, LoginSettings } from "../../settings.js";
import type { RetryInfo } from "../../transport/http.js";
import {
  brokerSettings,
  brokerUrl,
  checkKeyFlag,
  checkPinFlag,
  keySettings,
  type MqttFlags,
  networkSettings,
  onInterrupt,
  platformTls,
  protocolOptions,
  resolveDeviceId,
  resolvePlatformUrl,
  storeSettings,
} from "../agent-settings.js";
import { applyConfigFile, type ConfigExtras } from "../config.js";
import { commandExitCodes } from "../exit-codes.js";
import { usage } from "../hints.js";
import { boundedRead, checkSans, parseDuration, parseRenewWindow, type SecretRead } from "../inputs.js";
import { cliIo } from "../io.js";
import { flagName } from "../names.js";
import { addOptions } from "../options.js";
import { exitCodesHelp, holdSecret, printResult, say, tell } from "../output.js";
import { events } from "../progress.js";
import { applyRecorded, settingsToRecord } from "../remembered.js";
import { login, passwordBesideToken, type SourceOf, tokenSession } from "../secrets.js";
import type { CliState } from "../state.js";

interface EnrollFlags extends MqttFlags {
  verifyBroker?: string;
  keyType?: string;
  dns: string[];
  ip: string[];
  uri: string[];
  force?: boolean;
  storeCertInToken?: boolean;
  exec?: string;
  reloadUnit?: string;
  hookTimeout: string;
  keepPrevious?: boolean;
  dryRun?: boolean;
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
    cert-retriever enroll --platform https://dojot.example.com --device-id f60c28 \\
      --username admin --password-file /run/secrets/dojot \\
      --key 'pkcs11:token=device?pin-source=file:/etc/cert-retriever/pin' \\
      --pkcs11-module /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so

  Against the lab platform, an ECDSA key (needs 'cert-retriever-lab serve --cert-profile open'):
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
  <out>/<device-id>.settings.json (0600): the settings the enrollment used, which check, renewal,
  verify, status and export take when not given. EJBCA-REST only: <out>/<device-id>.issue.pending
  while a CSR may have been signed and its certificate is not stored (the next run resets the end
  entity by it).
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
    .option(
      "--dry-run",
      "authenticate, fetch the CA and run every pre-flight check, then say what would be requested; no key is made, no CSR sent, nothing written",
    )
    .addOption(
      new Option(
        "--verify-broker <url>",
        "after storing, connect to this mqtts:// broker with the new identity (see 'verify')",
      ).env("CERT_RETRIEVER_VERIFY_BROKER"),
    )
    .addHelpText("after", EXAMPLES + exitCodesHelp(commandExitCodes("enroll")))
    .action(async (_flags: EnrollFlags, command: Command) => {
      state.exitCode = await runEnroll(command, state);
    });
  return cmd;
}

/** The run: everything checked, and everything missing asked for, before the first request; then the agent enrolls. */
async function runEnroll(command: Command, state: CliState): Promise<number> {
  const startedAt = Date.now();
  const extras = await applyConfigFile(command, say);
  await applyRecorded(command, say);
  const flags = command.opts<EnrollFlags>();
  state.json ||= Boolean(flags.json);
  const source = (key: string) => command.getOptionValueSource(key);
  const checked = await checkEnrollFlags(flags, source);
  const interrupt = onInterrupt();
  const deadline = startedAt + parseDuration(flags.deadline, "--deadline");
  const who = await loginSettings(flags, extras, source, checked.plugin, (read) =>
    boundedRead(read, interrupt.signal, deadline),
  );
  const options = await protocolOptions(flags);
  const store = await storeSettings(flags, checked.deviceId);
  if (flags.storeCertInToken && !flags.key?.startsWith("pkcs11:"))
    throw usage("--store-cert-in-token needs a token key: pass --key pkcs11:…");
  const tls = await platformTls(flags, checked.plugin);
  const retries: RetryInfo[] = [];
  interrupt.listen();
  try {
    const settings: AgentSettings = {
      platform: { url: checked.baseUrl, protocol: checked.plugin, caName: flags.caName, options, tls },
      device: {
        id: checked.deviceId,
        keyType: checked.keyType,
        sans: checked.sans,
        profile: flags.profile ? { name: flags.profile, uriDomain: flags.uriDomain } : undefined,
      },
      store,
      trust: { pin: flags.caFingerprint },
      login: who,
      key: keySettings(flags, source, Boolean(flags.storeCertInToken)),
      renewal: { renewBefore: checked.renewBefore, revocation: flags.revocation, revokePrevious: !flags.keepPrevious },
      hooks: {
        exec: flags.exec,
        reloadUnit: flags.reloadUnit,
        timeoutMs: checked.hookTimeoutMs,
        environmentPrefix: "CERT_RETRIEVER_",
        inheritFrom: cliIo().env,
      },
      broker: checked.broker && (async () => brokerSettings(flags, checked.broker!)),
      network: networkSettings(flags, startedAt, interrupt.signal, retries, state.inject?.lookup),
      observer: state.inject?.observer,
      clock: state.inject?.clock,
      name: flagName,
      record: await settingsToRecord(flags, checked.baseUrl),
    };
    const { createAgent } = await import("../../agent.js");
    const agent = createAgent(settings);
    try {
      return await enrollWith(agent, flags, state, retries);
    } finally {
      await agent.close();
    }
  } finally {
    interrupt.dispose();
  }
}

/** The enrollment, its report, and the broker check after the write where none was made before it. */
async function enrollWith(agent: Agent, flags: EnrollFlags, state: CliState, retries: RetryInfo[]): Promise<number> {
  if (flags.dryRun) {
    const planned = await agent.dryRun({ force: Boolean(flags.force), onEvent: events(state, flags) });
    for (const line of describeDryRun(planned)) tell(flags, line);
    if (flags.json) printResult("enroll", { ...planned, retries });
    return 0;
  }
  const result = await agent.enroll({ force: Boolean(flags.force), onEvent: events(state, flags) });
  if (result.previous && !flags.exec && !flags.reloadUnit) {
    say("note: no --exec or --reload-unit: programs that loaded the previous identity keep it until they restart");
  }
  tell(flags, describeOutcome(result));
  let verified: unknown = result.checkedBeforeStore;
  if (flags.verifyBroker && verified === undefined) {
    // The credentials are valid and stay; only the broker check failed.
    const { withWhat } = await import("../../flows/verify.js");
    verified = await agent.verify({ onEvent: events(state, flags) }).catch((err: unknown) => {
      throw withWhat(err, "the new credentials are stored and valid; only the broker check failed");
    });
  }
  if (flags.json) printResult("enroll", { ...result, retries, ...(verified ? { verify: verified } : {}) });
  return 0;
}

/** What a dry run found, in lines. */
function describeDryRun(r: DryRunResult): string[] {
  if (r.action === "keep")
    return [
      `dry run: device '${r.deviceId}' already has valid credentials in ${r.store.location} (valid until ${r.notAfter}): a run would request nothing (with --force it would enroll again)`,
    ];
  const req = r.request!;
  return [
    `dry run: device '${r.deviceId}' would be ${r.action === "renew" ? "renewed" : "enrolled"}; no key was made and no CSR sent`,
    `  API:       ${r.api}`,
    `  CA:        ${r.ca!.subject}, SHA-256 ${r.ca!.sha256Fingerprint}`,
    `  subject:   ${req.subject}`,
    `  names:     ${req.sans.length ? req.sans.join(", ") : "none"}`,
    `  key:       ${req.keyType}, made in ${req.keyStore}${req.keyWhy ? ` (${req.keyWhy})` : ""}`,
    `  stored in: ${r.store.location} (${r.store.kind})`,
  ];
}

/** What the run did, in a line. */
function describeOutcome(result: EnrollResult): string {
  if (result.status === "already-enrolled") {
    return `device '${result.deviceId}' already has valid credentials in ${result.store.location} (valid until ${result.notAfter}); nothing to do (use --force to enroll again)`;
  }
  const files = result.store.files;
  return `enrolled device '${result.deviceId}': ${files ? `${files.keyUri ?? files.key}, ${files.certificate}, ${files.ca}` : result.store.location}`;
}

/** The flags that need no file or secret, checked in the order a user meets them; the protocol's own rules among them. */
async function checkEnrollFlags(flags: EnrollFlags, source: SourceOf) {
  const plugin = protocolNamed(flags.api ?? "auto");
  const baseUrl = await resolvePlatformUrl(flags, (url) => plugin.checkUrl?.(url));
  plugin.checkSettings?.({ purpose: "enroll", token: flags.tokenFile !== undefined }, flagName);
  // Which release answers is known only after fetch-ca; an id no release can use is refused now.
  const deviceId = await resolveDeviceId(flags, source, (id) =>
    plugin.checkSettings?.({ purpose: "enroll", deviceId: id }, flagName),
  );
  if (flags.keyType !== undefined && !isKeyType(flags.keyType)) throw usage(`unknown key type '${flags.keyType}'`);
  const { profileSans } = await import("../../broker/profiles.js");
  const sans = profileSans(
    flags.profile ?? "generic",
    deviceId,
    flags.uriDomain,
    checkSans(flags.dns, flags.ip, flags.uri),
  );
  const renewBefore = parseRenewWindow(flags.renewBefore);
  const hookTimeoutMs = parseDuration(flags.hookTimeout, "--hook-timeout");
  if (flags.exec !== undefined && !flags.exec.trim())
    throw usage("--exec is empty", "give the command line to run, e.g. --exec 'systemctl restart my-agent'");
  if (flags.reloadUnit !== undefined && !/^[\w:.@\\][\w:.@\\-]*$/.test(flags.reloadUnit))
    throw usage(`--reload-unit '${flags.reloadUnit}' is not a unit name`, "e.g. --reload-unit mosquitto.service");
  const broker = flags.verifyBroker ? brokerUrl(flags.verifyBroker) : undefined;
  await checkPinFlag(flags);
  await checkKeyFlag(flags);
  return {
    plugin,
    baseUrl,
    deviceId,
    keyType: flags.keyType as KeyType | undefined,
    sans,
    renewBefore,
    hookTimeoutMs,
    broker,
  };
}

/**
 * Who logs in: the token (a protocol without login takes none), and the user and password, asked
 * for only when the authenticate step runs (EST: when the enrollment request needs them), unless
 * the protocol sends none (a bootstrap client certificate alone).
 */
async function loginSettings(
  flags: EnrollFlags,
  extras: ConfigExtras,
  source: SourceOf,
  plugin: ProtocolPlugin,
  bounded: (read: SecretRead) => () => Promise<string>,
): Promise<LoginSettings> {
  const token = plugin.lacks?.login ? undefined : await tokenSession(flags);
  const given = {
    username: flags.username !== undefined,
    clientCert: Boolean(flags.clientCert),
    token: token !== undefined,
  };
  const wants = plugin.wantsLogin ? plugin.wantsLogin(given) : !token;
  if (token) holdSecret(token.jwt);
  // Beside a token, a user and password given are for when the token has expired.
  if (!wants && !(token && (await passwordBesideToken(flags, extras)))) return { token };
  const credentials = await login(flags, extras, source);
  return {
    username: credentials.username,
    password: bounded(credentials.password),
    retryLogin: credentials.retryLogin,
    onToken: credentials.onToken,
    token,
  };
}
