import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";

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
 * Runs `cert-retriever ARGS` as a child process with the node that runs the tests, a clean
 * environment plus `env`, `input` on stdin, and a time limit; `fault`: with a fault injected (see fault-cli.mjs). Fails the test if any output
 * contains a registered secret or a JWT.
 */
export async function runCli(
  args: string[],
  opts: {
    env?: Record<string, string | undefined>;
    input?: string;
    cwd?: string;
    timeoutMs?: number;
    bin?: string;
    fault?: string;
  } = {},
): Promise<CliRun> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? "/root",
    NO_COLOR: "1",
  };
  for (const [k, v] of Object.entries(opts.env ?? {})) if (v !== undefined) env[k] = v;
  const child = spawn(process.execPath, commandLine(args, opts), {
    env,
    cwd: opts.cwd,
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  child.stdin.end(opts.input ?? "");
  const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 30_000);
  const code = await new Promise<number | null>((resolve) => child.on("close", (c) => resolve(c)));
  clearTimeout(timer);
  assertNoSecrets(`${stdout}\n${stderr}`, args);
  return { code, stdout, stderr };
}

/** Throws if `text` contains a registered secret or a JWT. */
export function assertNoSecrets(text: string, context: unknown): void {
  for (const secret of SECRETS) {
    if (secret && text.includes(secret))
      throw new Error(`a secret appeared in the output of ${JSON.stringify(context)}`);
  }
  if (text.includes(JWT_PREFIX)) throw new Error(`a JWT appeared in the output of ${JSON.stringify(context)}`);
}
