import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assertNoSecrets, commandLine, SECRETS } from "../helpers/cli.js";
import { closedPort, tempDir } from "../helpers/lab.js";

/**
 * A password read from a pipe: a FIFO given as --password-file, or `<(command)`. A writer that
 * never comes, or comes and never writes, must not hold the run past its deadline: the run says
 * so and exits 75 at once (a read left blocking in a thread would keep the process, even
 * process.exit, waiting for ever). A writer that writes is read as a file is.
 *
 * While it waits, the run holds what it has read so far (and will hold the password): started with
 * core dumps allowed, it has lowered its core limit to 0 before reading anything.
 */

const PASSWORD = "fifo-Secret-9431";
SECRETS.add(PASSWORD);
const DEADLINE_SAID = /the password did not arrive before the deadline/;

/** How long a run may take to exit once it has said the deadline passed. */
const EXIT_AFTER_DEADLINE_MS = 1000;

/** A FIFO (mode 0600) in a new directory, and an output directory beside it. */
async function fifo(): Promise<{ path: string; out: string }> {
  const dir = await tempDir("cr-fifo-");
  const path = join(dir, "password");
  execFileSync("mkfifo", ["-m", "600", path]);
  return { path, out: join(dir, "certs") };
}

/** `enroll --password-file FILE` against `platform`, with a short deadline. */
function enrollArgs(platform: string, passwordFile: string, out: string, deadline = "2s"): string[] {
  return [
    "enroll",
    "--api",
    "x509-identity-mgmt",
    "--platform",
    platform,
    "--device-id",
    "f1f0f1f0",
    "--out",
    out,
    "--username",
    "admin",
    "--password-file",
    passwordFile,
    "--deadline",
    deadline,
    "--non-interactive",
  ];
}

