import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  COMMAND_EXIT_CODES,
  commandExitCodes,
  EXIT_CODE_MEANINGS,
  type TableCommand,
} from "../../src/cli/exit-codes.js";
import { exitCodesOf } from "../../src/cli/exit-rules.js";
import { REASONS, type Reason } from "../../src/errors.js";
import { runCli, runMain } from "../helpers/cli.js";

describe("the command line", () => {
  it("--help documents every exit code at the top level, and each command's help only the codes it can return, as each means there", async () => {
    const top = await runCli(["--help"]);
    expect(top.code).toBe(0);
    for (const [code, meaning] of EXIT_CODE_MEANINGS)
      expect(top.stdout).toContain(`${String(code).padStart(3)}  ${meaning}`);
    // The contract: the codes the reasons map to, and 0 and 1 (success, a bug). A code no reason gives, no command lists.
    const contract = new Set<number>([0, 1, ...(Object.keys(REASONS) as Reason[]).flatMap((r) => exitCodesOf(r))]);
    const commands = Object.keys(COMMAND_EXIT_CODES) as TableCommand[];
    for (const command of commands) {
      const run = await runCli([command, "--help"]);
      expect(run.code).toBe(0);
      const shown = [...run.stdout.split("\nEXIT CODES\n")[1]!.matchAll(/^ +(\d+) {2}(.*)$/gm)].map(
        ([, code, meaning]) => [Number(code), meaning] as const,
      );
      expect(shown, command).toEqual(commandExitCodes(command));
      for (const [code, meaning] of shown) {
        expect(contract.has(code), `${command} lists ${code}, which no failure gives`).toBe(true);
        // A meaning written for another command does not show up here.
        for (const other of [...commands, "check"].filter((c) => c !== command))
          expect(meaning, `${command} ${code}`).not.toMatch(new RegExp(`(^|[;,] )${other}[:,]`));
      }
    }
    // What a user would trip over: verify neither stores credentials nor finds them "already present";
    // it cannot fail authentication; enroll never says "not enrolled"; no command gives 36 any more.
    const verify = (await runCli(["verify", "--help"])).stdout;
    expect(verify).not.toMatch(/already present|could not be stored/);
    expect(verify).toMatch(/^ +15 {2}the stored credentials could not be read/m);
    expect(verify).not.toMatch(/^ +10 {2}/m);
    expect((await runCli(["enroll", "--help"])).stdout).not.toMatch(/^ +16 {2}/m);
    for (const command of commands) expect(COMMAND_EXIT_CODES[command], command).not.toContain(36);
  });

  it("each command's --help shows only the options it uses, described as they work there", async () => {
    const help = async (command: string) => (await runCli([command, "--help"])).stdout;
    const verify = await help("verify");
    for (const unused of ["--renew-before", "--uri-domain", "--ca-fingerprint", "--platform", "--key-type"])
      expect(verify, unused).not.toMatch(new RegExp(`^ {2}${unused} `, "m"));
    const login = await help("login");
    expect(login).not.toMatch(/^ {2}--api /m);
    expect(login).toMatch(/--token-file <file> +write the token here \(mode 0600\)/);
    expect(login).not.toMatch(/instead of logging in/);
    const check = await help("check");
    expect(check).not.toMatch(/^ {2}--non-interactive/m); // its example's ExecStart= line may use it
    expect(check).toMatch(/^ {2}--platform <url> +the platform, asked for its CA and the CA's CRL/m); // revocation and CA change
    expect(check).not.toMatch(/^ {2}--password-stdin/m); // a condition reads no stdin
    expect(check).toMatch(/^ {2}--crl-refresh/m);
    expect(check).toMatch(/--ca-fingerprint <sha256:hex> +enrollment is needed if the stored CA's/);
    // export: --out means what it means everywhere; the copies go to --to.
    const exported = await help("export");
    expect(exported).toMatch(/^ {2}--out <dir> +where the credentials are stored \(files\), or where/m);
    expect(exported).toMatch(/^ {2}--to <dir> +where the copies are written/m);
    expect(exported).toMatch(/^ {2}--store <kind> /m);
    expect(exported).toMatch(/^ {2}--format <format> /m);
    expect(exported).not.toMatch(/^ {2}--key /m);
    for (const command of ["enroll", "login", "check", "verify", "export"])
      expect(await help(command), command).toMatch(/\n +cert-retriever [a-z]+ /); // an example
  });

  it("`lab` is not a command of the agent: exit 2, one sentence saying the lab is its own package and how to run it, hidden from --help", async () => {
    for (const args of [["lab", "serve", "--dir", "x"], ["lab"]]) {
      const run = await runMain(args);
      expect(run.code, args.join(" ")).toBe(2);
      expect(run.stderr).toMatch(
        /^cert-retriever: the lab platform is its own package, cert-retriever-lab, .*npx cert-retriever-lab serve/m,
      );
    }
    expect((await runCli(["--help"])).stdout).not.toMatch(/^ {2}lab\b/m);
  });

  it("enroll --help names the password sources and no password flag", async () => {
    const run = await runCli(["enroll", "--help"]);
    expect(run.stdout).toContain("--password-file <file>");
    expect(run.stdout).toContain("--password-stdin");
    expect(run.stdout).not.toMatch(/--password </);
  });

  it("--version prints the package version", async () => {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    const run = await runCli(["--version"]);
    expect([run.code, run.stdout.trim()]).toEqual([0, pkg.version]);
  });

  it("an unknown command or option is a usage error (exit 2)", async () => {
    expect((await runCli(["enrol"])).code).toBe(2);
    const run = await runCli(["enroll", "--frobnicate"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/unknown option '--frobnicate'/);
  });
});

describe("the CLI as a library call", () => {
  it("a run that fails while setting up its HTTP client leaves no signal handler behind", async () => {
    const { tempDir } = await import("../helpers/lab.js");
    const { writeFile } = await import("node:fs/promises");
    const { join } = await import("node:path");
    const dir = await tempDir();
    await writeFile(join(dir, "not-a-ca.pem"), "not a certificate");
    const before = [process.listenerCount("SIGINT"), process.listenerCount("SIGTERM")];
    // main() in this process with streams of its own (runMain): the handlers it adds are this process's.
    const { code } = await runMain([
      "enroll",
      "--platform",
      "http://127.0.0.1:1",
      "--device-id",
      "lib-1",
      "--username",
      "admin",
      "--password-stdin",
      "--out",
      join(dir, "c"),
      "--platform-ca",
      join(dir, "not-a-ca.pem"),
    ]);
    expect(code).toBe(3);
    expect([process.listenerCount("SIGINT"), process.listenerCount("SIGTERM")]).toEqual(before);
  });
});

describe("--debug", () => {
  it("shows the cause of a wrapped failure, as it promises (a device-id file and a config file that cannot be read)", async () => {
    const { tempDir, closedPort } = await import("../helpers/lab.js");
    const { join } = await import("node:path");
    const dir = await tempDir();
    const idFile = await runCli([
      "--debug",
      "check",
      "--device-id-file",
      join(dir, "missing"),
      "--out",
      join(dir, "c"),
    ]);
    expect(idFile.stderr).toMatch(/cannot read --device-id-file/);
    expect(idFile.stderr).toMatch(/cause: Error: ENOENT/);
    const port = await closedPort();
    const config = join(dir, "cfg");
    const missing = await runCli(
      [
        "--debug",
        "enroll",
        "--config",
        config,
        "--platform",
        `http://127.0.0.1:${port}`,
        "--device-id",
        "d",
        "--username",
        "u",
        "--password-stdin",
      ],
      { input: "x" },
    );
    expect(missing.stderr).toMatch(/cannot read the config file/);
    expect(missing.stderr).toMatch(/cause: Error: ENOENT/);
  });
});
