import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo, LookupFunction } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dojotClaims, signJwt } from "../../lab/src/jwt.js";
import { loadState } from "../../lab/src/state.js";
import { ExitCode } from "../../src/cli/exit-codes.js";
import { runCli, runMain, SECRETS } from "../helpers/cli.js";
import { enrollCli } from "../helpers/enroll.js";
import { closedPort, startTestLab, type TestLab, tempDir } from "../helpers/lab.js";

/**
 * Each failure is put where it belongs: what a setting must fix (a host name that does not exist, a
 * URL path that leads to no login) is not retried as if it were temporary, and an expired token is
 * its own exit code, or a new login where a password is at hand.
 */

const UNITS = ["cert-retriever.service", "cert-retriever-renew.service"].map((unit) =>
  join(import.meta.dirname, "..", "..", "systemd", unit),
);

/** A name server for the run: every lookup fails as getaddrinfo fails with `code`; `asked` counts them. */
function failingLookup(code: "ENOTFOUND" | "EAI_AGAIN"): { lookup: LookupFunction; asked: string[] } {
  const asked: string[] = [];
  const lookup = ((hostname: string, _options: unknown, callback: (err: NodeJS.ErrnoException) => void) => {
    asked.push(hostname);
    const err = Object.assign(new Error(`getaddrinfo ${code} ${hostname}`), {
      code,
      errno: code === "ENOTFOUND" ? -3008 : -3001,
      syscall: "getaddrinfo",
      hostname,
    });
    process.nextTick(() => callback(err));
  }) as LookupFunction;
  return { lookup, asked };
}

/** The exit codes a unit's RestartPreventExitStatus= keeps from being restarted. */
async function notRestarted(unit: string): Promise<number[]> {
  const line = /^RestartPreventExitStatus=(.*)$/m.exec(await readFile(unit, "utf8"))?.[1] ?? "";
  return line.split(/\s+/).map(Number);
}

/** The failure a --json run printed on stdout. */
function failureOf(stdout: string): Record<string, unknown> {
  return (JSON.parse(stdout) as { error: Record<string, unknown> }).error;
}

/** `cert-retriever enroll` with a password on stdin, in this process with `lookup` as its name server. */
function enrollWith(platform: string, lookup: LookupFunction, extra: string[] = []) {
  return runMain(
    [
      "enroll",
      "--platform",
      platform,
      "--device-id",
      "dns-1",
      "--username",
      "admin",
      "--password-stdin",
      "--non-interactive",
      "--json",
      ...extra,
    ],
    { input: "not-used\n", lookup },
  );
}

describe("a host name that does not exist is a setting to fix, not a temporary failure", () => {
  it("NXDOMAIN (ENOTFOUND): host-not-found, exit 3, asked once, the hint names the host; neither unit restarts on 3", async () => {
    const dns = failingLookup("ENOTFOUND");
    const out = join(await tempDir(), "o");
    const run = await enrollWith("https://dojot.example.invalid:8000", dns.lookup, ["--retries", "3", "--out", out]);
    expect(run.code, run.stderr).toBe(ExitCode.CONFIG);
    expect(dns.asked).toEqual(["dojot.example.invalid"]);
    expect(run.stderr).not.toMatch(/retry:/);
    expect(failureOf(run.stdout)).toMatchObject({
      step: "authenticate",
      reason: "host-not-found",
      exitCode: 3,
      message:
        "authenticate failed: the platform at https://dojot.example.invalid:8000 cannot be reached: the host name 'dojot.example.invalid' does not exist (ENOTFOUND: the name server knows no address for it)",
      hint: expect.stringMatching(/^check the host name 'dojot\.example\.invalid' in --platform .*will not help$/),
    });
    expect(existsSync(out)).toBe(false);
    for (const unit of UNITS) {
      expect(await notRestarted(unit), unit).toContain(run.code);
      expect(await notRestarted(unit), unit).not.toContain(ExitCode.TEMPORARY);
      expect(await readFile(unit, "utf8"), unit).toMatch(/^Restart=on-failure$/m);
    }
  });

  it("a name server that does not answer (EAI_AGAIN) stays temporary: retried, exit 75, which the units restart on", async () => {
    const dns = failingLookup("EAI_AGAIN");
    const run = await enrollWith("https://dojot.example.invalid:8000", dns.lookup, ["--retries", "1"]);
    expect(run.code, run.stderr).toBe(ExitCode.TEMPORARY);
    expect(dns.asked).toEqual(["dojot.example.invalid", "dojot.example.invalid"]);
    expect(run.stderr).toMatch(/retry: authenticate attempt 1 of 2 failed/);
    expect(failureOf(run.stdout)).toMatchObject({
      reason: "unreachable",
      message: expect.stringMatching(
        /could not be reached: getaddrinfo EAI_AGAIN dojot\.example\.invalid \(2 attempts\)$/,
      ),
      hint: expect.stringMatching(/this is temporary/),
    });
    for (const unit of UNITS) expect(await notRestarted(unit), unit).not.toContain(run.code);
  });
});

