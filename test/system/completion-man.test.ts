import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.js";
import { haveTool } from "../helpers/tools.js";

/** What a start that only prints help must not load: crypto, HTTP, prompts, MQTT, the keychain, the flows, stores and protocol clients. */
const HEAVY =
  /node_modules\/(undici|@peculiar|reflect-metadata|tsyringe|@inquirer|mqtt|@napi-rs)|dist\/(flows|lab|store)\/|dist\/(agent|settings)\.js|dist\/transport\/(?!loopback\.js|package\.json)|dist\/keys\/(?!key-types\.js|package\.json)|dist\/broker\/(?!profiles\.js|package\.json)|dist\/protocols\/[^/]+\/(?!index\.js|name\.js|hints\.js|settings\.js|rules\.js|url\.js|package\.json)/;

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MAN_PAGE = join(ROOT, "dist/man/cert-retriever.1");
const SOURCE_BIN = join(ROOT, "bin/cert-retriever.mjs");

/** zsh and fish check the scripts for real: skipped loudly where missing, and a failure in CI (which installs them). */
const installed = (tool: string): boolean => haveTool(tool);

/** The names in the Commands: list of a --help (commander's own `help` left out). */
function commandsOf(help: string): string[] {
  const section = /^Commands:\n((?: {2}.*\n)+)/m.exec(help)?.[1] ?? "";
  return [...section.matchAll(/^ {2}([\w-]+)/gm)].map((m) => m[1]!).filter((name) => name !== "help");
}

/** The flags in the Options: list of a --help: `--store`, `-h`, `--help`. */
function optionsOf(help: string): string[] {
  const section = /^Options:\n((?: {2}.*\n)+)/m.exec(help)?.[1] ?? "";
  // An option's line starts with two spaces and a dash; its description's next lines are indented further.
  return [...section.matchAll(/^ {2}(-[\w-]+)(?:, (--[\w-]+))?/gm)].flatMap((m) =>
    [m[1]!, m[2]].filter((f): f is string => f !== undefined),
  );
}

async function helpOf(...path: string[]): Promise<string> {
  const run = await runCli([...path, "--help"]);
  expect(run.code, run.stderr).toBe(0);
  return run.stdout;
}

/** Every command path under the program, as the --help outputs list them: ["enroll"], ["completion"], ... */
async function allCommandPaths(path: string[] = []): Promise<string[][]> {
  const paths: string[][] = [];
  for (const name of commandsOf(await helpOf(...path))) {
    paths.push([...path, name], ...(await allCommandPaths([...path, name])));
  }
  return paths;
}

describe("completion bash, in a real bash", () => {
  let script: string;
  let dir: string;

  beforeAll(async () => {
    const run = await runCli(["completion", "bash"]);
    expect(run.code, run.stderr).toBe(0);
    dir = mkdtempSync(join(tmpdir(), "cr-completion-"));
    script = join(dir, "cert-retriever.bash");
    writeFileSync(script, run.stdout);
  });

  /** What bash offers for `words` (the last one is the word under the cursor), through the function `complete -p` names. */
  function complete(...words: string[]): string[] {
    const driver = `
      source "$SCRIPT" || exit 9
      fn=$(complete -p cert-retriever | sed -E 's/.* -F ([^ ]+) .*/\\1/')
      COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=\${#COMP_LINE}
      "$fn" cert-retriever "\${COMP_WORDS[COMP_CWORD]}" "\${COMP_WORDS[COMP_CWORD - 1]}" || exit 8
      printf '%s\\n' "\${COMPREPLY[@]}"`;
    const run = spawnSync("bash", ["--norc", "--noprofile", "-c", driver, "bash", "cert-retriever", ...words], {
      encoding: "utf8",
      cwd: dir,
      env: { PATH: process.env.PATH, SCRIPT: script },
    });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stderr).toBe("");
    return run.stdout.split("\n").filter(Boolean).sort();
  }

  it("registers itself for cert-retriever", () => {
    const run = spawnSync("bash", ["--norc", "--noprofile", "-c", `source "${script}" && complete -p cert-retriever`], {
      encoding: "utf8",
    });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout.trim()).toMatch(/^complete -F \S+ cert-retriever$/);
  });

  it("completes subcommands: enr -> enroll, and every command --help lists (no lab: the lab is a package of its own)", async () => {
    expect(complete("enr")).toEqual(["enroll"]);
    expect(complete("")).toEqual([...commandsOf(await helpOf()), "help"].sort());
    expect(commandsOf(await helpOf())).not.toContain("lab");
    expect(complete("la")).toEqual([]);
  });

  it("completes a subcommand's options: enroll --sto -> --store, --store-cert-in-token", () => {
    expect(complete("enroll", "--sto")).toEqual(["--store", "--store-cert-in-token"]);
  });

  it("completes an option's choices: enroll --store -> files keychain, also as --store=", () => {
    expect(complete("enroll", "--store", "")).toEqual(["files", "keychain"]);
    expect(complete("enroll", "--store", "=", "k")).toEqual(["keychain"]);
    expect(complete("--debug", "enroll", "--out", "x", "--store", "f")).toEqual(["files"]);
  });

  it("offers a command its own options only: verify gets none of enroll's that verify lacks", async () => {
    const verifyOptions = optionsOf(await helpOf("verify"));
    const enrollOnly = optionsOf(await helpOf("enroll")).filter((o) => !verifyOptions.includes(o));
    // e.g. --platform, --key-type, --force (verify has --renew-before, through the identity options).
    expect(enrollOnly).toContain("--platform");
    const offered = complete("verify", "--");
    expect(offered).toEqual(verifyOptions.filter((o) => o.startsWith("--")).sort());
    for (const option of enrollOnly) expect(offered).not.toContain(option);
    if (!verifyOptions.includes("--renew-before")) expect(offered).not.toContain("--renew-before");
  });

  it("completes file names for <file> options and directories for <dir> options", () => {
    mkdirSync(join(dir, "conf.d"));
    writeFileSync(join(dir, "config.json"), "{}");
    expect(complete("enroll", "--config", "con")).toEqual(["conf.d", "config.json"]);
    expect(complete("enroll", "--out", "con")).toEqual(["conf.d"]);
  });

  it("completes the shell of `completion`", () => {
    expect(complete("completion", "")).toEqual(["bash", "fish", "zsh"]);
  });
});

