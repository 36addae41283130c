import type { LookupFunction } from "node:net";
import type { AgentEvent } from "../flows/steps.js";
import type { WriteObserver } from "../store/types.js";
import type { CliIo } from "./io.js";
import type { Ticker } from "./live-line.js";

/** What a program that runs the CLI in-process may hand it (a test's streams, environment, faults, clock; tracing). */
export interface CliInjection {
  /** The run's environment and streams instead of the process's (see io.ts). */
  io?: CliIo;
  /** The agents' clock instead of the system's. */
  clock?: () => Date;
  /** How the agents resolve host names instead of the system's resolver (a test's name server). */
  lookup?: LookupFunction;
  /** Sees each point of a credential write. */
  observer?: WriteObserver;
  /** Sees each event of a run, after the CLI has rendered it. */
  onEvent?: (event: AgentEvent) => void;
  /** The live line's clock and timer instead of the process's. */
  ticker?: Ticker;
}

/** What commands share with main: flags that matter to the error report, the exit code, and what was injected. */
export interface CliState {
  debug: boolean;
  /** --json was given (on the command line or in the config file): failures print an error object too. */
  json: boolean;
  exitCode: number;
  inject?: CliInjection;
}