describe("a URL path that leads to no login says so, and what the gateway's URL looks like", () => {
  let lab: TestLab;
  beforeAll(async () => {
    lab = await startTestLab({ autoRegister: true });
  });
  afterAll(async () => lab.stop());

  it("Kong's own 404 at <path>/auth: url-path-wrong, exit 3, the URL without the path, for enroll and login alike", async () => {
    const enroll = await enrollCli(`${lab.url}/api`, lab, "path-1", join(await tempDir(), "o"), ["--json"]);
    expect(enroll.code, enroll.stderr).toBe(ExitCode.CONFIG);
    expect(failureOf(enroll.stdout)).toMatchObject({
      step: "authenticate",
      reason: "url-path-wrong",
      status: 404,
      message: `authenticate failed: POST ${lab.url}/api/auth answered HTTP 404 (no API found with those values): the path '/api' of the platform URL is wrong; dojot's gateway has its login at the root, e.g. ${lab.url}`,
      hint: "give --platform the gateway's URL without a path, e.g. --platform https://dojot.example.com:8000 (dojot's gateway, Kong, answers at the root of its port, usually 8000)",
    });
    const login = await runCli(
      [
        "login",
        "--platform",
        `${lab.url}/api/`,
        "--username",
        "admin",
        "--password-stdin",
        "--token-file",
        join(await tempDir(), "t"),
      ],
      { input: `${lab.password}\n` },
    );
    expect(login.code, login.stderr).toBe(ExitCode.CONFIG);
    expect(login.stderr).toMatch(/the path '\/api' of the platform URL is wrong/);
  });

  it("dojot's GUI behind Kong's `/` route (nginx's HTML 404): the same under a path; at the root, not a dojot gateway (exit 10)", async () => {
    // dojot/docker-compose kong.config.sh routes `/` to the GUI, a stock nginx (dojot/gui v0.4.3 Dockerfile: nginx:1.15.7-alpine).
    const page =
      "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx/1.15.7</center>\r\n</body>\r\n</html>\r\n";
    const server = createServer((_req, res) => res.writeHead(404, { "content-type": "text/html" }).end(page));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const under = await enrollCli(`${url}/dojot/api`, lab, "path-2", join(await tempDir(), "o"), ["--json"]);
      expect(under.code, under.stderr).toBe(ExitCode.CONFIG);
      expect(failureOf(under.stdout)).toMatchObject({
        reason: "url-path-wrong",
        message: expect.stringContaining(
          `answered HTTP 404 (an HTML page titled "404 Not Found"): the path '/dojot/api' of the platform URL is wrong; dojot's gateway has its login at the root, e.g. ${url}`,
        ),
      });
      const root = await enrollCli(url, lab, "path-3", join(await tempDir(), "o"), ["--json"]);
      expect(root.code, root.stderr).toBe(ExitCode.AUTH);
      expect(failureOf(root.stdout)).toMatchObject({
        reason: "not-a-dojot-platform",
        hint: expect.stringMatching(/check --platform: it must be dojot's gateway/),
      });
    } finally {
      server.close();
      server.closeAllConnections();
    }
  });
});

