import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LiveLine, SHOW_AFTER_MS, type Ticker } from "../../src/cli/live-line.js";
import { runAtTerminal, runCli } from "../helpers/cli.js";
import { device, estEnrollArgs, estLab } from "../helpers/est-lab.js";
import { type HoldingProxy, startHoldingProxy } from "../helpers/hold-proxy.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";

/** A clock and timer the test moves: time stands still until advance(), which then runs the timer once. */
function manualTicker() {
  let now = 1_700_000_000_000;
  let tick: (() => void) | undefined;
  let started = 0;
  const ticker: Ticker = {
    now: () => now,
    every: (_ms, fn) => {
      started++;
      tick = fn;
      return () => {
        tick = undefined;
      };
    },
  };
  return {
    ticker,
    advance(ms: number) {
      now += ms;
      tick?.();
    },
    get now() {
      return now;
    },
    /** A timer is running. */
    get running() {
      return tick !== undefined;
    },
    /** How many times a timer was started. */
    get started() {
      return started;
    },
  };
}

/** A terminal that records what is written to it, `columns` wide. */
function screen(columns = 120) {
  const out = { text: "", columns, write: (t: string) => (out.text += t) };
  return out;
}

const ERASE = "\r\u001b[K";
const safe = (t: string) => t.replaceAll("\u001b", "?");

/** The row the line shows now: what was drawn after the last carriage return, which must still stand (not erased). */
function row(out: { text: string }): string {
  const last = out.text.slice(out.text.lastIndexOf("\r") + 1);
  expect(last.endsWith("\u001b[K") && last.length > 3).toBe(true);
  return last.slice(0, -"\u001b[K".length);
}

describe("the live line: what a slow step waits for, replaced in place", () => {
  it("shows nothing in a step's first second, then what it waits for and for how long, and goes when the step ends", () => {
    const clock = manualTicker();
    const out = screen();
    const line = new LiveLine(out, safe, clock.ticker);
    line.begin("[5/8] submit-csr");
    line.waitFor("the platform to answer POST /x509/v1/certificates");
    clock.advance(SHOW_AFTER_MS - 1);
    expect(out.text).toBe("");
    clock.advance(1);
    expect(out.text).toBe(
      "\r⠋ [5/8] submit-csr: waiting for the platform to answer POST /x509/v1/certificates (1 s)\u001b[K",
    );
    clock.advance(2000);
    // Rewritten in place: back to the row's start each time, never a new line.
    expect(row(out)).toMatch(/^⠙ \[5\/8\] submit-csr: waiting for the platform to answer POST \S+ \(3 s\)$/);
    expect(out.text).not.toContain("\n");
    line.end();
    expect(out.text.endsWith(ERASE)).toBe(true);
    expect(clock.running).toBe(false);
  });

  it("says what a step does where no request is waited for (key generation), and a request that ended leaves the step", () => {
    const clock = manualTicker();
    const out = screen();
    const line = new LiveLine(out, safe, clock.ticker);
    line.begin("[3/8] generate-key", "making the rsa-4096 key in this device's software (WebCrypto)");
    clock.advance(3750);
    expect(out.text).toContain(
      "⠋ [3/8] generate-key: making the rsa-4096 key in this device's software (WebCrypto) (3 s)",
    );
    const done = line.waitFor("the platform to answer GET /x509/v1/ca");
    clock.advance(100);
    expect(row(out)).toMatch(/generate-key: waiting for the platform to answer GET \/x509\/v1\/ca \(3 s\)$/);
    done();
    clock.advance(100);
    expect(row(out)).toMatch(/generate-key: making the rsa-4096 key .* \(3 s\)$/);
  });

  it("counts down to the next try where the wait's end is known (EST's 202, a retry)", () => {
    const clock = manualTicker();
    const out = screen();
    const line = new LiveLine(out, safe, clock.ticker);
    line.begin("[5/8] submit-csr");
    line.waitFor("the EST server to approve the request (HTTP 202)", clock.now + 60_000);
    clock.advance(3000);
    expect(row(out)).toMatch(
      /submit-csr: waiting for the EST server to approve the request \(HTTP 202\), next try in 57 s \(3 s\)$/,
    );
  });

  it("a request outside any step (login, check) shows once it has waited a second, and goes when it ends", () => {
    const clock = manualTicker();
    const out = screen();
    const line = new LiveLine(out, safe, clock.ticker);
    const done = line.waitFor("the platform to answer POST /auth");
    clock.advance(1500);
    expect(out.text).toBe("\r⠋ waiting for the platform to answer POST /auth (1 s)\u001b[K");
    done();
    expect(out.text.endsWith(ERASE)).toBe(true);
    expect(clock.running).toBe(false);
  });

  it("a prompt holds it: nothing is drawn over the prompt, and the time counts again from the answer", async () => {
    const clock = manualTicker();
    const out = screen();
    const line = new LiveLine(out, safe, clock.ticker);
    line.begin("[1/8] authenticate");
    clock.advance(1500);
    const before = out.text;
    expect(before).toContain("authenticate (1 s)");
    await line.hold(async () => {
      expect(out.text).toBe(before + ERASE);
      clock.advance(10_000);
      expect(out.text).toBe(before + ERASE);
    });
    clock.advance(500);
    expect(out.text).toBe(before + ERASE);
    clock.advance(1000);
    expect(row(out)).toMatch(/authenticate \(1 s\)$/);
  });

  it("fits one row of the terminal, and shows no control character", () => {
    const clock = manualTicker();
    const out = screen(40);
    const line = new LiveLine(out, safe, clock.ticker);
    line.begin("[5/8] submit-csr");
    line.waitFor("the platform to answer POST /sign/\u001b[2Jdevice/pkcs10");
    clock.advance(2000);
    const drawn = out.text.slice(1, -"\u001b[K".length);
    expect([...drawn]).toHaveLength(39);
    expect(drawn).not.toContain("\u001b");
  });
});