describe("completion zsh and fish", () => {
  it("zsh: a #compdef script with each command's options and choices (syntax-checked by zsh)", async () => {
    const run = await runCli(["completion", "zsh"]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.split("\n")[0]).toBe("#compdef cert-retriever");
    expect(run.stdout).toMatch(/'--store=\[[^\]]*\]:kind:\(files keychain\)'/);
    expect(run.stdout).toMatch(/'--config=\[[^\n]*\]:file:_files'/);
    if (installed("zsh")) {
      const check = spawnSync("zsh", ["-n"], { input: run.stdout, encoding: "utf8" });
      expect(check.status, check.stderr).toBe(0);
    }
  });

  it("fish: complete -c cert-retriever lines for subcommands, options and choices (run by fish)", async () => {
    const run = await runCli(["completion", "fish"]);
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.split("\n").filter((l) => l.startsWith("complete -c cert-retriever"));
    expect(lines.some((l) => /-a 'enroll'/.test(l))).toBe(true);
    expect(lines.some((l) => /__cert_retriever_at \\'enroll\\'.* -l store -x -a 'files keychain'/.test(l))).toBe(true);
    if (installed("fish")) {
      const dir = mkdtempSync(join(tmpdir(), "cr-fish-"));
      writeFileSync(join(dir, "cert-retriever.fish"), run.stdout);
      const fish = (line: string) => {
        const r = spawnSync("fish", ["--no-config", "-c", `source ${dir}/cert-retriever.fish; complete -C '${line}'`], {
          encoding: "utf8",
        });
        expect(r.status, r.stderr).toBe(0);
        return r.stdout
          .split("\n")
          .filter(Boolean)
          .map((l) => l.split("\t")[0])
          .sort();
      };
      expect(fish("cert-retriever enr")).toEqual(["enroll"]);
      expect(fish("cert-retriever enroll --sto")).toEqual(["--store", "--store-cert-in-token"]);
      expect(fish("cert-retriever enroll --store ")).toEqual(["files", "keychain"]);
      expect(fish("cert-retriever verify --")).not.toContain("--platform");
    }
  });

  it("an unknown shell is a usage error (exit 2) in one sentence", async () => {
    const run = await runCli(["completion", "tcsh"]);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe("");
    const lines = run.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^cert-retriever: unknown shell 'tcsh': .*bash.*zsh.*fish/);
  });
});

