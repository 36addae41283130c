import { Command } from "commander";
import type { ExportResult } from "../../flows/export.js";
import { type CommonFlags, checkOutDir, resolveDeviceId, storeSettings } from "../agent-settings.js";
import { applyConfigFile } from "../config.js";
import { commandExitCodes } from "../exit-codes.js";
import { usage } from "../hints.js";
import { flagName } from "../names.js";
import { addOptions } from "../options.js";
import { exitCodesHelp, printResult, say, tell } from "../output.js";
import { applyRecorded } from "../remembered.js";
import type { CliState } from "../state.js";

interface ExportFlags extends CommonFlags {
  to?: string;
  format: "pem" | "der";
}

const EXPORT_HELP = `
Copies a device's credentials, from whichever store holds them (--out and --store, as enroll was
given them; the settings recorded there say which), into --to for programs that need files
(mosquitto_pub, openssl, curl). --out means what it means for every command: where the device's
credentials are (files), or where the lock lives (keychain). A key that lives in a PKCS#11 token
never leaves it: the certificate and the CA chain are copied, with the key's pkcs11: URI in
<device-id>.key.uri, and the run says so (exit 0).

  cert-retriever export --device-id f60c28 --store keychain --to /run/cert-retriever
  cert-retriever export --device-id f60c28 --out /var/lib/cert-retriever --to /tmp/f60c28 --format der

Before --to, 'export --out DIR' wrote the keychain's credentials into DIR; that form still works,
with a note, and will be removed: write --store keychain --to DIR.
`;

/** `cert-retriever export`: copies of the stored credentials, as files for programs that need them. */
export function exportCommand(state: CliState): Command {
  const cmd = new Command("export").summary(
    "copy the stored credentials (files, keychain; of a token key, the certificate and chain) into --to",
  );
  addOptions(cmd, "export")
    .addHelpText("after", EXPORT_HELP + exitCodesHelp(commandExitCodes("export")))
    .action(async (_f: ExportFlags, command: Command) => {
      await applyConfigFile(command, say);
      await applyRecorded(command, say);
      const flags = command.opts<ExportFlags>();
      state.json ||= Boolean(flags.json);
      const source = (key: string) => command.getOptionValueSource(key);
      const deviceId = await resolveDeviceId(flags, source);
      const where = destination(flags, source);
      await checkOutDir(where.to);
      const store = await storeSettings({ ...flags, store: where.store }, deviceId);
      const { createAgent } = await import("../../agent.js");
      const agent = createAgent({
        device: { id: deviceId },
        store,
        observer: state.inject?.observer,
        name: flagName,
      });
      const result = await agent.export({ to: where.to, format: flags.format });
      tell(flags, describeExport(result));
      if (flags.json) printResult("export", result);
      state.exitCode = 0;
    });
  return cmd;
}

/**
 * Where the copies go, and the store they come from. Without --to, an --out that was given is the
 * destination of the form before --to, which read the keychain only (its lock lived there too).
 */
function destination(
  flags: ExportFlags,
  source: (key: string) => string | undefined,
): { to: string; store: ExportFlags["store"] } {
  if (flags.to !== undefined) return { to: flags.to, store: flags.store };
  if (source("out") === "default" || source("out") === undefined)
    throw usage(
      "export needs --to DIR: the directory the copies are written to",
      "--out names where the device's credentials are (as for enroll), --to where the copies go",
    );
  say(
    `note: 'export --out DIR' is deprecated and will be removed: it copies the keychain's credentials into DIR, as before; write --store keychain --to ${flags.out}`,
  );
  return { to: flags.out, store: "keychain" };
}

/** What was copied, in a line; a key in a token is said to stay there. */
function describeExport(r: ExportResult): string {
  const files = [r.files.key, r.files.certificate, r.files.ca].filter(Boolean).join(", ");
  const copied = `exported '${r.deviceId}' from ${r.from.location} (${r.format.toUpperCase()}): ${files}`;
  return r.keyInToken
    ? `${copied}, ${r.files.keyUri}; the key stays in its PKCS#11 token (${r.keyInToken}): programs reach it by that URI through OpenSSL's pkcs11 engine or provider`
    : copied;
}
