/** From flags, the environment, the config file and the terminal to an agent's settings: everything checked before the first request. */
import { readFile, stat } from "node:fs/promises";
import { resolve } from "node:path";
import type { MqttVersion, ProfileName } from "../broker/profiles.js";
import { CertRetrieverError, describeCause } from "../errors.js";
import type { BrokerSettings } from "../flows/verify.js";
import type { KeySettings } from "../keys/open.js";
import { protocolSettings } from "../protocols/registry.js";
import type { ProtocolPlugin } from "../protocols/types.js";
import type { NetworkSettings, PlatformSettings, StoreSettings } from "../settings.js";
import type { RetryInfo } from "../transport/http.js";
import { usage } from "./hints.js";
import {
  checkDeviceId,
  checkFileName,
  checkPlatformUrl,
  checkStoreNames,
  parseCount,
  parseDuration,
  passwordReader,
  readPemFile,
} from "./inputs.js";
import { cliIo } from "./io.js";
import { renderText } from "./names.js";
import { heldSecret, holdSecret, say } from "./output.js";
import { networkProgress } from "./progress.js";
import { askUntil, isInteractive } from "./prompts.js";
import { type LoginFlags, rank, type SourceOf, tokenPin } from "./secrets.js";

/** The shared options as commander parses them (see options.ts). */
export interface CommonFlags extends LoginFlags {
  platform?: string;
  api?: string;
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
  quiet?: boolean;
  config?: string;
}

/** The key options as commander parses them. */
export interface KeyFlags {
  key?: string;
  pkcs11Module?: string;
  nonInteractive?: boolean;
}

/** The MQTT options as commander parses them. */
export interface MqttFlags extends CommonFlags, KeyFlags {
  profile?: ProfileName;
  uriDomain?: string;
  clientId?: string;
  topic?: string;
  servername?: string;
  mqttVersion?: MqttVersion;
  brokerTimeout: string;
}

/** The platform URL: the flag, the environment, the config file, or (on a terminal) a prompt; `check`: the protocol's own rules. */
export async function resolvePlatformUrl(flags: CommonFlags, check?: (url: URL) => void): Promise<URL> {
  const given = (value: string | undefined) => {
    const url = checkPlatformUrl(value, Boolean(flags.allowHttp), say);
    check?.(url);
    return url;
  };
  if (flags.platform !== undefined || !isInteractive(flags)) return given(flags.platform);
  return askUntil("Platform URL (e.g. https://dojot.example.com):", given, {
    advice: "type the platform's address: https://HOST[:PORT] (http:// only on this machine)",
  });
}

/**
 * The device id: --device-id or --device-id-file, whichever was given at the higher layer, or (on a
 * terminal) a prompt, which asks again for an id that `check` (the protocol's rules) or the file names refuse.
 */
export async function resolveDeviceId(
  flags: CommonFlags,
  source?: SourceOf,
  check?: (id: string) => void,
): Promise<string> {
  const fileWins =
    flags.deviceIdFile !== undefined &&
    (flags.deviceId === undefined || rank(source?.("deviceIdFile")) > rank(source?.("deviceId")));
  const checked = (id: string) => {
    check?.(id);
    return id;
  };
  if (flags.deviceId !== undefined && !fileWins) return checked(checkDeviceId(flags.deviceId));
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
    return checked(checkDeviceId(text.split("\n")[0]!.trim()));
  }
  if (!isInteractive(flags)) return checkDeviceId(undefined);
  return askUntil("Device id:", (answer) => {
    if (!answer) throw usage("a device id is required");
    return checked(checkFileName(answer, "the device id"));
  });
}

/** The output directory must be a directory if it exists. */
export async function checkOutDir(out: string): Promise<void> {
  const info = await stat(out).catch(() => undefined);
  if (info && !info.isDirectory()) throw usage(`--out ${out} exists and is not a directory`);
}

/** The store chosen with --store, its names checked (before any request). */
export async function storeSettings(flags: CommonFlags, deviceId: string): Promise<StoreSettings> {
  await checkOutDir(flags.out);
  checkFileName(flags.caName, "--ca-name", "the CA's name becomes <out>/<ca-name>.crt");
  await checkStoreNames(deviceId, flags.caName);
  return flags.store === "keychain"
    ? { kind: "keychain", lockDir: flags.out, caName: flags.caName }
    : { kind: "files", dir: flags.out, caName: flags.caName };
}