describe.skipIf(!haveTool("strace"))("completion start-up", () => {
  it("loads no crypto, HTTP, prompt, MQTT or keychain module", () => {
    const log = join(mkdtempSync(join(tmpdir(), "cr-strace-")), "trace");
    const run = spawnSync(
      "strace",
      ["-f", "-qq", "-e", "trace=openat", "-o", log, process.execPath, SOURCE_BIN, "completion", "bash"],
      { encoding: "utf8" },
    );
    expect(run.status, run.stderr).toBe(0);
    const opened = readFileSync(log, "utf8")
      .split("\n")
      .map((l) => /openat\([^"]*"([^"]+)"/.exec(l)?.[1] ?? "")
      .filter(Boolean);
    expect(opened.some((f) => f.includes("dist/cli/commands/completion.js"))).toBe(true); // the trace works
    const heavy = opened.filter((f) => HEAVY.test(f));
    expect(heavy).toEqual([]);
  });
});

describe("the man page", () => {
  const page = () => readFileSync(MAN_PAGE, "utf8");
  /** A flag or name as the page writes it (roff's minus signs). */
  const roff = (text: string) => text.replace(/-/g, "\\-");
  /** The text of section `.SH name` or subsection `.SS "name"`, up to the next one of the same level or above. */
  const section = (text: string, heading: string) => {
    const start = text.indexOf(`${heading}\n`);
    expect(start, `${heading} is in the page`).toBeGreaterThanOrEqual(0);
    const rest = text.slice(start + heading.length + 1);
    const end = rest.search(heading.startsWith(".SS") ? /^\.S[HS] /m : /^\.SH /m);
    return end < 0 ? rest : rest.slice(0, end);
  };

  it("is built into dist/man with the sections a man page has", () => {
    expect(existsSync(MAN_PAGE)).toBe(true);
    const headings = [...page().matchAll(/^\.SH "?([^"\n]*)"?$/gm)].map((m) => m[1]);
    expect(headings).toEqual(
      expect.arrayContaining([
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "COMMANDS",
        "ENVIRONMENT",
        "EXIT STATUS",
        "FILES",
        "SEE ALSO",
      ]),
    );
  });

  it("describes every command --help lists, and every option of enroll --help in enroll's section", async () => {
    const text = page();
    for (const path of await allCommandPaths()) expect(text).toContain(`.SS "${roff(path.join(" "))}"`);
    const enroll = section(text, '.SS "enroll"');
    const options = optionsOf(await helpOf("enroll"));
    expect(options).toContain("--store");
    for (const option of options.filter((o) => o !== "-h" && o !== "--help"))
      expect(enroll).toContain(`\\fB${roff(option)}\\fR`);
    // -h, --help once, for every command.
    expect(section(text, ".SH COMMANDS")).toMatch(/\\fB\\-h\\fR, \\fB\\-\\-help\\fR/);
  });

  it("lists the variables and exit codes that --help shows", async () => {
    const text = page();
    const environment = section(text, ".SH ENVIRONMENT");
    for (const m of (await helpOf("enroll")).matchAll(/env:\s+(CERT_RETRIEVER_[A-Z0-9_]+)/g))
      expect(environment).toContain(`\\fB${m[1]}\\fR`);
    const exitStatus = section(text, ".SH EXIT STATUS");
    const codes = [...(await helpOf()).matchAll(/^\s+(\d+) {2}\S/gm)].map((m) => m[1]!);
    expect(codes).toContain("75");
    for (const code of codes) expect(exitStatus).toContain(`.TP\n\\fB${code}\\fR\n`);
  });

  it.skipIf(!haveTool("groff"))("renders without a warning", () => {
    const lint = spawnSync("groff", ["-man", "-Tutf8", "-ww", "-z", MAN_PAGE], { encoding: "utf8" });
    expect([lint.status, lint.stderr]).toEqual([0, ""]);
    const shown = spawnSync("groff", ["-man", "-Tutf8", "-P-cbou", MAN_PAGE], {
      encoding: "utf8",
      env: { ...process.env, MANWIDTH: "80" },
    });
    expect(shown.status, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/^NAME\n\s+cert-retriever - /m);
    expect(shown.stdout).toMatch(/--store kind\n/);
  });

  it("is installed with the package: package.json's man, and in npm pack's files", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
      man: unknown;
      scripts: { build: string };
    };
    // An array: npm 11 links only an array's entries into <prefix>/share/man/man1 on a global install.
    expect(pkg.man).toEqual(["./dist/man/cert-retriever.1"]);
    expect(pkg.scripts.build).toContain("scripts/man.mjs");
    const pack = spawnSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: ROOT, encoding: "utf8" });
    expect(pack.status, pack.stderr).toBe(0);
    const files = (JSON.parse(pack.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
    expect(files).toContain("dist/man/cert-retriever.1");
  });
});
