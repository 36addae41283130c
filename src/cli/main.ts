import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { ExitCode } from "../exit-codes.js";
import { CHECK_EXIT, checkCommand } from "./commands/check.js";
import { completionCommand } from "./commands/completion.js";
import { enrollCommand } from "./commands/enroll.js";
import { exportCommand } from "./commands/export.js";
import { loginCommand } from "./commands/login.js";
import { verifyCommand } from "./commands/verify.js";
import { labCommand } from "./commands/lab.js";
import { redactOptionValues, refuseSecretsOnArgv } from "./inputs.js";
import { exitCodesHelp, reportError } from "./output.js";

/** Set by the single-file build, which has no package.json beside it. */
declare const __CERT_RETRIEVER_VERSION__: string | undefined;

/** The version from package.json (or the one the single-file build was made with). */
function version(): string {
  if (typeof __CERT_RETRIEVER_VERSION__ === "string") return __CERT_RETRIEVER_VERSION__;
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

/** Runs the CLI with `argv` (without node and the script) and returns the exit code. The only place that prints errors. */
export async function main(argv: string[]): Promise<number> {
  // `cert-retriever --help | head`: a reader that goes away is not an error.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
      throw err;
    });
  }
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
  program.addCommand(completionCommand(state));
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
      // Under ExecCondition=, 1-254 mean "skip the unit": every failure of `check` must be 255.
      return ok ? ExitCode.OK : argv.find((a) => !a.startsWith("-")) === "check" ? CHECK_EXIT.ERROR : ExitCode.USAGE;
    }
    return reportError(err, state.debug);
  }
}

function allCommands(cmd: Command): Command[] {
  return [cmd, ...cmd.commands.flatMap(allCommands)];
}
