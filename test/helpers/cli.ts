import { resolve } from "node:path";
import { PassThrough, Readable, Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import type { CliInjection } from "../../src/cli/state.js";
import { runProgram } from "./program.js";

/**
 * The CLI as users run it: bin/ (the TypeScript build), or the single-file build when
 * CERT_RETRIEVER_TEST_BIN names it (CI runs the whole suite both ways).
 */
export const BIN = process.env.CERT_RETRIEVER_TEST_BIN
  ? resolve(process.env.CERT_RETRIEVER_TEST_BIN)
  : fileURLToPath(new URL("../../bin/cert-retriever.mjs", import.meta.url));

/** The CLI from the TypeScript build run in-process by a test-owned entry that injects a fault at one point of a run (see fault-cli.mjs). */
const FAULT_CLI = fileURLToPath(new URL("./fault-cli.mjs", import.meta.url));

/**
 * The lab platform's command, `cert-retriever-lab` (a package of its own, lab/): its bin/, or its
 * single file (lab/dist/cert-retriever-lab.mjs) when CERT_RETRIEVER_TEST_LAB_BIN names it.
 */
export const LAB_BIN = process.env.CERT_RETRIEVER_TEST_LAB_BIN
  ? resolve(process.env.CERT_RETRIEVER_TEST_LAB_BIN)
  : fileURLToPath(new URL("../../lab/bin/cert-retriever-lab.mjs", import.meta.url));

/** The command line of `cert-retriever ARGS` (after node): `lab ...` is `cert-retriever-lab ...`, a run with a fault to the fault-injecting entry. */
export function commandLine(args: string[], opts: { bin?: string; fault?: string } = {}): string[] {
  if (opts.bin) return [opts.bin, ...args];
  if (args[0] === "lab") return [LAB_BIN, ...args.slice(1)];
  if (opts.fault) return [FAULT_CLI, opts.fault, ...args];
  return [BIN, ...args];
}

/** What a run of the CLI printed and returned. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Secrets that must never appear in any output; tests add the passwords and tokens they use. */
export const SECRETS = new Set<string>();

/** The header every HS256 JWT starts with: no token may be printed. */
const JWT_PREFIX = Buffer.from(JSON.stringify({ alg: "HS256", typ: "JWT" })).toString("base64url");

/**
 * The project of the test file that runs (vitest.config.ts sets it): in `unit` the CLI runs in this
 * process (runMain), everywhere else as a process of its own.
 */
const IN_PROCESS = process.env.CERT_RETRIEVER_TEST_PROJECT === "unit";

/**
 * Runs `cert-retriever ARGS` as the test's project runs the CLI: in the `unit` project in this
 * process (runMain: no process is started, so a cwd, another bin or a kill is refused there), else as
 * a child process with the node that runs the tests. A clean environment plus `env`, `input` on
 * stdin, and a time limit; `fault`: with a fault injected (see fault-cli.mjs). Fails the test if any
 * output contains a registered secret or a JWT.
 */
export async function runCli(args: string[], opts: RunOptions & { cwd?: string; bin?: string } = {}): Promise<CliRun> {
  if (!IN_PROCESS) return runProcess(args, opts);
  if (opts.bin !== undefined || args[0] === "lab")
    throw new Error(
      `cert-retriever ${args[0]}: a unit test starts no process (move the test to test/cli or test/system)`,
    );
  return runMain(args, opts);
}

/** `cert-retriever ARGS` as a child process, whatever the project (see runCli). */
async function runProcess(args: string[], opts: RunOptions & { cwd?: string; bin?: string } = {}): Promise<CliRun> {
  const run = await runProgram([process.execPath, ...commandLine(args, opts)], {
    env: runEnv(opts.env),
    cwd: opts.cwd,
    input: opts.input,
    timeoutMs: opts.timeoutMs,
  });
  assertNoSecrets(`${run.stdout}\n${run.stderr}`, args);
  return run;
}

/** How a test runs the CLI: arguments aside, the same for a process and for an in-process run. */
export interface RunOptions {
  /** Added to a clean environment (PATH, HOME, NO_COLOR=1); an undefined value is left out. */
  env?: Record<string, string | undefined>;
  /** What stdin holds (then it ends); nothing by default. */
  input?: string;
  /** A bound, not an expectation: a run still going then fails the test. */
  timeoutMs?: number;
  /** A fault injected at one point of the run: POINT (an error thrown there) or, in a process only, kill:POINT (see fault-cli.mjs). */
  fault?: string;
}

/** The clean environment every run starts from, plus `env`. */
function runEnv(env: RunOptions["env"]): Record<string, string> {
  const out: Record<string, string> = {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? "/root",
    NO_COLOR: "1",
  };
  for (const [k, v] of Object.entries(env ?? {})) if (v !== undefined) out[k] = v;
  return out;
}

/**
 * What a fault string injects into a run: at `after-<step>` the step's event throws, at
 * `store:<point>` or `keychain:<point>` the credential store's write observer does (the same rule
 * as fault-cli.mjs, which kills the process there instead for `kill:`).
 */
function faultInjection(fault: string | undefined): Pick<CliInjection, "observer" | "onEvent"> {
  if (fault === undefined) return {};
  if (fault.startsWith("kill:")) throw new Error(`${fault}: a kill needs a process of its own (runCli, not runMain)`);
  const strike = () => {
    throw new Error(`injected fault at ${fault}`);
  };
  const step = fault.startsWith("after-") ? fault.slice("after-".length) : undefined;
  const write = step === undefined ? fault.slice(fault.indexOf(":") + 1) : undefined;
  return {
    observer: (at) => (at === write ? strike() : undefined),
    onEvent: (event) => (event.type === "step" && event.step === step ? strike() : undefined),
  };
}

/** A stream that hands what is written to it to `add`. */
function sink(add: (text: string) => void): Writable {
  return new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      add(chunk.toString());
      done();
    },
  });
}

