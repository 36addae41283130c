import { Command } from "commander";
import { CertRetrieverError } from "../../errors.js";
import { COMMAND_EXIT_CODES } from "../exit-codes.js";
import type { MqttVersion, ProfileName, ProfileRecord } from "../../broker/profiles.js";
import type { CredentialPems, CredentialStore } from "../../store/types.js";
import { applyConfigFile } from "../config.js";
import { checkKeyFlag, makeStore, resolveDeviceId, type CommonFlags, type KeyFlags, type SourceOf } from "../context.js";
import { usage } from "../failures.js";
import { parseDuration } from "../inputs.js";
import type { CliState } from "../main.js";
import { addOptions } from "../options.js";
import { exitCodesHelp, printJson, say } from "../output.js";

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

const HELP = `
Connects with the stored identity (mutual TLS), the broker's certificate checked against the stored
CA, SNI set, and reports each stage: TCP, TLS, CONNACK and, with a topic, PUBACK (QoS 1).

--mqtt-version auto tries MQTT 5 and falls back to 3.1.1 when the broker refuses 5; the CONNACK line
says which was used. Over MQTT 5 a refused publish comes back in the PUBACK. Over 3.1.1 a broker
acknowledges even a publish it drops, so verify first subscribes to the topic and says "published"
only when its own message comes back (exit 25 if it does not). If the broker does not let it
subscribe, the PUBACK line says that delivery is not proven. A broker that closes the connection
right after the publish (Mosca, aedes) refused it: exit 25.

  cert-retriever verify --broker mqtts://broker.example.com:8883 --device-id f60c28
  cert-retriever verify --broker mqtts://dojot.example.com:8883 --device-id f60c28 --profile dojot-mosca
`;

/** `cert-retriever verify`: prove that the stored credentials open the broker's door. */
export function verifyCommand(state: CliState): Command {
  const cmd = new Command("verify").summary("connect to an MQTT broker with the stored identity and report each stage");
  addOptions(cmd, "verify")
    .requiredOption("--broker <url>", "the broker, mqtts://HOST:PORT")
    .addHelpText("after", HELP + exitCodesHelp(COMMAND_EXIT_CODES.verify))
    .action(async (_f: MqttFlags, command: Command) => {
      await applyConfigFile(command, say);
      const flags = command.opts<MqttFlags & { broker: string }>();
      state.json ||= Boolean(flags.json);
      const deviceId = await resolveDeviceId(flags, (key) => command.getOptionValueSource(key));
      await checkKeyFlag(flags);
      const store = await makeStore(flags, deviceId);
      const stages = await verifyStored(store, deviceId, flags.broker, flags, (key) => command.getOptionValueSource(key));
      if (flags.json) printJson({ deviceId, broker: flags.broker, stages });
      state.exitCode = 0;
    });
  return cmd;
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

/** Checks the broker URL, reads the stored identity and its recorded profile, and runs the broker check. */
export async function verifyStored(store: CredentialStore, deviceId: string, brokerText: string, flags: MqttFlags, source?: SourceOf) {
  const broker = brokerUrl(brokerText);
  parseDuration(flags.brokerTimeout, "--broker-timeout");
  const stored = await store.read();
  if (stored.interrupted) {
    throw new CertRetrieverError(`verify failed: a write to ${store.location} was interrupted, so which credentials are stored is not settled`, {
      step: "verify",
      reason: "not-enrolled",
      hint: "run enroll (it finishes or undoes the write first); no broker was contacted",
    });
  }
  if (!stored.pems) {
    throw new CertRetrieverError(`verify failed: no complete credentials for '${deviceId}' in ${store.location}`, { step: "verify", reason: "not-enrolled", hint: "enroll first; no broker was contacted" });
  }
  return verifyCredentials(stored.pems, deviceId, broker, flags, `'${deviceId}' in ${store.location}`, source);
}

/**
 * The broker check with credentials in hand: stored ones, or (in a renewal) new ones not yet
 * stored. `broker` must be a checked mqtts:// URL; `where` names them in messages.
 */
export async function verifyCredentials(pems: CredentialPems, deviceId: string, broker: URL, flags: MqttFlags, where: string, source?: SourceOf) {
  const timeoutMs = parseDuration(flags.brokerTimeout, "--broker-timeout");
  let recorded: ProfileRecord | undefined;
  try {
    recorded = pems.profileJson ? (JSON.parse(pems.profileJson) as ProfileRecord) : undefined;
  } catch {
    throw new CertRetrieverError(`verify failed: the recorded profile of ${where} is damaged`, {
      step: "verify",
      reason: "config",
      hint: "pass --profile (and --client-id/--topic), or enroll again to record it anew",
    });
  }
  const record: ProfileRecord = { profile: flags.profile ?? recorded?.profile ?? "generic", deviceId, tenant: recorded?.tenant, uriDomain: flags.uriDomain ?? recorded?.uriDomain };
  const [{ mqttIdentity }, { checkBroker }, { isKeyUri }] = await Promise.all([import("../../broker/profiles.js"), import("../../broker/broker.js"), import("../../store/types.js")]);
  const identity = mqttIdentity(record);
  const inToken = isKeyUri(pems.key);
  if (flags.key !== undefined && !inToken) throw usage(`--key names a token key, but the key of ${where} is a key file`, "leave --key out, or enroll with it");
  const tokenKey = inToken ? await (await import("../../keys/token-tls.js")).tokenKeyForTls(flags, flags.key ?? pems.key.trim(), pems.key, source) : undefined;
  try {
    return await checkBroker(
      {
        broker,
        caPem: pems.caPem,
        certPem: pems.certificatePem,
        keyPem: inToken ? undefined : pems.key,
        keyEngine: tokenKey ? { ...tokenKey.engine, loaded: tokenKey.dispose } : undefined,
        clientId: flags.clientId ?? identity.clientId,
        topic: flags.topic ?? identity.topic,
        servername: flags.servername,
        tls: identity.tls,
        mqttVersion: flags.mqttVersion ?? identity.mqttVersion,
        timeoutMs,
      },
      (s) => say(`verify ${s.stage}: ${s.detail} (${s.ms} ms)`),
    );
  } finally {
    await tokenKey?.dispose();
  }
}
