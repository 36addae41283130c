import { Command } from "commander";
import { applyConfigFile } from "../config.js";
import { checkKeyFlag, checkPinFlag, makeStore, publicKeysReader, resolveDeviceId, type CommonFlags, type KeyFlags } from "../context.js";
import { parseDuration } from "../inputs.js";
import type { CliState } from "../main.js";
import { addOptions } from "../options.js";
import { printJson, reportError, say } from "../output.js";

const HELP = `
EXIT CODES (systemd's ExecCondition= contract)
    0  enrollment is needed: no credentials, half state, invalid, expired or expiring within
       --renew-before, a CA that does not match --ca-fingerprint, an interrupted write
    1  nothing to do: the stored credentials are valid
  255  error (the message says which)

EXAMPLES
  cert-retriever check --device-id f60c28 --out /var/lib/cert-retriever --json

  [Service]
  ExecCondition=/usr/bin/cert-retriever check
  ExecStart=/usr/bin/cert-retriever enroll --non-interactive
`;

/** Exit codes of `check`. */
export const CHECK_EXIT = { NEEDED: 0, NOTHING_TO_DO: 1, ERROR: 255 } as const;

/** `cert-retriever check`: is enrollment needed? Reads the store only; never contacts the platform. */
export function checkCommand(state: CliState): Command {
  const cmd = new Command("check").summary("exit 0 if enrollment is needed, 1 if not, 255 on error (for ExecCondition=)");
  addOptions(cmd, "check")
    .addHelpText("after", HELP)
    .action(async (_f: CommonFlags, command: Command) => {
      try {
        await applyConfigFile(command, say);
        const flags = command.opts<CommonFlags & KeyFlags>();
        state.json ||= Boolean(flags.json);
        const deviceId = await resolveDeviceId({ ...flags, nonInteractive: true }, (key) => command.getOptionValueSource(key));
        const renewBeforeMs = parseDuration(flags.renewBefore, "--renew-before", true);
        await checkPinFlag(flags);
        await checkKeyFlag(flags);
        const store = await makeStore(flags, deviceId);
        const [{ inspectCredentials }, { softwareCrypto }] = await Promise.all([import("../../pipeline/inspect.js"), import("../../crypto/provider.js")]);
        const verdict = await inspectCredentials(store, {
          deviceId,
          crypto: softwareCrypto(),
          publicKeysOf: publicKeysReader(flags, (key) => command.getOptionValueSource(key)),
          caFingerprint: flags.caFingerprint,
          renewBeforeMs,
          now: new Date(),
        });
        if (verdict.state === "valid") {
          say(`nothing to do: '${deviceId}' has valid credentials in ${store.location} until ${verdict.cert.notAfter.toISOString()} (renewal due from ${verdict.renewFrom.toISOString()})`);
          if (flags.json) printJson({ needed: false, deviceId, notAfter: verdict.cert.notAfter.toISOString(), renewFrom: verdict.renewFrom.toISOString() });
          state.exitCode = CHECK_EXIT.NOTHING_TO_DO;
        } else {
          say(`enrollment needed: ${verdict.reason}`);
          if (flags.json) printJson({ needed: true, deviceId, state: verdict.state, reason: verdict.reason });
          state.exitCode = CHECK_EXIT.NEEDED;
        }
      } catch (err) {
        state.exitCode = reportError(err, { debug: state.debug, json: state.json, exitCode: CHECK_EXIT.ERROR });
      }
    });
  return cmd;
}
