import { resolve } from "node:path";
import { Command } from "commander";
import { CertRetrieverError, describeCause } from "../../errors.js";
import { protocolNamed } from "../../protocols/registry.js";
import type { Session } from "../../protocols/types.js";
import type { RetryInfo } from "../../transport/http.js";
import {
  type CommonFlags,
  networkSettings,
  onInterrupt,
  platformTls,
  refuseLacking,
  resolvePlatformUrl,
} from "../agent-settings.js";
import { applyConfigFile } from "../config.js";
import { commandExitCodes } from "../exit-codes.js";
import { usage } from "../hints.js";
import { boundedRead, parseDuration } from "../inputs.js";
import { flagName } from "../names.js";
import { addOptions } from "../options.js";
import { exitCodesHelp, printResult, say, tell } from "../output.js";
import { login } from "../secrets.js";
import type { CliState } from "../state.js";

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
    .addHelpText("after", HELP + exitCodesHelp(commandExitCodes("login")))
    .action(async (_f: CommonFlags, command: Command) => {
      state.exitCode = await runLogin(command, state);
    });
  return cmd;
}

/** Logs in with the agent and writes the token; the user is asked for before the first request. */
async function runLogin(command: Command, state: CliState): Promise<number> {
  const startedAt = Date.now();
  const extras = await applyConfigFile(command, say);
  const flags = command.opts<CommonFlags>();
  state.json ||= Boolean(flags.json);
  const plugin = protocolNamed(flags.api ?? "auto");
  refuseLacking(plugin, "login", flags.api ?? "auto");
  if (!flags.tokenFile)
    throw usage("login needs --token-file FILE (or CERT_RETRIEVER_TOKEN_FILE) to write the token to");
  // Before any request: a directory on its way that another user could swap would send the token to them.
  await (await import("../../fs/safe-dir.js")).checkFilePath(flags.tokenFile, "the token file");
  const baseUrl = await resolvePlatformUrl(flags);
  const credentials = await login(flags, extras, (key) => command.getOptionValueSource(key));
  await credentials.username(); // asked before the first request, as there is nothing else to do
  const tls = await platformTls(flags);
  const retries: RetryInfo[] = [];
  const interrupt = onInterrupt();
  const password = boundedRead(
    credentials.password,
    interrupt.signal,
    startedAt + parseDuration(flags.deadline, "--deadline"),
  );
  const { createAgent } = await import("../../agent.js");
  const agent = createAgent({
    platform: { url: baseUrl, protocol: plugin, tls },
    device: { id: "" },
    login: { ...credentials, password },
    network: networkSettings(flags, startedAt, interrupt.signal, retries, state.inject?.lookup),
    name: flagName,
  });
  interrupt.listen();
  try {
    const { session, username } = await agent.login();
    await writeSecretFile(flags.tokenFile, `${session.jwt}\n`);
    report(session, username, resolve(flags.tokenFile), flags.json ? retries : undefined, flags);
    return 0;
  } finally {
    interrupt.dispose();
    await agent.close();
  }
}

/** Says how long the token lives and where it is (and with --json prints it). */
function report(
  session: Session,
  username: string,
  tokenFile: string,
  retries: RetryInfo[] | undefined,
  flags: { quiet?: boolean },
): void {
  const seconds = session.expiresAt
    ? Math.max(0, Math.round((session.expiresAt.getTime() - Date.now()) / 1000))
    : undefined;
  const lifetime =
    seconds === undefined
      ? "with no expiry given"
      : `valid for ${Math.floor(seconds / 60)} min ${seconds % 60} s, until ${session.expiresAt!.toISOString()}`;
  tell(
    flags,
    `logged in as ${username}${session.tenant ? ` (tenant ${session.tenant})` : ""}; the token is ${lifetime}; written to ${tokenFile} (mode 0600)`,
  );
  if (retries)
    printResult("login", {
      username,
      tenant: session.tenant,
      tokenFile,
      expiresAt: session.expiresAt?.toISOString(),
      validForSeconds: seconds,
      retries,
    });
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
