import { AsyncLocalStorage } from "node:async_hooks";
import { CertRetrieverError } from "../errors.js";
import { EXIT_CODE_MEANINGS, ExitCode } from "./exit-codes.js";
import { bugJson, exitCodeOf, failureJson, hintOf } from "./hints.js";
import { cliIo } from "./io.js";
import { runLine } from "./live-line.js";
import type { CommandName } from "./options.js";
import { Redactor } from "./redaction.js";

/** Secrets this run holds (the password, the token, a PIN): never printed, in any form, whoever echoes them back. */
const processSecrets = new Redactor();
const runSecrets = new AsyncLocalStorage<Redactor>();

/** The secrets of the run this code is part of (each main() holds its own), else the process's. */
function secrets(): Redactor {
  return runSecrets.getStore() ?? processSecrets;
}

/** Runs `body` with secrets of its own: a run in-process redacts what it was given, not what runs before it held. */
export function withOwnSecrets<T>(body: () => T): T {
  return runSecrets.run(new Redactor(), body);
}

/**
 * Registers a secret this run holds, and the user whose password it is (HTTP Basic sends them
 * together), so that no output ever shows it in any form it took on the wire (a platform may echo
 * it in an error).
 */
export function holdSecret(secret: string, user?: string): void {
  secrets().add(secret, user);
}

/** A secret's reader that registers what it reads with {@link holdSecret}. */
export function heldSecret(read: () => Promise<string>): () => Promise<string> {
  return async () => {
    const secret = await read();
    holdSecret(secret);
    return secret;
  };
}

/**
 * Text fit for a terminal or a log: no control characters (escape sequences from a platform's
 * reply or a certificate's subject could rewrite the screen an operator copies a fingerprint
 * from), no bidirectional overrides, and no secret this run holds.
 */
export function safeText(text: string): string {
  const redacted = secrets().text(text);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it neutralises
  return redacted.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, "?");
}

/** Human text goes to stderr (made safe, after the live line is erased), data to stdout. */
export function say(line: string): void {
  runLine()?.clear();
  cliIo().stderr.write(`${safeText(line)}\n`);
}

/** A line of progress or a result's summary, which --quiet leaves out (it keeps errors, warnings and notes). */
export function tell(flags: { quiet?: boolean }, line: string): void {
  if (!flags.quiet) say(line);
}

/** Prints a command's result as text on stdout, made safe as {@link say}'s lines are. */
export function printText(text: string): void {
  runLine()?.clear();
  cliIo().stdout.write(`${safeText(text)}\n`);
}

/** Prints a value as JSON on stdout (JSON escapes control characters; secrets are redacted from each value before escaping). */
export function printJson(value: unknown): void {
  cliIo().stdout.write(`${secrets().json(value, 2)}\n`);
}

/**
 * Prints a command's result as `--json` gives it (docs/cli-output.schema.json): `"ok": true`, the
 * `command`, then the result's own fields at the top level, where scripts have read them from the start.
 */
export function printResult(command: CommandName, result: object): void {
  printJson({ ok: true, command, ...result });
}

/** How a failure is reported: `--debug` adds stack traces; `--json` adds the error object on stdout; `exitCode` overrides the mapping (check's 255); `command` chooses the hint's flags. */
export interface ReportOptions {
  debug: boolean;
  json?: boolean;
  exitCode?: number;
  command?: string;
}

/**
 * Prints an error once, as one sentence plus a hint on stderr (and with --json, an error object
 * on stdout, so `--json > result.json` always holds a result), and returns the exit code.
 */
export function reportError(err: unknown, opts: ReportOptions): number {
  if (err instanceof CertRetrieverError) {
    const code = opts.exitCode ?? exitCodeOf(err);
    const hint = hintOf(err, opts.command);
    say(`cert-retriever: ${err.message}`);
    if (hint) say(`  hint: ${hint}`);
    if (opts.debug)
      say(
        `reason: ${err.reason}\n${String(err.stack)}` +
          (err.cause ? `\ncause: ${String((err.cause as Error).stack ?? err.cause)}` : ""),
      );
    if (opts.json) printJson(failureJson(err, code, opts.command));
    return code;
  }
  const message = err instanceof Error ? err.message : String(err);
  say(`cert-retriever: unexpected error: ${message}`);
  say("  hint: this is a bug; run again with --debug and report the output");
  if (opts.debug && err instanceof Error) say(String(err.stack));
  if (opts.json) printJson(bugJson(message, opts.exitCode));
  return opts.exitCode ?? ExitCode.UNEXPECTED;
}

/** The EXIT CODES section of a command's help: the codes it can return, with what each means there (the whole table by default). */
export function exitCodesHelp(rows: ReadonlyArray<readonly [number, string]> = EXIT_CODE_MEANINGS): string {
  return `\nEXIT CODES\n${rows.map(([code, meaning]) => `  ${String(code).padStart(3)}  ${meaning}`).join("\n")}\n`;
}