let lab: TestLab;
beforeAll(async () => {
  lab = await startTestLab({ autoRegister: true });
});
afterAll(async () => lab.stop());

/** `enroll` of device `id` into `out` against `platform` (the lab, or a proxy in front of it), the password on stdin. */
const enroll = (platform: string, id: string, out: string, ...more: string[]) => [
  "enroll",
  "--platform",
  platform,
  "--device-id",
  id,
  "--username",
  "admin",
  "--password-stdin",
  "--out",
  out,
  ...more,
];

describe("progress of a run at a terminal", () => {
  /** The platform, through a proxy that holds the signing request until the test releases it. */
  function slowSigning(): Promise<HoldingProxy> {
    return startHoldingProxy(lab.url, (req) => req.method === "POST" && !req.url?.startsWith("/auth"));
  }

  it("a slow submit-csr shows what it waits for and for how long, erased before the step's tick", async () => {
    const slow = await slowSigning();
    try {
      const clock = manualTicker();
      const run = runAtTerminal(enroll(slow.url, "slow-1", join(await tempDir(), "certs")), {
        input: `${lab.password}\n`,
        ticker: clock.ticker,
      });
      await slow.held;
      clock.advance(3000);
      const shown = await run.waitFor(/⠋ \[5\/8\] submit-csr: waiting for the platform to answer POST \S+ \(3 s\)/);
      expect(shown).toMatch(/✔ \[4\/8\] build-csr/);
      slow.release();
      const done = await run.done;
      expect(done.code, done.stderr).toBe(0);
      // The line is erased, then the step's own line is written where it was.
      expect(done.stderr).toContain("(3 s)\u001b[K\r\u001b[K✔ [5/8] submit-csr: certificate ");
      expect(done.stderr).toMatch(/✔ \[8\/8\] store/);
      expect(clock.running).toBe(false);
    } finally {
      await slow.close();
    }
  });

  it.each([
    ["--json", "no-line-json", ["--json"], true],
    ["--quiet", "no-line-quiet", ["--quiet"], true],
    ["a stderr that is not a terminal", "no-line-pipe", [], false],
  ] as const)("with %s nothing of it is drawn", async (_, id, more, stderrTty) => {
    const clock = manualTicker();
    const run = runAtTerminal(enroll(lab.url, id, join(await tempDir(), "certs"), ...more), {
      input: `${lab.password}\n`,
      ticker: clock.ticker,
      stderrTty,
    });
    const done = await run.done;
    expect(done.code, done.stderr).toBe(0);
    expect(clock.started).toBe(0);
    expect(done.stderr).not.toContain("\r");
  });
});