/** Checks --ca-fingerprint's form (before any request). */
export async function checkPinFlag(flags: CommonFlags): Promise<void> {
  const { normalizeFingerprint } = await import("../keys/fingerprint.js");
  if (flags.caFingerprint !== undefined && !normalizeFingerprint(flags.caFingerprint)) {
    throw usage(
      `--ca-fingerprint '${flags.caFingerprint}' is not a SHA-256 fingerprint`,
      "give it as sha256:<64 hex digits> (colons allowed), as the last run printed it",
    );
  }
}

/** Checks --key's form before anything else is done (a token is opened only later, when needed). */
export async function checkKeyFlag(flags: KeyFlags): Promise<void> {
  if (flags.key === undefined) return;
  const { isPkcs11Uri, parsePkcs11Uri, shown } = await import("../keys/pkcs11-uri.js");
  // Not a URI: a key file, to certify the key it holds (read when the key is needed).
  if (!flags.key.startsWith("pkcs11:")) return;
  if (!isPkcs11Uri(flags.key)) {
    throw usage(
      `--key ${shown(flags.key)} is not a pkcs11: URI`,
      "--key names a key in a PKCS#11 token (RFC 7512), e.g. --key 'pkcs11:token=device?module-path=/usr/lib/softhsm/libsofthsm2.so', or a PEM key file; without it the key is made in software",
    );
  }
  const { pinValue } = parsePkcs11Uri(flags.key);
  if (pinValue !== undefined) holdSecret(pinValue);
}

/** Where the key is: --key (else the stored key's token), the module, and the PIN's sources. */
export function keySettings(flags: KeyFlags, source?: SourceOf, storeCertInToken = false): KeySettings {
  return {
    uri: flags.key === undefined || flags.key.startsWith("pkcs11:") ? flags.key : resolve(flags.key),
    // PKCS11_MODULE_PATH from the run's environment (the library's own default is its process's).
    modulePath: flags.pkcs11Module ?? cliIo().env.PKCS11_MODULE_PATH,
    pin: async (uri) => tokenPin(uri, flags, (await import("../keys/pkcs11-uri.js")).tokenName(uri)),
    refusePinValue: source?.("key") === "cli",
    storeCertInToken,
  };
}

/** The platform's TLS files, read and tried now: unusable TLS material is a settings error (exit 3), not a network failure that is retried. */
export async function platformTls(
  flags: CommonFlags,
  plugin?: Pick<ProtocolPlugin, "signsWithTokenClientKey">,
): Promise<NonNullable<PlatformSettings["tls"]>> {
  if (Boolean(flags.clientCert) !== Boolean(flags.clientKey)) throw usage("--client-cert and --client-key go together");
  const tokenKey = plugin?.signsWithTokenClientKey && flags.clientKey?.startsWith("pkcs11:");
  const tls = {
    ca: flags.platformCa ? [await readPemFile(flags.platformCa, "--platform-ca", /-----BEGIN CERTIFICATE-----/)] : [],
    cert: flags.clientCert
      ? await readPemFile(flags.clientCert, "--client-cert", /-----BEGIN CERTIFICATE-----/)
      : undefined,
    key: tokenKey
      ? await tokenClientKey(flags.clientKey!)
      : flags.clientKey
        ? await readPemFile(flags.clientKey, "--client-key", /-----BEGIN ([A-Z]+ )?PRIVATE KEY-----/)
        : undefined,
  };
  try {
    const { createSecureContext } = await import("node:tls");
    // A token's key never reaches Node's TLS: the protocol signs with it in the token.
    const client = tokenKey ? {} : { cert: tls.cert, key: tls.key };
    createSecureContext({ ca: tls.ca.length ? tls.ca : undefined, ...client });
  } catch (err) {
    throw new CertRetrieverError(
      `the TLS files given to --platform-ca, --client-cert or --client-key cannot be used: ${describeCause(err)}`,
      {
        cause: err,
        step: "config",
        reason: "config",
        hint: "check that --client-key is the unencrypted PEM key of --client-cert",
      },
    );
  }
  return tls;
}

/** --client-key naming a key in a token (`pkcs11:`, with id= or object=), checked before anything is opened; never with pin-value=. */
async function tokenClientKey(uri: string): Promise<string> {
  const { isPkcs11Uri, parsePkcs11Uri, shown } = await import("../keys/pkcs11-uri.js");
  if (!isPkcs11Uri(uri))
    throw usage(
      `--client-key ${shown(uri)} is not a pkcs11: URI`,
      "--client-key takes a PEM key file, or the bootstrap key in a token by its URI with id= or object=, e.g. 'pkcs11:token=device;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so'",
    );
  const named = parsePkcs11Uri(uri);
  if (named.pinValue !== undefined) {
    holdSecret(named.pinValue);
    throw usage(
      "--client-key carries pin-value=, which is refused on the command line, where other users see it",
      "give the token's PIN by pin-source=file:PATH in the URI, CERT_RETRIEVER_PKCS11_PIN or a prompt",
    );
  }
  if (named.id === undefined && named.object === undefined)
    throw usage(
      `--client-key ${shown(uri)} names no one key`,
      "add the bootstrap key's id= (or object=) to the URI: it names a key already in the token, never one made here",
    );
  return uri;
}

