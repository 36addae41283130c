import { Command } from "commander";
import { CertRetrieverError } from "../../errors.js";
import { type CommonFlags, checkKeyFlag, checkOutDir, type KeyFlags, resolveDeviceId } from "../agent-settings.js";
import { applyConfigFile } from "../config.js";
import { COMMAND_EXIT_CODES } from "../exit-codes.js";
import { checkFileName } from "../inputs.js";
import { addOptions } from "../options.js";
import { exitCodesHelp, printJson, say, tell } from "../output.js";
import { applyRecorded } from "../remembered.js";
import type { CliState } from "../state.js";

const EXPORT_HELP = `
For programs that need files (mosquitto_pub, openssl) while the keychain keeps the originals:

  cert-retriever export --device-id f60c28 --out /run/cert-retriever
`;

/** `cert-retriever export`: the keychain's credentials as files, for programs that need files. */
export function exportCommand(state: CliState): Command {
  const cmd = new Command("export").summary(
    "write the keychain's credentials as files in --out (key 0600, directory 0700)",
  );
  addOptions(cmd, "export")
    .addHelpText("after", EXPORT_HELP + exitCodesHelp(COMMAND_EXIT_CODES.export))
    .action(async (_f: CommonFlags, command: Command) => {
      await applyConfigFile(command, say);
      await applyRecorded(command, say);
      const flags = command.opts<CommonFlags & KeyFlags>();
      state.json ||= Boolean(flags.json);
      const deviceId = await resolveDeviceId(flags, (key) => command.getOptionValueSource(key));
      await checkKeyFlag(flags);
      const inToken = flags.key !== undefined;
      const refuse = () =>
        new CertRetrieverError(`export failed: the key of '${deviceId}' lives in a PKCS#11 token and never leaves it`, {
          step: "export",
          reason: "key-in-token",
        });
      if (inToken) throw refuse();
      await checkOutDir(flags.out);
      checkFileName(flags.caName, "--ca-name");
      const [{ KeychainStore }, { FilesStore }] = await Promise.all([
        import("../../store/keychain-store.js"),
        import("../../store/files-store.js"),
      ]);
      const stored = await new KeychainStore(deviceId, flags.caName, flags.out).read();
      if (!stored.pems) {
        throw new CertRetrieverError(`export failed: the keychain holds no complete credentials for '${deviceId}'`, {
          step: "export",
          reason: "not-enrolled",
          hint: "enroll first with --store keychain",
        });
      }
      if ((await import("../../keys/pkcs11-uri.js")).isKeyUri(stored.pems.key)) throw refuse();
      const files = new FilesStore(flags.out, deviceId, flags.caName);
      const opened = await files.open();
      let ok = false;
      try {
        await files.write(stored.pems);
        ok = true;
      } finally {
        await opened.close(ok);
      }
      tell(
        flags,
        `exported '${deviceId}' from the keychain: ${files.paths.key}, ${files.paths.certificate}, ${files.paths.ca}`,
      );
      if (flags.json) printJson({ deviceId, files: files.paths });
      state.exitCode = 0;
    });
  return cmd;
}
