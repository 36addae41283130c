import { Command, CommanderError, type OutputConfiguration } from "commander";
import { CHECK_EXIT, checkCommand } from "./commands/check.js";
import { completionCommand } from "./commands/completion.js";
import { enrollCommand } from "./commands/enroll.js";
import { exportCommand } from "./commands/export.js";
import { loginCommand } from "./commands/login.js";
import { registerCommand } from "./commands/register.js";
import { signCommand } from "./commands/sign.js";
import { statusCommand } from "./commands/status.js";
import { verifyCommand } from "./commands/verify.js";
import { verifySignatureCommand } from "./commands/verify-signature.js";
import { ExitCode } from "./exit-codes.js";
import { failureJson, usage } from "./hints.js";
import { redactOptionValues, refuseSecretsOnArgv } from "./inputs.js";
import { cliIo, withIo } from "./io.js";
import { closeRunLine, useTicker } from "./live-line.js";
import { refuseCoreDumps } from "./no-core-dumps.js";
import { exitCodesHelp, printJson, reportError, withOwnSecrets } from "./output.js";
import type { CliInjection, CliState } from "./state.js";
import { version } from "./version.js";

/**
 * Runs the CLI with `argv` (without node and the script) and returns the exit code. The only place
 * that prints errors. A program that runs it in-process may hand it its own streams and environment,
 * and its agents an observer, a clock and a name resolver (`inject`).
 */
export async function main(argv: string[], inject?: CliInjection): Promise<number> {
  return withIo(inject?.io, () => withOwnSecrets(() => run(argv, inject).finally(closeRunLine)));
}

async function run(argv: string[], inject?: CliInjection): Promise<number> {
  if (inject?.ticker) useTicker(inject.ticker);
  // `cert-retriever --help | head`: a reader that goes away is not an error (the process's own streams).
  if (!inject?.io) {
    for (const stream of [process.stdout, process.stderr]) {
      stream.on("error", (err: NodeJS.ErrnoException) => {
        if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
        throw err;
      });
    }
  }
  const state: CliState = {
    debug: argv.includes("--debug"),
    json: argv.includes("--json"),
    exitCode: ExitCode.OK as number,
    inject,
  };
  // `-v` and `-V` both print the version, as most CLIs do.
  if (argv.length === 1 && argv[0] === "-V") argv = ["-v"];
  const command = argv.find((a) => !a.startsWith("-"));
  const isCheck = command === "check";
  const program = buildProgram(state, isCheck, command);
  // Before a command reads any setting or secret, a crash must no longer be able to write them into
  // a core file (--help and --version, which read nothing, are spared the cost). A program that runs
  // the CLI in-process with streams of its own owns its process's limits.
  if (!inject?.io) program.hook("preAction", refuseCoreDumps);
  if (argv.length === 0) {
    // No command is a usage mistake: the help goes to stderr, and the exit code says so.
    cliIo().stderr.write(program.helpInformation());
    return ExitCode.USAGE;
  }
  try {
    refuseSecretsOnArgv(argv);
    await program.parseAsync(argv, { from: "user" });
    return state.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help asked for is success; help shown because a command is missing (`cert-retriever lab`) is a usage mistake.
      const ok =
        ["commander.helpDisplayed", "commander.version"].includes(err.code) ||
        (err.code === "commander.help" && err.exitCode === 0);
      // Under ExecCondition=, 1-254 mean "skip the unit": every failure of `check` must be 255.
      return ok ? ExitCode.OK : isCheck ? CHECK_EXIT.ERROR : ExitCode.USAGE;
    }
    return reportError(err, {
      debug: state.debug,
      json: state.json,
      exitCode: isCheck ? CHECK_EXIT.ERROR : undefined,
      command,
    });
  }
}

/**
 * The command tree, with every command and option: what main() parses with, and what the man page
 * and the completion scripts are made from. `isCheck`: usage errors are `check`'s 255; `command`:
 * the command named on the command line, for the `command` of a usage error's --json object.
 * @public scripts/man.mjs imports it from dist/ (where knip does not look).
 */