/**
 * Runs `cert-retriever ARGS` in this process, through main() with its own environment, stdin,
 * stdout and stderr (the CLI's I/O seam: no process global is read or changed), and the agents'
 * `clock` and name resolver (`lookup`) if given. What a process would print and return, without
 * starting one; like runCli it fails the test if any output holds a registered secret or a JWT.
 */
export async function runMain(
  args: string[],
  opts: RunOptions & { clock?: () => Date; lookup?: CliInjection["lookup"]; cwd?: string } = {},
): Promise<CliRun> {
  let stdout = "";
  let stderr = "";
  const { main } = await import("../../src/cli/main.js");
  // A working directory for the run (the default ./certs): this test process's, for the run's length
  // (each test file has a process of its own, and its runs go one at a time).
  const home = process.cwd();
  if (opts.cwd !== undefined) process.chdir(opts.cwd);
  const run = main(args, {
    io: {
      env: runEnv(opts.env),
      stdin: Readable.from(opts.input === undefined ? [] : [Buffer.from(opts.input)]),
      stdout: sink((t) => (stdout += t)),
      stderr: sink((t) => (stderr += t)),
    },
    clock: opts.clock,
    lookup: opts.lookup,
    ...faultInjection(opts.fault),
  });
  const code = await bounded(run, args, opts.timeoutMs, () => stderr).finally(() => process.chdir(home));
  assertNoSecrets(`${stdout}\n${stderr}`, args);
  return { code, stdout, stderr };
}

/** A run of the CLI in this process at a terminal of its own, which the test reads and types at. */
export interface TerminalRun {
  /** All of stderr so far, once it matches `pattern` (checked at each write); fails if the run ends first. */
  waitFor(pattern: RegExp): Promise<string>;
  /** Types `text`, then Enter. */
  enter(text: string): void;
  /** What the run printed and returned. */
  done: Promise<CliRun>;
}

/**
 * Runs `cert-retriever ARGS` through main() in this process with stdin and stderr that say they are
 * a terminal (stdout does not), `columns` wide: prompts ask, and progress shows as on a person's
 * screen (`stderrTty: false`: stderr is a pipe, as under a terminal's `2>log`). `ticker`: the live
 * line's clock and timer; `onEvent`: sees each event of the run.
 */
