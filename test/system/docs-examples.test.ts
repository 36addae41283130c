import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { type MoscaBroker, startMoscaBroker } from "../helpers/aedes.js";
import { assertNoSecrets, SECRETS } from "../helpers/cli.js";
import { tempDir } from "../helpers/lab.js";
import { seedLabCas } from "../helpers/lab-cas.js";

/**
 * The shell examples of README.md and docs/*.md that are marked runnable (a `<!-- runnable -->`
 * line right before a ```sh block), run as a reader runs them after the README's set-up: from a
 * clone whose node_modules/.bin is on the PATH (so `cert-retriever` and `cert-retriever-lab` are
 * this clone's), against a lab started as the README starts it (`cert-retriever-lab serve --api
 * both`, its state in ./lab-state), with its URL in $PLATFORM and the admin's password in $PASSWORD
 * (and CERT_RETRIEVER_LAB_PASSWORD); $BROKER is an MQTT broker over TLS with Mosca's rules that
 * trusts the lab's IOTmidCA. The blocks of one page run in order in one directory, against one lab,
 * each with `bash -euo pipefail`: every command must succeed.
 */
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

interface Block {
  page: string;
  line: number;
  script: string;
}

/** The runnable blocks of one Markdown file. */
function runnableBlocks(page: string): Block[] {
  const text = readFileSync(join(ROOT, page), "utf8");
  const blocks: Block[] = [];
  for (const m of text.matchAll(/^<!-- runnable -->\n```sh\n([\s\S]*?)^```$/gm)) {
    const line = text.slice(0, m.index).split("\n").length + 2;
    blocks.push({ page, line, script: m[1]! });
  }
  return blocks;
}

const PAGES = ["README.md", ...readdirSync(join(ROOT, "docs")).map((name) => `docs/${name}`)].filter((p) =>
  p.endsWith(".md"),
);
const BLOCKS = PAGES.flatMap(runnableBlocks);
const BIN = join(ROOT, "node_modules", ".bin");

/** The environment of the examples: the README's PATH, a home of their own (no user's settings), the lab's names. */
function exampleEnv(home: string, extra: Record<string, string>): Record<string, string> {
  return {
    PATH: `${BIN}:${dirname(process.execPath)}:${process.env.PATH ?? ""}`,
    HOME: home,
    NO_COLOR: "1",
    ...extra,
  };
}

/** `cert-retriever-lab serve --api both` in `cwd`, as the README starts it but on a free port: its URL, and a stop. */
async function startLab(cwd: string, env: Record<string, string>): Promise<{ url: string; stop(): Promise<void> }> {
  const child = spawn(join(BIN, "cert-retriever-lab"), ["serve", "--api", "both", "--listen", "127.0.0.1:0"], {
    cwd,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const closed = new Promise<void>((resolve) => child.on("close", () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the lab did not start: ${stderr}`)), 20_000);
    createInterface({ input: child.stdout }).once("line", (line) => {
      clearTimeout(timer);
      resolve(line);
    });
    child.once("close", () => reject(new Error(`the lab ended before it listened: ${stderr}`)));
  });
  return {
    url,
    stop: async () => {
      child.kill("SIGTERM");
      await closed;
    },
  };
}

/** A block run by bash: its exit code and output. */
function runBlock(block: Block, cwd: string, env: Record<string, string>) {
  const child = spawn("bash", ["--noprofile", "--norc", "-euo", "pipefail", "-c", block.script], {
    cwd,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), 40_000);
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

describe("the runnable examples of the README and docs/", () => {
  it("cover the everyday commands and the lab's own", () => {
    const all = BLOCKS.map((b) => b.script).join("\n");
    for (const command of [
      /cert-retriever enroll /,
      /cert-retriever enroll --dry-run /,
      /cert-retriever check /,
      /cert-retriever status /,
      /cert-retriever login /,
      /cert-retriever verify /,
      /--token-file /,
      /cert-retriever-lab device add /,
      /cert-retriever-lab device list/,
    ])
      expect(all, String(command)).toMatch(command);
    expect(new Set(BLOCKS.map((b) => b.page)).size).toBeGreaterThanOrEqual(4);
  });

  // The pages side by side, each with its lab; the blocks of a page one after the other.
  for (const page of [...new Set(BLOCKS.map((b) => b.page))]) {
    const blocks = BLOCKS.filter((b) => b.page === page);
    it.concurrent(`${page}: ${blocks.map((b) => `line ${b.line}`).join(", ")} run as written`, async () => {
      const password = `docs-${Math.random().toString(36).slice(2)}-password`;
      SECRETS.add(password);
      const cwd = await tempDir("cr-docs-");
      await mkdir(join(cwd, "home"));
      // The run's lab CAs, made once for the suite, where the lab would make its own at first start.
      await mkdir(join(cwd, "lab-state"), { mode: 0o700 });
      await seedLabCas(join(cwd, "lab-state"));
      let env = exampleEnv(join(cwd, "home"), { CERT_RETRIEVER_LAB_PASSWORD: password });
      const lab = await startLab(cwd, env);
      let broker: MoscaBroker | undefined;
      try {
        if (blocks.some((b) => b.script.includes("$BROKER"))) broker = await startMoscaBroker(join(cwd, "lab-state"));
        env = { ...env, PLATFORM: lab.url, PASSWORD: password, ...(broker ? { BROKER: broker.url } : {}) };
        for (const block of blocks) {
          const run = await runBlock(block, cwd, env);
          assertNoSecrets(`${run.stdout}\n${run.stderr}`, `${page}:${block.line}`);
          expect(run.code, `${page}:${block.line}\n${block.script}\n${run.stderr}`).toBe(0);
        }
      } finally {
        await broker?.stop();
        await lab.stop();
      }
    });
  }
});