export function buildProgram(state: CliState, isCheck = false, command?: string): Command {
  // A usage error of commander's: one prefix for every message, and with --json an error object on stdout.
  const outputError = (text: string, write: (s: string) => void) => {
    const message = redactOptionValues(text).replace(/^error: /, "cert-retriever: ");
    write(message);
    if (state.json && !/^\(run with --help/.test(message)) {
      printJson(
        failureJson(
          usage(message.replace(/^cert-retriever: /, "").trim()),
          isCheck ? CHECK_EXIT.ERROR : ExitCode.USAGE,
          command,
        ),
      );
    }
  };
  const output = outputOf(outputError);
  const program = new Command("cert-retriever")
    .description("Gives an IoT device its X.509 identity from a dojot platform.")
    .version(version(), "-v, --version", "print the version")
    .option("--debug", "show stack traces and causes of errors")
    .addHelpText("after", exitCodesHelp())
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride()
    .configureOutput(output);
  program.addCommand(enrollCommand(state));
  program.addCommand(loginCommand(state));
  program.addCommand(checkCommand(state));
  program.addCommand(statusCommand(state));
  program.addCommand(verifyCommand(state));
  program.addCommand(exportCommand(state));
  program.addCommand(registerCommand(state));
  program.addCommand(signCommand(state));
  program.addCommand(verifySignatureCommand(state));
  program.addCommand(labElsewhere(), { hidden: true });
  program.addCommand(completionCommand(state));
  const { env } = cliIo();
  for (const cmd of allCommands(program)) {
    cmd.exitOverride().configureOutput(output);
    if (env !== process.env) readEnvFrom(cmd, env);
  }
  return program;
}

/**
 * Where commander writes help, versions and its errors: the run's streams (help as wide as a
 * terminal, as commander does).
 */
function outputOf(outputError: (text: string, write: (s: string) => void) => void): OutputConfiguration {
  return {
    outputError,
    writeOut: (text) => cliIo().stdout.write(text),
    writeErr: (text) => cliIo().stderr.write(text),
    getOutHelpWidth: () => widthOf(cliIo().stdout),
    getErrHelpWidth: () => widthOf(cliIo().stderr),
  };
}

/** A terminal's width; none otherwise (commander's default then, as its own getter returns for a pipe). */
function widthOf(stream: { isTTY?: boolean; columns?: number }): number {
  return (stream.isTTY ? stream.columns : undefined) as number;
}

/**
 * Commander reads an option's variable (CERT_RETRIEVER_…) from process.env; a run handed an
 * environment of its own reads it there instead, with commander's rule: a flag wins, the variable
 * fills what is unset or only defaulted. (This replaces commander's `_parseOptionsEnv`, which
 * commander 14 calls after parsing the flags; the unit tests of precedence would fail if it did not.)
 */
function readEnvFrom(cmd: Command, env: NodeJS.ProcessEnv): void {
  const events = cmd as unknown as NodeJS.EventEmitter;
  (cmd as Command & { _parseOptionsEnv(): void })._parseOptionsEnv = () => {
    for (const option of cmd.options) {
      if (!option.envVar || !(option.envVar in env)) continue;
      const key = option.attributeName();
      const source = cmd.getOptionValueSource(key);
      if (cmd.getOptionValue(key) !== undefined && !["default", "config", "env"].includes(source ?? "")) continue;
      if (option.required || option.optional) events.emit(`optionEnv:${option.name()}`, env[option.envVar]);
      else events.emit(`optionEnv:${option.name()}`);
    }
  };
}

/** `lab`, which used to be a command: the lab platform is a package of its own, which the agent neither carries nor imports. */
function labElsewhere(): Command {
  return new Command("lab")
    .allowUnknownOption()
    .allowExcessArguments()
    .helpOption(false)
    .action(() => {
      throw usage(
        "the lab platform is its own package, cert-retriever-lab, not part of cert-retriever: in a clone of the repository, after npm ci, run npx cert-retriever-lab serve ...",
      );
    });
}

function allCommands(cmd: Command): Command[] {
  return [cmd, ...cmd.commands.flatMap(allCommands)];
}