describe("an expired token is its own exit code, or a new login where a password is given too", () => {
  let lab: TestLab;
  let checking: TestLab;
  beforeAll(async () => {
    lab = await startTestLab({ autoRegister: true });
    checking = await startTestLab({ autoRegister: true, claimsToVerify: ["exp"] });
  });
  afterAll(async () => Promise.all([lab.stop(), checking.stop()]));

  /** A token file holding the admin's token of `on`, signed as its auth service signs them, expiring at `exp` (epoch seconds). */
  async function tokenFile(on: TestLab, exp: number): Promise<string> {
    const state = (await loadState(on.dir))!;
    const admin = state.users.admin!;
    const claims = { ...dojotClaims({ name: "admin", service: admin.service, id: admin.id }, 420, exp - 420), exp };
    const jwt = signJwt(claims, state.jwtSecret);
    SECRETS.add(jwt);
    const file = join(await tempDir(), "token");
    await writeFile(file, `${jwt}\n`, { mode: 0o600 });
    return file;
  }

  const now = () => Math.floor(Date.now() / 1000);

  it("without a password: token-expired, exit 19, said before any request (the platform is not even listening), the hint to log in again", async () => {
    const token = await tokenFile(lab, now() - 60);
    const out = join(await tempDir(), "o");
    const run = await runMain([
      "enroll",
      "--platform",
      `http://127.0.0.1:${await closedPort()}`,
      "--device-id",
      "late-1",
      "--token-file",
      token,
      "--out",
      out,
      "--json",
    ]);
    expect(run.code, run.stderr).toBe(ExitCode.LOGIN_EXPIRED);
    expect(failureOf(run.stdout)).toMatchObject({
      step: "authenticate",
      reason: "token-expired",
      exitCode: 19,
      message: expect.stringMatching(
        new RegExp(`^authenticate failed: the token in ${token} expired at \\S+ \\(this device's clock reads \\S+\\)$`),
      ),
      hint: expect.stringMatching(/^log in again on the station \(cert-retriever login --token-file FILE\)/),
    });
    expect(existsSync(out)).toBe(false);
    for (const unit of UNITS) expect(await notRestarted(unit), unit).toContain(ExitCode.LOGIN_EXPIRED);
  });

  it("with a user and a password (the units' credentials): logs in instead, says so, and enrolls", async () => {
    const credentials = await tempDir();
    await writeFile(join(credentials, "token"), await readFile(await tokenFile(lab, now() - 60)), { mode: 0o600 });
    await writeFile(join(credentials, "password"), `${lab.password}\n`, { mode: 0o600 });
    const out = join(await tempDir(), "o");
    const run = await runMain(
      ["enroll", "--platform", lab.url, "--device-id", "late-2", "--out", out, "--non-interactive"],
      { env: { CREDENTIALS_DIRECTORY: credentials, CERT_RETRIEVER_USERNAME: "admin" } },
    );
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(
      new RegExp(
        `note: the token in ${join(credentials, "token")} expired at \\S+ \\(this device's clock reads \\S+\\): logged in with the user and password instead`,
      ),
    );
    expect(run.stderr).toMatch(/authenticate: logged in as admin/);
    expect(existsSync(join(out, "late-2.crt"))).toBe(true);
  });

  it("a gateway that checks `exp` refuses the token mid-run: logged in again once, and the refused request made again", async () => {
    // The token expired a second ago on the platform's clock; this device's clock, 30 s behind (within
    // the clock check's 5 minutes), still holds it valid, so only the gateway's 401 tells.
    const token = await tokenFile(checking, now() - 1);
    const out = join(await tempDir(), "o");
    const run = await runMain(
      [
        "enroll",
        "--platform",
        checking.url,
        "--device-id",
        "late-3",
        "--token-file",
        token,
        "--username",
        "admin",
        "--password-stdin",
        "--out",
        out,
      ],
      { input: `${checking.password}\n`, clock: () => new Date(Date.now() - 30_000) },
    );
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(new RegExp(`authenticate: using the token from ${token}`));
    expect(run.stderr).toMatch(
      /note: the platform refused the token at fetch-ca \(HTTP 401: \{"exp":"token expired"\}\): logged in again as admin/,
    );
    expect(run.stderr.match(/logged in again/g)).toHaveLength(1);
    expect(existsSync(join(out, "late-3.crt"))).toBe(true);
  });

  it("the same refusal without a password: token-expired, exit 19, the hint to log in again", async () => {
    const run = await runMain(
      [
        "enroll",
        "--platform",
        checking.url,
        "--device-id",
        "late-4",
        "--token-file",
        await tokenFile(checking, now() - 1),
        "--out",
        join(await tempDir(), "o"),
      ],
      { clock: () => new Date(Date.now() - 30_000) },
    );
    expect(run.code, run.stderr).toBe(ExitCode.LOGIN_EXPIRED);
    expect(run.stderr).toMatch(/fetch-ca failed: .*HTTP 401: \{"exp":"token expired"\}/);
    expect(run.stderr).toMatch(/hint: the platform refused the token \(expired or invalid\): log in again/);
  });
});
