import { spawn } from "node:child_process";

/** What a program printed and returned. */
export interface ProgramRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a program as a device runs it (an installed command, an executable, the CLI through Node):
 * `env` on top of HOME and NO_COLOR=1 is its whole environment (PATH included), `input` its stdin;
 * a run still going after `timeoutMs` (default 30 s) is killed.
 */
export async function runProgram(
  argv: string[],
  opts: { env: Record<string, string>; input?: string; cwd?: string; timeoutMs?: number },
): Promise<ProgramRun> {
  const child = spawn(argv[0]!, argv.slice(1), {
    env: { HOME: process.env.HOME ?? "/root", NO_COLOR: "1", ...opts.env },
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
  return { code, stdout, stderr };
}
