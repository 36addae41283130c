import { resolve } from "node:path";
import { Command } from "commander";
import { CertRetrieverError, describeCause } from "../../errors.js";
import { COMMAND_EXIT_CODES } from "../exit-codes.js";
import type { RetryInfo } from "../../transport/http.js";
import { applyConfigFile } from "../config.js";
import { login, openPlatformRun, resolvePlatformUrl, type CommonFlags } from "../context.js";
import { usage } from "../failures.js";
import { boundedRead, parseDuration } from "../inputs.js";
import type { CliState } from "../main.js";
import { addOptions } from "../options.js";
import { exitCodesHelp, printJson, say } from "../output.js";

const HELP = `
A factory line that logs in once per device stalls: dojot's gateway allows /auth 5 times a minute
and 40 times an hour, and every device would need the operator's password. Log in once on the
station, and give the devices the token instead:

  cert-retriever login --platform https://dojot.example.com --username operator \\
    --password-file /run/secrets/operator --token-file /run/station/token
  cert-retriever enroll --platform https://dojot.example.com --device-id "$SERIAL" \\
    --token-file /run/station/token --non-interactive

The token is written with mode 0600 and lives as long as the platform says (dojot: 7 minutes);
'login' shows how long. A token that has expired or is refused is exit 10: log in again.
`;

/** `cert-retriever login`: authenticate once and keep the token for later runs. */
export function loginCommand(state: CliState): Command {
  const cmd = new Command("login").summary("log in once and write the token for later 'enroll --token-file' runs");
  addOptions(cmd, "login")
    .addHelpText("after", HELP + exitCodesHelp(COMMAND_EXIT_CODES.login))
    .action(async (_f: CommonFlags, command: Command) => {
      const startedAt = Date.now();
      const extras = await applyConfigFile(command, say);
      const flags = command.opts<CommonFlags & { api?: string }>();
      state.json ||= Boolean(flags.json);
      if (flags.api === "est") throw usage("EST (RFC 7030) has no login: each enrollment request carries its own credentials", "run 'cert-retriever enroll --api est' with --username and a password, or --client-cert");
      if (!flags.tokenFile) throw usage("login needs --token-file FILE (or CERT_RETRIEVER_TOKEN_FILE) to write the token to");
      const baseUrl = await resolvePlatformUrl(flags);
      const credentials = await login(flags, extras, (key) => command.getOptionValueSource(key));
      await credentials.username(); // asked before the first request, as there is nothing else to do
      const retries: RetryInfo[] = [];
      const { http, interrupt } = await openPlatformRun(flags, startedAt, retries);
      try {
        const { DojotLegacyClient } = await import("../../protocols/ejbca-rest/client.js");
        const client = new DojotLegacyClient({ baseUrl, caName: "", entityPassword: "", http });
        const { logIn } = await import("../../flows/authenticate.js");
        const password = boundedRead(credentials.password, interrupt.signal, startedAt + parseDuration(flags.deadline, "--deadline"));
        const { session, username } = await logIn(client, { ...credentials, password });
        await writeSecretFile(flags.tokenFile, `${session.jwt}\n`);
        const seconds = session.expiresAt ? Math.max(0, Math.round((session.expiresAt.getTime() - Date.now()) / 1000)) : undefined;
        const lifetime = seconds === undefined ? "with no expiry given" : `valid for ${Math.floor(seconds / 60)} min ${seconds % 60} s, until ${session.expiresAt!.toISOString()}`;
        say(`logged in as ${username}${session.tenant ? ` (tenant ${session.tenant})` : ""}; the token is ${lifetime}; written to ${resolve(flags.tokenFile)} (mode 0600)`);
        if (flags.json) printJson({ username, tenant: session.tenant, tokenFile: resolve(flags.tokenFile), expiresAt: session.expiresAt?.toISOString(), validForSeconds: seconds, retries });
        state.exitCode = 0;
      } finally {
        interrupt.dispose();
        await http.close();
      }
    });
  return cmd;
}

/** Writes a secret with mode 0600, staged and renamed so a reader never sees half a token. */
async function writeSecretFile(path: string, text: string): Promise<void> {
  try {
    await (await import("../../fs/safe-dir.js")).replaceFile(path, text, 0o600);
  } catch (err) {
    throw new CertRetrieverError(`cannot write the token to ${path}: ${describeCause(err)}`, {
        cause: err,
      step: "store",
      reason: "storage-failed",
      hint: "check that the directory of --token-file exists and is writable",
    });
  }
}
