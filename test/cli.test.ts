import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { EXIT_CODE_MEANINGS } from "../src/exit-codes.js";
import { runCli } from "./helpers/cli.js";

describe("the command line", () => {
  it("--help documents every exit code, for the top level and for enroll", async () => {
    for (const args of [["--help"], ["enroll", "--help"]]) {
      const run = await runCli(args);
      expect(run.code).toBe(0);
      for (const [code, meaning] of EXIT_CODE_MEANINGS) expect(run.stdout).toContain(`${String(code).padStart(3)}  ${meaning}`);
    }
  });

  it("enroll --help names the password sources and no password flag", async () => {
    const run = await runCli(["enroll", "--help"]);
    expect(run.stdout).toContain("--password-file <file>");
    expect(run.stdout).toContain("--password-stdin");
    expect(run.stdout).not.toMatch(/--password </);
  });

  it("--version prints the package version", async () => {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string };
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
    const { main } = await import("../src/cli/main.js");
    const { tempDir } = await import("./helpers/lab.js");
    const { writeFile } = await import("node:fs/promises");
    const { join } = await import("node:path");
    const dir = await tempDir();
    await writeFile(join(dir, "not-a-ca.pem"), "not a certificate");
    const before = [process.listenerCount("SIGINT"), process.listenerCount("SIGTERM")];
    const code = await main(["enroll", "--platform", "http://127.0.0.1:1", "--device-id", "lib-1", "--username", "admin", "--password-stdin", "--out", join(dir, "c"), "--platform-ca", join(dir, "not-a-ca.pem")]);
    expect(code).toBe(3);
    expect([process.listenerCount("SIGINT"), process.listenerCount("SIGTERM")]).toEqual(before);
  });
});

describe("--debug", () => {
  it("shows the cause of a wrapped failure, as it promises (a device-id file and a config file that cannot be read)", async () => {
    const { tempDir, closedPort } = await import("./helpers/lab.js");
    const { join } = await import("node:path");
    const dir = await tempDir();
    const idFile = await runCli(["--debug", "check", "--device-id-file", join(dir, "missing"), "--out", join(dir, "c")]);
    expect(idFile.stderr).toMatch(/cannot read --device-id-file/);
    expect(idFile.stderr).toMatch(/cause: Error: ENOENT/);
    const port = await closedPort();
    const config = join(dir, "cfg");
    const missing = await runCli(["--debug", "enroll", "--config", config, "--platform", `http://127.0.0.1:${port}`, "--device-id", "d", "--username", "u", "--password-stdin"], { input: "x" });
    expect(missing.stderr).toMatch(/cannot read the config file/);
    expect(missing.stderr).toMatch(/cause: Error: ENOENT/);
  });
});
