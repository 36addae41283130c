import { execFileSync } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT_CODE_MEANINGS } from "../../src/cli/exit-codes.js";
import { EXIT_RULES, exitCodesOf } from "../../src/cli/hints.js";
import { REASONS, type Reason } from "../../src/errors.js";
import { runCli } from "../helpers/cli.js";
import { enrollCli } from "../helpers/enroll.js";
import { closedPort, labDir, startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { haveRoot } from "../helpers/tools.js";

let lab: TestLab;
beforeAll(async () => {
  lab = await startTestLab({ autoRegister: true });
});
afterAll(async () => lab.stop());

/** The one `cert-retriever:` line and the hint of a failed run. */
function failure(stderr: string): { message: string; hint: string } {
  const lines = stderr.trim().split("\n");
  const messages = lines.filter((l) => l.startsWith("cert-retriever:"));
  expect(messages, stderr).toHaveLength(1);
  return { message: messages[0]!, hint: lines.find((l) => l.startsWith("  hint:")) ?? "" };
}

/** Runs `body` against a web server on 127.0.0.1 that answers every request with `status` and the HTML `page`. */
async function withHtmlServer(status: number, page: string, body: (url: string) => Promise<void>): Promise<void> {
  const server = createServer((_req, res) => res.writeHead(status, { "content-type": "text/html" }).end(page));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    await body(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  } finally {
    server.close();
    server.closeAllConnections();
  }
}

describe("misdiagnoses: the message names what is actually wrong", () => {
  it("https:// to a plain-HTTP port: the server does not speak TLS there (exit 11), one line, no OpenSSL internals", async () => {
    const run = await enrollCli(lab.url.replace("http://", "https://"), lab, "tls-plain", join(await tempDir(), "o"));
    expect(run.code, run.stderr).toBe(11);
    const { message, hint } = failure(run.stderr);
    expect(message).toMatch(
      /authenticate failed: the server at 127\.0\.0\.1:\d+ does not speak TLS on that port: wrong version number \(ERR_SSL_WRONG_VERSION_NUMBER\); is it plain HTTP\?$/,
    );
    expect(run.stderr).not.toMatch(/deps\/openssl|ssl3_record|not trusted/);
    expect(hint).toMatch(/use http:\/\//);
  });

  it("a web server that is not dojot (501 HTML): says the URL does not look like a dojot gateway and what it answered", async () => {
    await withHtmlServer(
      501,
      "<html><head><title>Error response</title></head><body>Unsupported method ('POST')</body></html>",
      async (url) => {
        const run = await enrollCli(url, lab, "not-dojot", join(await tempDir(), "o"));
        expect(run.code, run.stderr).toBe(10);
        const { message, hint } = failure(run.stderr);
        expect(message).toBe(
          `cert-retriever: authenticate failed: this does not look like a dojot gateway: POST ${url}/auth answered HTTP 501 with an HTML page titled "Error response"`,
        );
        expect(hint).toMatch(/check --platform: it must be dojot's gateway/);
      },
    );
  });

  it.skipIf(!haveRoot("the read-only mount test"))(
    "--out under a missing directory on a read-only mount: EROFS, not ENOENT (exit 15)",
    async () => {
      const mnt = await tempDir("cr-ro-");
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", mnt]);
      try {
        const run = await enrollCli(lab.url, lab, "ro-dev", join(mnt, "missing", "certs"), ["--force"]);
        expect(run.code, run.stderr).toBe(15);
        const { message, hint } = failure(run.stderr);
        expect(message).toMatch(/cannot create the directory .*missing\/certs: read-only file system \(EROFS\)/);
        expect(hint).toMatch(/mounted read-only/);
      } finally {
        execFileSync("umount", ["-l", mnt]);
      }
    },
  );
});

describe("what the review found", () => {
  it("an HTML 403 at the login is a firewall or a web server, not a wrong password (and no retries are offered)", async () => {
    await withHtmlServer(403, "<html><title>403 Forbidden</title></html>", async (url) => {
      const run = await enrollCli(url, lab, "waf", join(await tempDir(), "o"));
      expect(run.code).toBe(10);
      expect(failure(run.stderr).message).toMatch(
        /this does not look like a dojot gateway: POST .*\/auth answered HTTP 403 with an HTML page titled "403 Forbidden"/,
      );
      expect(run.stderr).not.toMatch(/password .* was refused/);
    });
  });

  it("a certificate that is not valid now, the platform's clock unknown: the hint says to check the device clock (exit 14)", async () => {
    const { startLab } = await import("../../lab/src/server.js");
    const { softwareCrypto } = await import("../../src/keys/provider.js");
    const faulty = await startLab({
      dir: await labDir(),
      host: "127.0.0.1",
      port: 0,
      crypto: softwareCrypto(),
      certProfile: "cfree",
      autoRegister: true,
      adminPassword: lab.password,
      tokenLifetime: 420,
      faults: [{ route: "sign", kind: "expired" }],
    });
    try {
      const run = await enrollCli(faulty.url, lab, "expired-1", join(await tempDir(), "o"));
      expect(run.code, run.stderr).toBe(14);
      const { message, hint } = failure(run.stderr);
      expect(message).toMatch(/which does not include now/);
      expect(hint).toMatch(/check the device clock/);
    } finally {
      await faulty.close();
    }
  });

  it("cert-retriever with only --debug is a usage mistake (exit 2)", async () => {
    const run = await runCli(["--debug"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/Usage: cert-retriever/);
  });

  it("options the commands used to accept still work, hidden from their help (a unit that passes them keeps running)", async () => {
    const out = await tempDir();
    const check = await runCli(["check", "--device-id", "hid", "--out", out, "--non-interactive"]);
    expect(check.code, check.stderr).toBe(0); // enrollment needed
    expect((await runCli(["check", "--help"])).stdout).not.toMatch(/^ {2}--non-interactive/m);
    const verify = await runCli([
      "verify",
      "--broker",
      "mqtts://127.0.0.1:1",
      "--device-id",
      "hid",
      "--out",
      out,
      "--renew-before",
      "30d",
      "--ca-fingerprint",
      "sha256:00",
    ]);
    expect(verify.code).toBe(16); // not enrolled: the options were accepted
  });

  it("a hint names only flags its command has: login's missing password does not suggest --token-file", async () => {
    const run = await runCli([
      "login",
      "--platform",
      lab.url,
      "--username",
      "admin",
      "--token-file",
      join(await tempDir(), "t"),
      "--non-interactive",
    ]);
    expect(run.code).toBe(2);
    expect(failure(run.stderr).message).toBe("cert-retriever: no password given");
    expect(run.stderr).toMatch(
      /hint: pass --password-file FILE or --password-stdin, or set CERT_RETRIEVER_PASSWORD \(never on the command line\)\n/,
    );
    const enroll = await runCli([
      "enroll",
      "--platform",
      lab.url,
      "--username",
      "admin",
      "--device-id",
      "np",
      "--out",
      await tempDir(),
      "--non-interactive",
    ]);
    expect(enroll.stderr).toMatch(/, or use --token-file/);
  });

  it("check's error object for a bug-free failure and its exit code agree", async () => {
    const run = await runCli(["check", "--device-id", "j", "--store", "cloud", "--json"]);
    expect(run.code).toBe(255);
    expect(JSON.parse(run.stdout).error.exitCode).toBe(255);
  });
});

describe("the command line itself", () => {
  it("bare cert-retriever is a usage mistake: the help on stderr, exit 2, nothing on stdout", async () => {
    const run = await runCli([]);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe("");
    expect(run.stderr).toMatch(/Usage: cert-retriever \[options\] \[command\]/);
  });

  it("-v and -V print the version, as most CLIs do", async () => {
    const pkg = JSON.parse(await readFile(join(import.meta.dirname, "..", "..", "package.json"), "utf8")) as {
      version: string;
    };
    for (const flag of ["-v", "-V", "--version"]) {
      const run = await runCli([flag]);
      expect(run.code, flag).toBe(0);
      expect(run.stdout.trim()).toBe(pkg.version);
    }
  });

  it("commander's messages and ours share one prefix", async () => {
    const run = await runCli(["enroll", "--no-such-flag"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^cert-retriever: unknown option '--no-such-flag'/m);
    expect(run.stderr).not.toMatch(/^error:/m);
  });

  it("a duration without a unit is refused, not silently read as seconds", async () => {
    const run = await runCli(["check", "--device-id", "d", "--renew-before", "30", "--out", await tempDir()]);
    expect(run.code).toBe(255);
    const { message, hint } = failure(run.stderr);
    expect(message).toBe("cert-retriever: --renew-before '30' has no unit");
    expect(hint).toBe("  hint: say which: --renew-before 30s, 30m, 30h or 30d, or a share of the lifetime, 30%");
    const share = await runCli(["check", "--device-id", "d", "--renew-before", "0%", "--out", await tempDir()]);
    expect(failure(share.stderr).message).toBe(
      "cert-retriever: --renew-before '0%' is not a share of the lifetime between 0% and 100%",
    );
    const enroll = await runCli([
      "enroll",
      "--platform",
      lab.url,
      "--device-id",
      "d",
      "--deadline",
      "90",
      "--non-interactive",
    ]);
    expect(enroll.code).toBe(2);
    expect(enroll.stderr).toMatch(/--deadline '90' has no unit/);
  });
});

describe("--json on failure: an error object on stdout, so `--json > result.json` always holds a result", () => {
  it("an unreachable platform: step, reason, exit code, message and hint", async () => {
    const run = await runCli(
      [
        "enroll",
        "--platform",
        `http://127.0.0.1:${await closedPort()}`,
        "--device-id",
        "j1",
        "--username",
        "admin",
        "--password-stdin",
        "--out",
        await tempDir(),
        "--retries",
        "0",
        "--json",
      ],
      { input: `${lab.password}\n` },
    );
    expect(run.code).toBe(75);
    const result = JSON.parse(run.stdout);
    expect(result).toEqual({
      ok: false,
      command: "enroll",
      error: expect.objectContaining({
        step: "authenticate",
        reason: "unreachable",
        exitCode: 75,
        message: expect.stringMatching(/could not be reached/),
        hint: expect.stringMatching(/--platform/),
      }),
    });
  });

  it("the platform's refusal: its status and own message", async () => {
    const run = await enrollCli(lab.url, { password: "wrong-password" }, "j2", await tempDir(), ["--json"]);
    expect(run.code).toBe(10);
    expect(JSON.parse(run.stdout).error).toMatchObject({
      step: "authenticate",
      reason: "auth-refused",
      exitCode: 10,
      status: 403,
      platformMessage: "AuthorizationError",
    });
  });

  it("a usage error, commander's or ours, and check's 255", async () => {
    const missing = await runCli(["enroll", "--platform", lab.url, "--non-interactive", "--json"]);
    expect(missing.code).toBe(2);
    expect(JSON.parse(missing.stdout).error).toMatchObject({
      reason: "usage",
      exitCode: 2,
      message: "a device id is required",
    });
    const unknown = await runCli(["enroll", "--bogus", "--json"]);
    expect(unknown.code).toBe(2);
    expect(JSON.parse(unknown.stdout).error).toMatchObject({
      reason: "usage",
      exitCode: 2,
      message: "unknown option '--bogus'",
    });
    const check = await runCli(["check", "--bogus", "--json"]);
    expect(check.code).toBe(255);
    expect(JSON.parse(check.stdout).error).toMatchObject({ reason: "usage", exitCode: 255 });
  });
});

describe("check: every failure is 255 (under ExecCondition=, 1-254 would skip the unit)", () => {
  const cases: Array<[string, string[]]> = [
    ["an unknown option", ["check", "--bogus"]],
    ["a missing device id", ["check", "--out", "/tmp"]],
    ["a bad duration", ["check", "--device-id", "d", "--renew-before", "soon"]],
    ["a share of the lifetime out of range", ["check", "--device-id", "d", "--renew-before", "100%"]],
    ["a bad --crl-refresh", ["check", "--device-id", "d", "--crl-refresh", "6"]],
    ["an unknown --revocation mode", ["check", "--device-id", "d", "--revocation", "strict"]],
    ["a password on argv", ["check", "--device-id", "d", "--password=x"]],
    ["an unknown store", ["check", "--device-id", "d", "--store", "cloud"]],
    ["a bad pin", ["check", "--device-id", "d", "--ca-fingerprint", "abc"]],
    ["a missing config file", ["check", "--device-id", "d", "--config", "/nonexistent.json"]],
  ];
  for (const [what, args] of cases) {
    it(what, async () => {
      const run = await runCli(args, { env: { CERT_RETRIEVER_OUT: await tempDir() } });
      expect(run.code, run.stderr).toBe(255);
      expect(run.stderr).toMatch(/^cert-retriever: /m);
    });
  }
});

describe("one error model: the library says what failed and why; the CLI alone decides exit codes and hints", () => {
  // Everything under src/ but the CLI (and the lab, which leaves the agent).
  const library = ["flows", "protocols", "keys", "store", "transport", "broker", "fs"];

  it("no library module names a CLI flag, sets a hint, or picks an exit code", async () => {
    const offences: string[] = [];
    const src = join(import.meta.dirname, "..", "..", "src");
    const files = [
      ...(
        await Promise.all(
          library.map(async (d) => (await readdir(join(src, d), { recursive: true })).map((f) => join(d, String(f)))),
        )
      ).flat(),
      // index.ts is the package's face: it also re-exports the CLI's exit-code table, for callers that want the same numbers.
      ...(await readdir(src)).filter((f) => f.endsWith(".ts") && !["loopback.ts", "index.ts"].includes(f)),
    ];
    for (const file of files.filter((f) => f.endsWith(".ts"))) {
      const text = await readFile(join(src, file), "utf8");
      text.split("\n").forEach((line, i) => {
        const code = line.replace(/^\s*(\/\/|\*|\/\*\*).*$/, ""); // comments may explain the CLI
        if (
          /["'`][^"'`]*--[a-z][a-z-]+/.test(code) ||
          /\bhint:/.test(code) ||
          /exit-codes\.js|ExitCode\./.test(code) ||
          /CERT_RETRIEVER_/.test(code)
        ) {
          offences.push(`${file}:${i + 1}: ${line.trim()}`);
        }
      });
    }
    expect(offences).toEqual([]);
  });

  it("every reason has an exit code from the documented table, and the documentation lists every reason with it", async () => {
    const documented = new Set(EXIT_CODE_MEANINGS.map(([code]) => code as number));
    const readme = await documentation();
    for (const reason of Object.keys(REASONS) as Reason[]) {
      expect(EXIT_RULES[reason], reason).toBeDefined();
      for (const code of exitCodesOf(reason)) expect(documented.has(code), `${reason} -> ${code}`).toBe(true);
      const row = new RegExp(`^\\| \`${reason}\` \\| ${exitCodesOf(reason).join(", ")} \\| `, "m");
      expect(readme, `README row for ${reason}`).toMatch(row);
    }
  });

  it("the documentation's exit-code tables are the ones in the code", async () => {
    const readme = await documentation();
    for (const [code] of EXIT_CODE_MEANINGS) {
      if (code === 143) continue; // shares its row with 130
      expect(readme, `exit ${code}`).toMatch(new RegExp(`^\\| ${code === 130 ? "130 / 143" : code} \\| `, "m"));
    }
  });
});

/** The README and every page of docs/, as one text. */
async function documentation(): Promise<string> {
  const root = join(import.meta.dirname, "..", "..");
  const pages = (await readdir(join(root, "docs"))).filter((f) => f.endsWith(".md")).map((f) => join(root, "docs", f));
  return (await Promise.all([join(root, "README.md"), ...pages].map((f) => readFile(f, "utf8")))).join("\n");
}