/** A process the test started: what it printed, a wait for a line of its stderr, and its exit. */
interface Started {
  child: ChildProcess;
  stderr: () => string;
  /** Resolves with the time `line` first shows on stderr; rejects after `ms`. */
  said(line: RegExp, ms: number): Promise<number>;
  /** Resolves with the exit code (or signal) and the time of the exit; rejects after `ms`. */
  exited(ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

function started(child: ChildProcess, what: string): Started {
  let stderr = "";
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  const lineSeen = (line: RegExp) =>
    new Promise<number>((resolve) => {
      const look = () => line.test(stderr) && resolve(Date.now());
      child.stderr?.on("data", look);
      look();
    });
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  return {
    child,
    stderr: () => stderr,
    said: (line, ms) => bounded(lineSeen(line), ms, `${what} had not said ${line} after ${ms} ms: ${stderr}`),
    exited: (ms) => bounded(exit, ms, `${what} had not exited after ${ms} ms: ${stderr}`),
  };
}

/** `promise`, or a rejection saying `why` after `ms`. */
function bounded<T>(promise: Promise<T>, ms: number, why: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(why)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Starts the CLI with `args` (stdin closed). */
function startCli(args: string[]): Started {
  const child = spawn(process.execPath, commandLine(args), {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  return started(child, "the CLI");
}

/** Ends what a test started that is still running. */
function stop(...processes: Array<Started | undefined>): void {
  for (const p of processes) if (p && p.child.exitCode === null && p.child.signalCode === null) p.child.kill("SIGKILL");
}

/** Waits for the deadline's message, then for the exit: 75, within a second of the message. */
async function expectPromptExit(cli: Started): Promise<void> {
  const saidAt = await cli.said(DEADLINE_SAID, 30_000);
  const exit = await cli.exited(EXIT_AFTER_DEADLINE_MS + 4000);
  expect(exit.code, cli.stderr()).toBe(75);
  expect(exit.at - saidAt, "ms from the deadline's message to the exit").toBeLessThan(EXIT_AFTER_DEADLINE_MS);
  assertNoSecrets(cli.stderr(), "the CLI");
}

describe("a FIFO as --password-file that never delivers ends the run at its deadline (exit 75, at once)", () => {
  let platform: string;
  beforeAll(async () => {
    platform = `http://127.0.0.1:${await closedPort()}`; // the password is read before any request
  });

  it("no writer ever opens the FIFO", async () => {
    const { path, out } = await fifo();
    const cli = startCli(enrollArgs(platform, path, out));
    try {
      await expectPromptExit(cli);
    } finally {
      stop(cli);
    }
  });

  it("a writer opens the FIFO and never writes", async () => {
    const { path, out } = await fifo();
    const cli = startCli(enrollArgs(platform, path, out));
    // Its open returns only once the CLI has opened the FIFO to read: "opened" says the read is pending.
    const writer = started(
      spawn("sh", ["-c", 'exec 3>"$0"; echo opened >&2; exec sleep 600', path], {
        stdio: ["ignore", "ignore", "pipe"],
      }),
      "the writer",
    );
    try {
      await writer.said(/opened/, 30_000);
      await expectPromptExit(cli);
    } finally {
      stop(cli, writer);
    }
  });
});

describe("a password from a pipe is read as a file is", () => {
  let received: string[];
  let platform: { url: string; close(): Promise<void> };
  beforeAll(async () => {
    received = [];
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      let body = "";
      req.on("data", (d: Buffer) => (body += d.toString()));
      req.on("end", () => {
        if (req.url === "/auth") received.push((JSON.parse(body) as { passwd: string }).passwd);
        res.writeHead(401, { "content-type": "application/json" }).end(JSON.stringify({ message: "Unauthorized" }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    platform = {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      close: () => new Promise((resolve) => server.close(() => resolve())),
    };
  });
  afterAll(() => platform?.close());

  it("a FIFO whose writer writes the password and closes: the login sends it", async () => {
    const { path, out } = await fifo();
    received.length = 0;
    const cli = startCli(enrollArgs(platform.url, path, out, "60s"));
    const writer = spawn("sh", ["-c", 'printf "%s\\n" "$1" > "$0"', path, PASSWORD], { stdio: "ignore" });
    try {
      const exit = await cli.exited(60_000);
      expect(exit.code, cli.stderr()).toBe(10); // refused by the platform: it was sent
      expect(received).toEqual([PASSWORD]);
      assertNoSecrets(cli.stderr(), "the CLI");
    } finally {
      stop(cli);
      writer.kill();
    }
  });

  it("<(command) as --password-file, as a shell gives it: the login sends it", async () => {
    received.length = 0;
    const cli = await startWithProcessSubstitution(platform.url, 'printf %s "$PW"');
    try {
      const exit = await cli.exited(60_000);
      expect(exit.code, cli.stderr()).toBe(10);
      expect(received).toEqual([PASSWORD]);
      assertNoSecrets(cli.stderr(), "bash");
    } finally {
      stop(cli);
    }
  });

  it("<(command) whose command ends without writing: an empty password, said at once (not at the deadline)", async () => {
    received.length = 0;
    const cli = await startWithProcessSubstitution(platform.url, "true");
    try {
      const exit = await cli.exited(30_000);
      expect(exit.code, cli.stderr()).toBe(2);
      expect(cli.stderr()).toMatch(/the password is empty/);
      expect(received).toEqual([]);
    } finally {
      stop(cli);
    }
  });
});

/** `enroll` run by bash with `--password-file <(COMMAND)` (PW holds the password), with a deadline of a minute. */
async function startWithProcessSubstitution(platform: string, command: string): Promise<Started> {
  const dir = await tempDir("cr-procsub-");
  const script = join(dir, "run.sh");
  const words = [process.execPath, ...commandLine(enrollArgs(platform, "PLACEHOLDER", join(dir, "certs"), "60s"))];
  await writeFile(script, `${words.map((w) => (w === "PLACEHOLDER" ? `<(${command})` : `'${w}'`)).join(" ")}\n`);
  const child = spawn("bash", [script], {
    env: { PATH: process.env.PATH ?? "", PW: PASSWORD, NO_COLOR: "1" },
    stdio: "pipe",
  });
  return started(child, "bash");
}

/** A process's core file size limits from /proc ([soft, hard]: "0", "unlimited" or bytes), or undefined. */
function coreLimits(pid: number | "self"): string[] | undefined {
  try {
    return /^Max core file size\s+(\S+)\s+(\S+)/m.exec(readFileSync(`/proc/${pid}/limits`, "utf8"))?.slice(1, 3);
  } catch {
    return undefined;
  }
}

/**
 * The CLI's core limits while it waits for a password from a FIFO, started (by bash, which then
 * execs it) with the soft limit `soft`: 0, or as high as the hard limit allows. `atStart` is the
 * soft limit bash gave it.
 */
async function coreLimitsWhileWaiting(
  platform: string,
  soft: "0" | "hard",
): Promise<{ atStart: string | undefined; running: string[] | undefined }> {
  const { path, out } = await fifo();
  const script = [
    'if [ "$1" = hard ]; then ulimit -S -c "$(ulimit -H -c)"; else ulimit -S -c "$1"; fi',
    'echo "core limit at start: $(ulimit -S -c)" >&2',
    'shift; exec "$@"',
  ].join("\n");
  const args = [process.execPath, ...commandLine(enrollArgs(platform, path, out, "60s"))];
  const cli = started(
    spawn("bash", ["-c", script, "bash", soft, ...args], {
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/root", NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    }),
    "the CLI",
  );
  // The writer's open returns once the CLI has opened the FIFO: it is running, waiting for the password.
  const writer = started(
    spawn("sh", ["-c", 'exec 3>"$0"; echo opened >&2; exec sleep 600', path], { stdio: ["ignore", "ignore", "pipe"] }),
    "the writer",
  );
  try {
    await Promise.all([cli.said(/core limit at start: \S+\n/, 30_000), writer.said(/opened/, 30_000)]);
    const atStart = /core limit at start: (\S+)/.exec(cli.stderr())?.[1];
    return { atStart, running: coreLimits(cli.child.pid!) };
  } finally {
    stop(cli, writer);
  }
}

describe("no core dump of a run: the CLI lowers its own core limit to 0 at start", () => {
  const hard = coreLimits("self")?.[1];
  const canDump = hard !== undefined && hard !== "0";
  let platform: string;
  beforeAll(async () => {
    platform = `http://127.0.0.1:${await closedPort()}`; // these runs are ended before any request
  });

  it.skipIf(!canDump)(
    "started with core dumps allowed, it waits for the password with a core limit of 0 (soft and hard)",
    async () => {
      const { atStart, running } = await coreLimitsWhileWaiting(platform, "hard");
      expect(atStart, "the soft limit bash gave the CLI").not.toBe("0");
      expect(running).toEqual(["0", "0"]);
    },
  );

  it.skipIf(!canDump)(
    "started with a soft limit of 0 (Debian's default), it changes nothing (prlimit is not run)",
    async () => {
      const { atStart, running } = await coreLimitsWhileWaiting(platform, "0");
      expect(atStart).toBe("0");
      expect(running).toEqual(["0", hard]);
    },
  );
});
