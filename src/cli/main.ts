import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { ExitCode } from "../exit-codes.js";
import { checkCommand } from "./commands/check.js";
import { enrollCommand } from "./commands/enroll.js";
import { exportCommand } from "./commands/export.js";
import { loginCommand } from "./commands/login.js";
import { verifyCommand } from "./commands/verify.js";
import { labCommand } from "./commands/lab.js";
import { redactOptionValues, refuseSecretsOnArgv } from "./inputs.js";
import { exitCodesHelp, reportError } from "./output.js";

/** The version from package.json. */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

/** Runs the CLI with `argv` (without node and the script) and returns the exit code. The only place that prints errors. */
export async function main(argv: string[]): Promise<number> {
  const state = { debug: argv.includes("--debug"), exitCode: ExitCode.OK as number };
  const program = new Command("cert-retriever")
    .description("Gives an IoT device its X.509 identity from a dojot platform.")
    .version(version(), "-V, --version")
    .option("--debug", "show stack traces and causes of errors")
    .addHelpText("after", exitCodesHelp())
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(redactOptionValues(text)) });
  program.addCommand(enrollCommand(state));
  program.addCommand(loginCommand(state));
  program.addCommand(checkCommand(state));
  program.addCommand(verifyCommand(state));
  program.addCommand(exportCommand(state));
  program.addCommand(labCommand(state));
  for (const cmd of allCommands(program)) {
    cmd.exitOverride().configureOutput({ outputError: (text, write) => write(redactOptionValues(text)) });
  }
  try {
    refuseSecretsOnArgv(argv);
    await program.parseAsync(argv, { from: "user" });
    return state.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      const ok = ["commander.helpDisplayed", "commander.version", "commander.help"].includes(err.code);
      return ok ? ExitCode.OK : ExitCode.USAGE;
    }
    return reportError(err, state.debug);
  }
}

function allCommands(cmd: Command): Command[] {
  return [cmd, ...cmd.commands.flatMap(allCommands)];
}
