import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { haveTool } from "./helpers/tools.js";

const SOURCE_BIN = fileURLToPath(new URL("../bin/cert-retriever.mjs", import.meta.url));
const hasStrace = haveTool("strace");

/** The files a run of the CLI (from source) opens, as strace sees them. */
function filesOpened(args: string[]): string[] {
  const log = join(mkdtempSync(join(tmpdir(), "cr-strace-")), "trace");
  const run = spawnSync("strace", ["-f", "-qq", "-e", "trace=openat", "-o", log, process.execPath, SOURCE_BIN, ...args], { encoding: "utf8" });
  expect(run.status, run.stderr).toBe(0);
  return readFileSync(log, "utf8").split("\n").map((l) => /openat\([^"]*"([^"]+)"/.exec(l)?.[1] ?? "").filter(Boolean);
}

describe.skipIf(!hasStrace)("start-up loads only what the command needs", () => {
  for (const args of [["--help"], ["--version"], ["enroll", "--help"]]) {
    it(`${args.join(" ")} loads no crypto, HTTP, prompt, MQTT or keychain module`, () => {
      const opened = filesOpened(args);
      expect(opened.some((f) => f.includes("node_modules/commander"))).toBe(true); // the trace works
      // dist/crypto/keys.js is only the table of key types (for --key-type's choices); it imports nothing.
      const heavy = opened.filter((f) => /node_modules\/(undici|@peculiar|reflect-metadata|tsyringe|@inquirer|mqtt|@napi-rs)|dist\/(platform|pipeline|lab|verify|store)\/|dist\/crypto\/(?!keys\.js|package\.json)/.test(f));
      expect(heavy).toEqual([]);
    });
  }
});
