import { Command } from "commander";
import {
  brokerSettings,
  brokerUrl,
  checkKeyFlag,
  keySettings,
  type MqttFlags,
  resolveDeviceId,
  storeSettings,
} from "../agent-settings.js";
import { applyConfigFile } from "../config.js";
import { commandExitCodes } from "../exit-codes.js";
import { flagName } from "../names.js";
import { addOptions } from "../options.js";
import { exitCodesHelp, printResult, say } from "../output.js";
import { events } from "../progress.js";
import { applyRecorded } from "../remembered.js";
import type { CliState } from "../state.js";

const HELP = `
Connects with the stored identity (mutual TLS), the broker's certificate checked against the stored
CA, SNI set, and reports each stage: TCP, TLS, CONNACK and, with a topic, PUBACK (QoS 1).

--mqtt-version auto tries MQTT 5 and falls back to 3.1.1 when the broker refuses 5, or leaves it
unanswered for 3 s (Mosca); the CONNACK line says which was used, and why. Over MQTT 5 a refused publish comes back in the PUBACK. Over 3.1.1 a broker
acknowledges even a publish it drops, so verify first subscribes to the topic and says "published"
only when its own message comes back (exit 25 if it does not). If the broker does not let it
subscribe, the PUBACK line says that delivery is not proven. A broker that closes the connection
right after the publish (Mosca, aedes) refused it: exit 25. A TLS 1.2 broker that closes the
connection right after our certificate, without an alert (Mosca on Node 8), refused it: exit 22.

  cert-retriever verify --broker mqtts://broker.example.com:8883 --device-id f60c28
  cert-retriever verify --broker mqtts://dojot.example.com:8883 --device-id f60c28 --profile dojot-mosca
`;

/** `cert-retriever verify`: prove that the stored credentials open the broker's door. */
export function verifyCommand(state: CliState): Command {
  const cmd = new Command("verify").summary("connect to an MQTT broker with the stored identity and report each stage");
  addOptions(cmd, "verify")
    .requiredOption("--broker <url>", "the broker, mqtts://HOST:PORT")
    .addHelpText("after", HELP + exitCodesHelp(commandExitCodes("verify")))
    .action(async (_f: MqttFlags, command: Command) => {
      await applyConfigFile(command, say);
      await applyRecorded(command, say);
      const flags = command.opts<MqttFlags & { broker: string }>();
      state.json ||= Boolean(flags.json);
      const source = (key: string) => command.getOptionValueSource(key);
      const deviceId = await resolveDeviceId(flags, source);
      await checkKeyFlag(flags);
      const store = await storeSettings(flags, deviceId);
      const broker = brokerSettings(flags, brokerUrl(flags.broker));
      const { createAgent } = await import("../../agent.js");
      const agent = createAgent({
        device: { id: deviceId },
        store,
        key: keySettings(flags, source),
        broker,
        observer: state.inject?.observer,
        clock: state.inject?.clock,
        name: flagName,
      });
      const stages = await agent.verify({ onEvent: events(state, flags, false) });
      if (flags.json) printResult("verify", { deviceId, broker: flags.broker, stages });
      state.exitCode = 0;
    });
  return cmd;
}
