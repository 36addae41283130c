import type { AgentEvent } from "../flows/steps.js";
import type { WriteObserver } from "../store/types.js";

/** What a program that runs the CLI in-process may hand its agents (a test's injected faults, tracing). */
export interface CliInjection {
  /** Sees each point of a credential write. */
  observer?: WriteObserver;
  /** Sees each event of a run, after the CLI has rendered it. */
  onEvent?: (event: AgentEvent) => void;
}

/** What commands share with main: flags that matter to the error report, the exit code, and what was injected. */
export interface CliState {
  debug: boolean;
  /** --json was given (on the command line or in the config file): failures print an error object too. */
  json: boolean;
  exitCode: number;
  inject?: CliInjection;
}
