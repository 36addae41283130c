import { ExitCode } from "./exit-codes.js";

/** The steps of an enrollment, in order, plus the phases before and after it. */
export type Step =
  | "usage"
  | "config"
  | "check-existing"
  | "lock"
  | "authenticate"
  | "fetch-ca"
  | "generate-key"
  | "build-csr"
  | "submit-csr"
  | "validate"
  | "bind"
  | "store"
  | "verify"
  | "lab";

/** Options of a {@link CertRetrieverError}. */
export interface ErrorDetails {
  step: Step;
  exitCode: ExitCode;
  /** What the user can do about it: a flag, a variable, a platform action. */
  hint?: string;
  cause?: unknown;
}

/**
 * The one error family of cert-retriever. Its message is a single sentence naming what failed;
 * it never contains a secret. The CLI prints it once and exits with `exitCode`.
 */
export class CertRetrieverError extends Error {
  readonly step: Step;
  readonly exitCode: ExitCode;
  readonly hint?: string;

  constructor(message: string, details: ErrorDetails) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = "CertRetrieverError";
    this.step = details.step;
    this.exitCode = details.exitCode;
    this.hint = details.hint;
  }
}

/** A usage error (exit 2): a flag or argument is missing or invalid. */
export function usageError(message: string, hint?: string, cause?: unknown): CertRetrieverError {
  return new CertRetrieverError(message, { step: "usage", exitCode: ExitCode.USAGE, hint, cause });
}

/** The message of any thrown value, for wrapping causes into one sentence. */
export function describeCause(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code && err.message.startsWith(`${code}: `)) {
      // Node's file errors: "ENOSPC: no space left on device, write '/path'" -> "no space left on device (ENOSPC)"
      return `${err.message.slice(code.length + 2).replace(/, \w+( '[^']*')*$/, "")} (${code})`;
    }
    return code && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
  }
  return String(err);
}
