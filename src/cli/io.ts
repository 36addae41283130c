import { AsyncLocalStorage } from "node:async_hooks";

/**
 * What a run of the CLI reads and writes besides files: its environment and its three streams.
 * The process's own, unless a program that runs the CLI in-process hands main() others (a test's
 * captured output, its stdin and environment), so that runs side by side never share them.
 */
export interface CliIo {
  env: NodeJS.ProcessEnv;
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; destroy?(): void };
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
}

/** The process's own (each read when it is used: process.stdin is made on first use). */
const PROCESS_IO: CliIo = {
  get env() {
    return process.env;
  },
  get stdin() {
    return process.stdin;
  },
  get stdout() {
    return process.stdout;
  },
  get stderr() {
    return process.stderr;
  },
};

const runs = new AsyncLocalStorage<CliIo>();

/** The I/O of the run this code is part of: what main() was handed, else the process's. */
export function cliIo(): CliIo {
  return runs.getStore() ?? PROCESS_IO;
}

/** Runs `body` with `io` as the I/O of everything it does, timers and callbacks included. */
export function withIo<T>(io: CliIo | undefined, body: () => T): T {
  return io ? runs.run(io, body) : body();
}
