import { describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.js";

/** The commands whose --help a user reads. */
const COMMANDS = ["enroll", "login", "check", "verify", "export", "status", "register", "completion"];

/** One example command line of a help text: its lines as printed, and the command line they make. */
interface Example {
  lines: string[];
  joined: string;
}

/**
 * The example command lines of a help text: a line whose text (after the indentation, a pipe or an
 * `ExecStart=`-like prefix) runs `cert-retriever <command>`, and the lines it continues onto with a
 * trailing backslash.
 */
function examplesOf(help: string): Example[] {
  const lines = help.split("\n");
  const examples: Example[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^ +(?:\S.*\| |[A-Za-z]+=\/usr\/bin\/)?cert-retriever [a-z]+\b/.test(lines[i]!)) continue;
    if (/^ {2}--/.test(lines[i]!)) continue; // an option's description that names a command
    const block = [lines[i]!];
    while (block.at(-1)!.endsWith("\\") && i + 1 < lines.length) block.push(lines[++i]!);
    examples.push({ lines: block, joined: block.map((l) => l.replace(/\\$/, "").trim()).join(" ") });
  }
  return examples;
}

/** The `--flags` a command line uses, outside quotes. */
function flagsOf(commandLine: string): string[] {
  const unquoted = commandLine.replace(/'[^']*'|"[^"]*"/g, "''");
  return [...unquoted.matchAll(/(?:^|\s)(--[a-z][a-z0-9-]*)/g)].map((m) => m[1]!);
}

describe("the examples in each command's --help", () => {
  it("are command lines as a shell reads them: a line continued onto the next ends with a backslash, and none is run together", async () => {
    let seen = 0;
    for (const command of COMMANDS) {
      const help = (await runCli([command, "--help"])).stdout;
      for (const example of examplesOf(help)) {
        seen++;
        // A continuation lost in the source prints the lines run together, the indentation kept inside.
        expect(example.joined.replace(/'[^']*'|"[^"]*"/g, "''"), `${command}: ${example.joined}`).not.toMatch(
          /\S {3,}-/,
        );
        for (const [n, line] of example.lines.entries()) {
          if (n === 0) continue;
          expect(line, `${command}: a continuation line`).toMatch(/^ {4,}\S/);
        }
      }
    }
    expect(seen).toBeGreaterThanOrEqual(10);
  });

  it("use only options their command has", async () => {
    let checked = 0;
    for (const command of COMMANDS) {
      const help = (await runCli([command, "--help"])).stdout;
      for (const example of examplesOf(help)) {
        const used = /cert-retriever ([a-z]+)/.exec(example.joined)![1]!;
        const itsHelp = used === command ? help : (await runCli([used, "--help"])).stdout;
        for (const flag of flagsOf(example.joined.slice(example.joined.indexOf(`cert-retriever ${used}`)))) {
          checked++;
          expect(itsHelp, `${command} --help: ${example.joined}`).toMatch(new RegExp(`^ +(?:-\\w, )?${flag}\\b`, "m"));
        }
      }
    }
    expect(checked).toBeGreaterThanOrEqual(30);
  });

  it("enroll's PKCS#11 example is four lines, each but the last continued", async () => {
    const help = (await runCli(["enroll", "--help"])).stdout;
    const pkcs11 = examplesOf(help).find((e) => e.joined.includes("--key 'pkcs11:"));
    expect(pkcs11?.lines.map((l) => l.trim().endsWith("\\"))).toEqual([true, true, true, false]);
  });
});
