import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";

// `npm run demo` (scripts/demo.sh) must stop everything it started, however it ends. Each run gets
// its own TMPDIR (the demo's work directory is made under it), so any process whose command line
// holds that path was started by that run.

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

interface DemoRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The lab's URL, as the demo printed it. */
  url: string | undefined;
}

const markers: string[] = [];

/** Processes (pid and command line) whose command line contains `marker`. */
async function processesWith(marker: string): Promise<{ pid: number; cmd: string }[]> {
  const found: { pid: number; cmd: string }[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const cmd = await readFile(`/proc/${name}/cmdline`, "utf8").catch(() => "");
    if (cmd.includes(marker)) found.push({ pid: Number(name), cmd: cmd.split("\0").join(" ").trim() });
  }
  return found;
}

/** Whether something accepts connections at `url`'s host and port. */
function listening(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: hostname, port: Number(port) });
    const done = () => {
      socket.destroy();
      resolve(true);
    };
    socket.setTimeout(2_000, done);
    socket.once("connect", done);
    socket.once("error", () => resolve(false));
  });
}

/**
 * Runs `bash scripts/demo.sh` with TMPDIR = `marker`, in its own process group, for at most 45 s
 * (then the group is killed). `during` is called with each chunk of stdout, to act on the run.
 */
async function runDemo(
  marker: string,
  opts: { path?: string; during?: (stdout: string, child: ChildProcess) => void } = {},
): Promise<DemoRun> {
  const env: Record<string, string> = {
    PATH: opts.path ?? process.env.PATH ?? "",
    HOME: process.env.HOME ?? "/root",
    TMPDIR: marker,
    NO_COLOR: "1",
    CERT_RETRIEVER_DEMO_BUILD: "no", // the test command has just built; no rebuild under the other tests
  };
  const child = spawn("bash", ["scripts/demo.sh"], {
    cwd: ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => {
    stdout += d.toString();
    opts.during?.(stdout, child);
  });
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // already gone
    }
  }, 45_000);
  // Its exit, not the pipes' close: a process left behind may hold them open.
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.once("exit", (c, s) => resolve([c, s])),
  );
  clearTimeout(timer);
  // The last output: both pipes ended, or (a process left behind holding them) a bound of 2 s.
  let bound: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all([child.stdout!, child.stderr!].map((s) => (s.readableEnded ? undefined : once(s, "end")))),
    new Promise((resolve) => {
      bound = setTimeout(resolve, 2_000);
    }),
  ]);
  clearTimeout(bound);
  child.stdout!.destroy();
  child.stderr!.destroy();
  return { code, signal, stdout, stderr, url: /lab listening at (http:\/\/\S+)/.exec(stdout)?.[1] };
}

async function newMarker(): Promise<string> {
  const marker = await mkdtemp(join(tmpdir(), "cr-demo-test-"));
  markers.push(marker);
  return marker;
}

/** What must hold after any run: nothing from it still runs, the lab's port is closed, its work directory is gone. */
async function expectNothingLeft(marker: string, run: DemoRun): Promise<void> {
  expect(await processesWith(marker), `left running by the demo\n${run.stdout}\n${run.stderr}`).toEqual([]);
  expect(run.url, `the demo printed no lab URL\n${run.stdout}\n${run.stderr}`).toBeDefined();
  expect(await listening(run.url!)).toBe(false);
  expect(await readdir(marker)).toEqual([]);
}

afterEach(async () => {
  // Whatever a failed run left behind (found by its unique TMPDIR) is stopped here.
  for (const marker of markers.splice(0)) {
    for (const { pid } of await processesWith(marker)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    await rm(marker, { recursive: true, force: true });
  }
});

describe("npm run demo (scripts/demo.sh)", () => {
  it("runs to the end (exit 0) and leaves no process running: the lab is stopped, its port closed", async () => {
    const marker = await newMarker();
    const run = await runDemo(marker);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.stdout).toContain("the key's public key is the certificate's: OK");
    expect(run.stdout).toContain("lab stopped; demo done");
    await expectNothingLeft(marker, run);
  }, 60_000);

  it("a step that fails midway (openssl) ends the demo with an error, and the lab is stopped all the same", async () => {
    const marker = await newMarker();
    const bin = await mkdtemp(join(tmpdir(), "cr-demo-bin-"));
    markers.push(bin);
    await writeFile(join(bin, "openssl"), "#!/bin/sh\necho 'openssl: failing on purpose' >&2\nexit 1\n");
    await chmod(join(bin, "openssl"), 0o755);
    const run = await runDemo(marker, { path: `${bin}:${process.env.PATH ?? ""}` });
    expect(run.stderr).toContain("openssl: failing on purpose");
    expect(run.code).toBe(1);
    expect(run.stdout).not.toContain("demo done");
    await expectNothingLeft(marker, run);
  }, 60_000);

  it.each([
    ["SIGTERM to the script (kill <pid>)", "SIGTERM", false, 143],
    ["SIGINT to its process group (Ctrl-C)", "SIGINT", true, 130],
  ] as const)(
    "stopped by %s once the lab serves, it stops the lab",
    async (_what, signal, group, expected) => {
      const marker = await newMarker();
      let sent = false;
      const run = await runDemo(marker, {
        during: (stdout, child) => {
          if (sent || !stdout.includes("lab listening at")) return;
          sent = true;
          process.kill(group ? -child.pid! : child.pid!, signal);
        },
      });
      expect(sent).toBe(true);
      expect(run.stdout).not.toContain("demo done");
      expect(run.code ?? run.signal).toBe(expected);
      await expectNothingLeft(marker, run);
    },
    60_000,
  );
});
