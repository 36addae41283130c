import { CertRetrieverError } from "../errors.js";
import { cliIo } from "./io.js";

/** Prompts only when asked for, on a terminal (stdin and stderr), and never with --non-interactive. */
export function isInteractive(flags: { nonInteractive?: boolean }): boolean {
  const io = cliIo();
  return !flags.nonInteractive && Boolean(io.stdin.isTTY) && Boolean(io.stderr.isTTY);
}

/** Asks on the terminal (stderr, so stdout stays clean for --json); Ctrl-C is exit 130. The prompt module loads only here. */
export async function ask(kind: "input" | "password", message: string, defaultValue?: string): Promise<string> {
  // Inquirer's prompts one by one (the @inquirer/prompts bundle would drag in the editor prompt and iconv-lite).
  const [{ default: input }, { default: password }] = await Promise.all([
    import("@inquirer/input"),
    import("@inquirer/password"),
  ]);
  const io = cliIo();
  const context = { input: io.stdin, output: io.stderr };
  try {
    const answer =
      kind === "password"
        ? await password({ message, mask: "*", validate: (v) => v.length > 0 || "the password is required" }, context)
        : await input({ message, default: defaultValue, required: true }, context);
    return answer.trim() && kind === "input" ? answer.trim() : answer;
  } catch (err) {
    if ((err as Error).name === "ExitPromptError" || (err as Error).name === "AbortPromptError") {
      throw new CertRetrieverError("interrupted at the prompt; nothing was written", {
        step: "usage",
        reason: "interrupted",
      });
    }
    throw err;
  }
}
