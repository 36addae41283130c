import { CertRetrieverError } from "../errors.js";
import { EXIT_CODE_MEANINGS, ExitCode } from "../exit-codes.js";

/** Human text goes to stderr, data to stdout. */
export function say(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** Prints a result as JSON on stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Prints an error once, as one sentence plus a hint, and returns the exit code. Stack traces only with --debug. */
export function reportError(err: unknown, debug: boolean): ExitCode {
  if (err instanceof CertRetrieverError) {
    say(`cert-retriever: ${err.message}`);
    if (err.hint) say(`  hint: ${err.hint}`);
    if (debug) say(String(err.stack) + (err.cause ? `\ncause: ${String((err.cause as Error).stack ?? err.cause)}` : ""));
    return err.exitCode;
  }
  const message = err instanceof Error ? err.message : String(err);
  say(`cert-retriever: unexpected error: ${message}`);
  say("  hint: this is a bug; run again with --debug and report the output");
  if (debug && err instanceof Error) say(String(err.stack));
  return ExitCode.UNEXPECTED;
}

/** The EXIT CODES section of the help text. */
export function exitCodesHelp(): string {
  return `\nEXIT CODES\n${EXIT_CODE_MEANINGS.map(([code, meaning]) => `  ${String(code).padStart(3)}  ${meaning}`).join("\n")}\n`;
}

/** Colour only on a terminal, and never when NO_COLOR is set. */
function colour(code: number, text: string): string {
  return process.stderr.isTTY && !process.env.NO_COLOR ? `\u001b[${code}m${text}\u001b[0m` : text;
}

/**
 * Renders enrollment progress on stderr: a tick per step on a terminal, plain lines otherwise
 * (journald, CI logs).
 */
export function progress(tty: boolean): (event: { type: "step"; step: string; index: number; total: number; ms: number; detail: string } | { type: "note"; message: string }) => void {
  return (event) => {
    if (event.type === "note") {
      say(`${tty ? colour(33, "!") + " " : ""}note: ${event.message}`);
      return;
    }
    const line = `[${event.index}/${event.total}] ${event.step}: ${event.detail} (${event.ms} ms)`;
    say(tty ? `${colour(32, "✔")} ${line}` : line);
  };
}