/** The network's limits from the flags; retries are reported and collected, waits shown; `lookup`: a resolver handed to main(). */
export function networkSettings(
  flags: CommonFlags,
  startedAt: number,
  signal: AbortSignal,
  retries: RetryInfo[],
  lookup?: NetworkSettings["lookup"],
): NetworkSettings & { deadline: number } {
  const deadlineMs = parseDuration(flags.deadline, "--deadline");
  const attempts = parseCount(flags.retries, "--retries", 0, 100) + 1;
  const requestTimeout = parseDuration(flags.requestTimeout, "--request-timeout");
  const shown = networkProgress(flags);
  return {
    timeouts: { connect: Math.min(10_000, requestTimeout), headers: requestTimeout, body: requestTimeout },
    attempts,
    deadline: startedAt + deadlineMs,
    signal,
    environment: cliIo().env,
    lookup,
    onRetry: (info) => {
      retries.push(info);
      shown.onRetry(info);
    },
    onWait: shown.onWait,
  };
}

/**
 * An abort signal raised by SIGINT or SIGTERM once `listen()` was called, whose reason is the error
 * (exit 130 or 143) to report; `dispose()` removes the handlers.
 */
export function onInterrupt(): { signal: AbortSignal; listen(): void; dispose(): void } {
  const controller = new AbortController();
  const handlers = (["SIGINT", "SIGTERM"] as const).map((sig) => {
    const handler = () =>
      controller.abort(
        new CertRetrieverError(
          `interrupted by ${sig}; nothing was written and the previous credentials are unchanged`,
          { step: "usage", reason: sig === "SIGINT" ? "interrupted" : "terminated" },
        ),
      );
    return [sig, handler] as const;
  });
  return {
    signal: controller.signal,
    listen: () => {
      for (const [sig, h] of handlers) process.on(sig, h);
    },
    dispose: () => {
      for (const [sig, h] of handlers) process.off(sig, h);
    },
  };
}

/** The values of the settings the protocols declare, as given: a secret file's first line, or its variable. */
export async function protocolOptions(flags: object): Promise<Record<string, unknown>> {
  const options: Record<string, unknown> = {};
  for (const spec of protocolSettings()) {
    const file = (flags as Record<string, unknown>)[spec.name] as string | undefined;
    if (spec.secret) {
      const env =
        spec.secret.secretEnv === undefined ? undefined : cliIo().env[`CERT_RETRIEVER_${spec.secret.secretEnv}`];
      if (file || env !== undefined)
        options[spec.secret.into] = await heldSecret(passwordReader({ file, env }, spec.secret.what))();
    } else if (file !== undefined) options[spec.name] = file;
  }
  return options;
}

/** Refuses what the protocol lacks for this command, with its words (before anything else is asked). */
export function refuseLacking(plugin: ProtocolPlugin, capability: "login" | "register", given: string): void {
  const lacking = plugin.lacks?.[capability];
  if (!lacking) return;
  if (capability === "login") throw usage(renderText(lacking.message), lacking.advice && renderText(lacking.advice));
  throw new CertRetrieverError(`--api ${given}: ${renderText(lacking.message)}`, {
    step: "usage",
    reason: "not-supported",
  });
}

/** The broker's URL, checked: mqtts:// only. */
export function brokerUrl(brokerText: string): URL {
  let broker: URL;
  try {
    broker = new URL(brokerText);
  } catch {
    throw usage(`--broker '${brokerText}' is not a URL`, "e.g. --broker mqtts://broker.example.com:8883");
  }
  if (broker.protocol !== "mqtts:") throw usage(`--broker must be mqtts:// (mutual TLS), not ${broker.protocol}//`);
  return broker;
}

/** The broker check's settings from the MQTT flags. */
export function brokerSettings(flags: MqttFlags, url: URL): BrokerSettings {
  return {
    url,
    profile: flags.profile,
    uriDomain: flags.uriDomain,
    clientId: flags.clientId,
    topic: flags.topic,
    servername: flags.servername,
    mqttVersion: flags.mqttVersion,
    timeoutMs: parseDuration(flags.brokerTimeout, "--broker-timeout"),
  };
}
