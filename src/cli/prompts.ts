import { CertRetrieverError } from "../errors.js";
import { cliIo } from "./io.js";
import { runLine } from "./live-line.js";
import { say } from "./output.js";

/** Prompts only when asked for, on a terminal (stdin and stderr), and never with --non-interactive. */
export function isInteractive(flags: { nonInteractive?: boolean }): boolean {
  const io = cliIo();
  return !flags.nonInteractive && Boolean(io.stdin.isTTY) && Boolean(io.stderr.isTTY);
}

/** The most times a terminal asks for one value (or a refused password or PIN) before the run gives up. */
export const PROMPT_TRIES = 3;

/**
 * Asks on the terminal (stderr, so stdout stays clean for --json), the live line held meanwhile;
 * Ctrl-C is exit 130. The prompt module loads only here.
 */
export async function ask(kind: "input" | "password", message: string, defaultValue?: string): Promise<string> {
  const line = runLine();
  return line ? line.hold(() => prompt(kind, message, defaultValue)) : prompt(kind, message, defaultValue);
}

async function prompt(kind: "input" | "password", message: string, defaultValue?: string): Promise<string> {
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
        : await input({ message, default: defaultValue }, context);
    return kind === "input" ? answer.trim() : answer;
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

/**
 * Asks for a value until `check` takes it: a value it refuses (a usage error) is explained, with
 * `advice` in the prompt's terms, and asked for again, up to {@link PROMPT_TRIES} times in all;
 * the last refusal is the run's usage error.
 */
export async function askUntil<T>(
  message: string,
  check: (answer: string) => T | Promise<T>,
  opts: { default?: string; advice?: string } = {},
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const answer = await ask("input", message, opts.default);
    try {
      return await check(answer);
    } catch (err) {
      if (!(err instanceof CertRetrieverError) || err.reason !== "usage" || attempt >= PROMPT_TRIES) throw err;
      tryAgain(err.message, attempt, opts.advice);
    }
  }
}

/** Says why the value typed on `attempt` (from 1) was refused, and that it is asked for again. */
export function tryAgain(why: string, attempt: number, advice?: string): void {
  say(`cert-retriever: ${why}`);
  if (advice) say(`  ${advice}`);
  say(`  try again (${attempt + 1} of ${PROMPT_TRIES})`);
}
