import { Command, CommanderError } from "commander";
import { deviceCommand } from "./device.js";
import { LabCliError, say } from "./inputs.js";
import { LAB_HELP, serveCommand } from "./serve.js";
import { serverCertCommand } from "./server-cert.js";

/** Set by the lab's build from its package.json. */
declare const __CERT_RETRIEVER_LAB_VERSION__: string | undefined;

/** The lab's command tree. */
function program(): Command {
  // One prefix for commander's own messages, as for the lab's.
  const outputError = (text: string, write: (s: string) => void) =>
    write(text.replace(/^error: /, "cert-retriever-lab: "));
  const lab = new Command("cert-retriever-lab")
    .description(
      "a dojot-compatible lab platform for demos and tests: dojot's EJBCA-REST and x509-identity-mgmt behind Kong, and EST",
    )
    .version(
      typeof __CERT_RETRIEVER_LAB_VERSION__ === "string" ? __CERT_RETRIEVER_LAB_VERSION__ : "0.0.0",
      "-v, --version",
      "print the version",
    )
    .addHelpText("after", LAB_HELP)
    .showHelpAfterError("(run with --help for usage)");
  lab.addCommand(serveCommand());
  lab.addCommand(serverCertCommand());
  lab.addCommand(deviceCommand());
  const all = (cmd: Command): Command[] => [cmd, ...cmd.commands.flatMap(all)];
  for (const cmd of all(lab)) cmd.exitOverride().configureOutput({ outputError });
  return lab;
}

/**
 * Runs `cert-retriever-lab ARGV` and returns its exit code: 0, 2 for a usage mistake, 3 for a file
 * it was given that cannot be used, 1 for anything else (a bug). The only place that prints errors.
 */
export async function run(argv: string[]): Promise<number> {
  const lab = program();
  if (argv.length === 0) {
    process.stderr.write(lab.helpInformation());
    return 2;
  }
  try {
    await lab.parseAsync(argv, { from: "user" });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help asked for is success; help shown because a command is missing (`device`) is a usage mistake.
      return ["commander.helpDisplayed", "commander.version"].includes(err.code) ||
        (err.code === "commander.help" && err.exitCode === 0)
        ? 0
        : 2;
    }
    if (err instanceof LabCliError) {
      say(`cert-retriever-lab: ${err.message}`);
      if (err.hint) say(`  hint: ${err.hint}`);
      return err.code;
    }
    say(`cert-retriever-lab: unexpected error: ${err instanceof Error ? err.message : String(err)}`);
    say("  hint: this is a bug of the lab; the stack follows");
    if (err instanceof Error) say(String(err.stack));
    return 1;
  }
}
