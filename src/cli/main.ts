import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { CHECK_EXIT, checkCommand } from "./commands/check.js";
import { completionCommand } from "./commands/completion.js";
import { enrollCommand } from "./commands/enroll.js";
import { exportCommand } from "./commands/export.js";
import { loginCommand } from "./commands/login.js";
import { registerCommand } from "./commands/register.js";
import { verifyCommand } from "./commands/verify.js";
import { ExitCode } from "./exit-codes.js";
import { failureJson, usage } from "./hints.js";
import { redactOptionValues, refuseSecretsOnArgv } from "./inputs.js";
import { refuseCoreDumps } from "./no-core-dumps.js";
import { exitCodesHelp, printJson, reportError } from "./output.js";
import type { CliInjection, CliState } from "./state.js";

/** Set by the single-file build, which has no package.json beside it. */
declare const __CERT_RETRIEVER_VERSION__: string | undefined;

/** The version from package.json (or the one the single-file build was made with). */
function version(): string {
  if (typeof __CERT_RETRIEVER_VERSION__ === "string") return __CERT_RETRIEVER_VERSION__;
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

/**
 * Runs the CLI with `argv` (without node and the script) and returns the exit code. The only place
 * that prints errors. A program that runs it in-process may hand its agents an observer (`inject`).
 */
export async function main(argv: string[], inject?: CliInjection): Promise<number> {
  // `cert-retriever --help | head`: a reader that goes away is not an error.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
      throw err;
    });
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
  const program = buildProgram(state, isCheck);
  // Before a command reads any setting or secret, a crash must no longer be able to write them into
  // a core file (--help and --version, which read nothing, are spared the cost).
  program.hook("preAction", refuseCoreDumps);
  if (argv.length === 0) {
    // No command is a usage mistake: the help goes to stderr, and the exit code says so.
    process.stderr.write(program.helpInformation());
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
 * and the completion scripts are made from. `isCheck`: usage errors are `check`'s 255.
 * @public scripts/man.mjs imports it from dist/ (where knip does not look).
 */
export function buildProgram(state: CliState, isCheck = false): Command {
  // A usage error of commander's: one prefix for every message, and with --json an error object on stdout.
  const outputError = (text: string, write: (s: string) => void) => {
    const message = redactOptionValues(text).replace(/^error: /, "cert-retriever: ");
    write(message);
    if (state.json && !/^\(run with --help/.test(message)) {
      printJson(
        failureJson(
          usage(message.replace(/^cert-retriever: /, "").trim()),
          isCheck ? CHECK_EXIT.ERROR : ExitCode.USAGE,
        ),
      );
    }
  };
  const program = new Command("cert-retriever")
    .description("Gives an IoT device its X.509 identity from a dojot platform.")
    .version(version(), "-v, --version", "print the version")
    .option("--debug", "show stack traces and causes of errors")
    .addHelpText("after", exitCodesHelp())
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride()
    .configureOutput({ outputError });
  program.addCommand(enrollCommand(state));
  program.addCommand(loginCommand(state));
  program.addCommand(checkCommand(state));
  program.addCommand(verifyCommand(state));
  program.addCommand(exportCommand(state));
  program.addCommand(registerCommand(state));
  program.addCommand(labElsewhere(), { hidden: true });
  program.addCommand(completionCommand(state));
  for (const cmd of allCommands(program)) {
    cmd.exitOverride().configureOutput({ outputError });
  }
  return program;
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