describe("progress of an EST enrollment that awaits approval", () => {
  it("the 202's wait counts down to the next try, on the process's own clock, and goes when the certificate comes", async () => {
    const est = await estLab({ pending: 1, retryAfter: 3 });
    try {
      const { out, pw } = await device(est);
      const run = runAtTerminal(
        estEnrollArgs(est, out, ["--username", "admin", "--password-file", pw, "--ca-fingerprint", est.pin]),
        { timeoutMs: 20_000 },
      );
      await run.waitFor(
        /submit-csr: waiting for the EST server to approve the request \(HTTP 202\), next try in [1-3] s \([12] s\)/,
      );
      const done = await run.done;
      expect(done.code, done.stderr).toBe(0);
      expect(done.stderr).toContain("\r\u001b[K✔ [5/8] submit-csr: certificate ");
    } finally {
      await est.stop();
    }
  });
});

describe("--quiet: errors, warnings and notes only", () => {
  const args = (id: string, out: string, ...more: string[]) => enroll(lab.url, id, out, ...more);

  it("an enrollment prints nothing; the same again with --force, only its notes; the result is on stdout with --json", async () => {
    const out = join(await tempDir(), "certs");
    const first = await runCli(args("quiet-1", out, "--quiet"), { input: `${lab.password}\n` });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toBe("");
    await lab.resetDevice("quiet-1");
    const again = await runCli(args("quiet-1", out, "--force"), {
      input: `${lab.password}\n`,
      env: { CERT_RETRIEVER_QUIET: "1" },
    });
    expect(again.code, again.stderr).toBe(0);
    const lines = again.stderr.trim().split("\n");
    expect(lines).toContain(
      "note: no --exec or --reload-unit: programs that loaded the previous identity keep it until they restart",
    );
    expect(lines.filter((l) => !l.startsWith("note: "))).toEqual([]);
    await lab.resetDevice("quiet-1");
    const json = await runCli(args("quiet-1", out, "--force", "--quiet", "--json"), { input: `${lab.password}\n` });
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout).deviceId).toBe("quiet-1");
  });

  it("a failure is said as without it: the error and its hint", async () => {
    const run = await runCli(args("quiet-2", join(await tempDir(), "certs"), "--quiet"), { input: "wrong-password\n" });
    expect(run.code).toBe(10);
    expect(run.stderr).toMatch(/^cert-retriever: .*password.*refused/m);
    expect(run.stderr).toMatch(/^ {2}hint: /m);
    expect(run.stderr).not.toMatch(/\[\d\/8\]/);
  });

  it("warnings stay: a password in a config file others can read is ignored, and it says so", async () => {
    const dir = await tempDir();
    const config = join(dir, "config.json");
    const { writeFile } = await import("node:fs/promises");
    await writeFile(config, JSON.stringify({ password: "not-used" }), { mode: 0o644 });
    const run = await runCli(args("quiet-3", join(dir, "certs"), "--quiet", "--config", config), {
      input: `${lab.password}\n`,
    });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr.trim().split("\n")).toEqual([
      expect.stringMatching(/^warning: ignoring 'password' in .*config\.json: the file is readable by others/),
    ]);
  });
});