export function runAtTerminal(
  args: string[],
  opts: RunOptions & Pick<CliInjection, "ticker" | "onEvent"> & { columns?: number; stderrTty?: boolean } = {},
): TerminalRun {
  let stdout = "";
  let stderr = "";
  const waiters: Array<{ pattern: RegExp; resolve: (s: string) => void; reject: (e: Error) => void }> = [];
  let ended = false;
  const settle = () => {
    for (const w of [...waiters]) {
      if (w.pattern.test(stderr)) w.resolve(stderr);
      else if (ended) w.reject(new Error(`the run ended and stderr never showed ${w.pattern}:\n${stderr}`));
      else continue;
      waiters.splice(waiters.indexOf(w), 1);
    }
  };
  const stdin = Object.assign(new PassThrough(), { isTTY: true });
  if (opts.input !== undefined) stdin.write(opts.input);
  const err = Object.assign(
    sink((t) => {
      stderr += t;
      settle();
    }),
    // A terminal stays open: the prompt module ends the stream it was given, as it may end any but the process's own.
    { isTTY: opts.stderrTty ?? true, columns: opts.columns ?? 120, end: () => err },
  );
  const done = (async () => {
    const { main } = await import("../../src/cli/main.js");
    const run = main(args, {
      io: { env: runEnv(opts.env), stdin, stdout: sink((t) => (stdout += t)), stderr: err },
      ticker: opts.ticker,
      onEvent: opts.onEvent,
    });
    const code = await bounded(run, args, opts.timeoutMs, () => stderr).finally(() => {
      stdin.end();
      ended = true;
      settle();
    });
    assertNoSecrets(`${stdout}\n${stderr}`, args);
    return { code, stdout, stderr };
  })();
  return {
    waitFor: (pattern) =>
      new Promise((resolve, reject) => {
        waiters.push({ pattern, resolve, reject });
        settle();
      }),
    enter: (text) => stdin.write(`${text}\r`),
    done,
  };
}

/** An in-process run's exit code, or a failure naming it (with what it printed) once it has run `limit` ms: a bound, not an expectation. */
async function bounded(run: Promise<number>, args: string[], limit = 30_000, stderr: () => string): Promise<number> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    run,
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`cert-retriever ${args.join(" ")} still ran after ${limit} ms:\n${stderr()}`)),
        limit,
      );
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Throws if `text` contains a registered secret in any of its forms (see {@link leakedForm}), or a JWT. */
export function assertNoSecrets(text: string, context: unknown): void {
  for (const secret of SECRETS) {
    const form = secret ? leakedForm(text, secret) : undefined;
    if (form) throw new Error(`a secret appeared (${form}) in the output of ${JSON.stringify(context)}`);
  }
  if (text.includes(JWT_PREFIX)) throw new Error(`a JWT appeared in the output of ${JSON.stringify(context)}`);
}

/** The shortest slice of a secret that counts as leaked, and the shortest base64 run of one that does. */
const SLICE = 16;
const BASE64_RUN = 8;

/**
 * Which form of `secret` `text` shows, if any: the secret itself; JSON-escaped (as a JSON body
 * carried it, or with `\uXXXX` for non-ASCII, as Python writes it); URL-encoded; with its white
 * space collapsed (as a one-line summary makes it); any slice of 16 or more characters; or base64
 * of it inside any bytes (HTTP Basic's `user:password`, whoever the user): the characters that
 * encode only the secret's bytes, at each of the three alignments base64 can have.
 */
export function leakedForm(text: string, secret: string): string | undefined {
  const json = JSON.stringify(secret).slice(1, -1);
  const ascii = json.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  const forms: Array<[string, string]> = [
    ["the secret", secret],
    ["JSON-escaped", json],
    ["JSON-escaped, ASCII", ascii],
    ["JSON-escaped, ASCII, upper case", ascii.replace(/\\u[0-9a-f]{4}/g, (u) => `\\u${u.slice(2).toUpperCase()}`)],
    ["URL-encoded", encodeURIComponent(secret)],
    ["form-encoded", new URLSearchParams({ s: secret }).toString().slice(2)],
    ["white space collapsed", secret.replace(/\s+/g, " ")],
  ];
  for (const [name, form] of forms) if (text.includes(form)) return name;
  for (let i = 0; i + SLICE <= secret.length; i++)
    if (text.includes(secret.slice(i, i + SLICE))) return `a ${SLICE}-character slice`;
  const bytes = Buffer.from(secret, "utf8");
  for (let align = 0; align < 3; align++) {
    const b64 = Buffer.concat([Buffer.alloc(align), bytes]).toString("base64");
    const run = b64.slice(4 * Math.ceil(align / 3), 4 * Math.floor((align + bytes.length) / 3));
    if (run.length < BASE64_RUN) continue;
    if (text.includes(run)) return `base64 (alignment ${align})`;
    if (text.includes(run.replace(/\+/g, "-").replace(/\//g, "_"))) return `base64url (alignment ${align})`;
  }
  return undefined;
}
