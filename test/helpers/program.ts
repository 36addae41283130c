import { spawn } from "node:child_process";

/** What a program printed and returned. */
export interface ProgramRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a program as a device runs it (an installed command, an executable, a system tool), not the
 * CLI through this Node: `env` on top of HOME and NO_COLOR=1 is its whole environment (PATH
 * included), `input` its stdin.
 */
export function runProgram(argv: string[], opts: { env: Record<string, string>; input?: string }): Promise<ProgramRun> {
  const child = spawn(argv[0]!, argv.slice(1), {
    env: { HOME: process.env.HOME ?? "/root", NO_COLOR: "1", ...opts.env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  child.stdin.end(opts.input ?? "");
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
}
