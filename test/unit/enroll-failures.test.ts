import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli, SECRETS } from "../helpers/cli.js";
import { enrollCli } from "../helpers/enroll.js";
import { closedPort, startProxy, startTestLab, type Tamper, type TestLab, tempDir } from "../helpers/lab.js";

let lab: TestLab;
let otherLab: TestLab;
beforeAll(async () => {
  [lab, otherLab] = await Promise.all([
    startTestLab(),
    startTestLab({ caSet: "other", certProfile: "open", autoRegister: true }),
  ]);
});
afterAll(async () => Promise.all([lab.stop(), otherLab.stop()]));

/** Runs enroll and checks the exit code, the message, and that no file (not even the directory) was left behind. */
async function expectFailure(
  opts: { platform?: string; deviceId: string; extra?: string[]; password?: string; register?: boolean },
  code: number,
  message: RegExp,
  hint?: RegExp,
): Promise<string> {
  if (opts.register !== false) await lab.addDevice(opts.deviceId);
  const out = join(await tempDir(), "certs");
  const run = await enrollCli(
    opts.platform ?? lab.url,
    { password: opts.password ?? lab.password },
    opts.deviceId,
    out,
    opts.extra ?? [],
  );
  expect(run.stderr).toMatch(message);
  if (hint) expect(run.stderr).toMatch(hint);
  expect(run.code, run.stderr).toBe(code);
  expect(run.stderr).not.toMatch(/\n\s+at .*\(.*:\d+:\d+\)/); // no stack trace without --debug
  expect(
    run.stderr
      .trim()
      .split("\n")
      .filter((l) => l.startsWith("cert-retriever:")),
  ).toHaveLength(1);
  expect(existsSync(out), `${out} should not exist after a failed run`).toBe(false);
  return run.stderr;
}

/** A proxy in front of the lab that rewrites the replies of one route. */
async function tampered(route: RegExp, reply: ReturnType<Tamper>) {
  return startProxy(lab.url, (path) => (route.test(path) ? reply : undefined));
}

describe("enroll stops at the first failure with the step's exit code and writes nothing", () => {
  it("wrong password: exit 10, names the password sources", async () => {
    const wrong = "definitely-wrong-password";
    SECRETS.add(wrong);
    await expectFailure(
      { deviceId: "wrongpw", password: wrong },
      10,
      /authenticate failed: the password for user 'admin' was refused \(HTTP 403: AuthorizationError\)/,
      /--password-file/,
    );
  });

  it("unknown user: exit 10, names --username", async () => {
    await expectFailure(
      { deviceId: "nouser", extra: ["--username", "nobody"] },
      10,
      /does not know user 'nobody' \(HTTP 401: AuthenticationError\)/,
      /--username/,
    );
  });

  it("unknown CA: exit 11 with the platform's message and a hint for --ca-name", async () => {
    await expectFailure(
      { deviceId: "noca", extra: ["--ca-name", "NoSuchCA"] },
      11,
      /fetch-ca failed: .*soap message: CA with name NoSuchCA does not exist\./,
      /--ca-name/,
    );
  });

  it("device not registered: exit 13 before any key is made (GET /user finds no end entity), with a hint to create it on the platform, which names no lab", async () => {
    const stderr = await expectFailure(
      { deviceId: "unregistered", register: false },
      13,
      /fetch-ca failed: the platform has no end entity for device 'unregistered' \(GET \/user\/unregistered: HTTP 404: no certificates found\); no key was made and no certificate requested/,
      /hint: create the device on the platform first \(dojot's device manager makes its end entity\), then run again$/m,
    );
    expect(stderr).not.toMatch(/lab/);
  });

  it("a wrong end-entity password on a NEW entity is EJBCA's 'invalid password': exit 13 with the hint for the entity password", async () => {
    const wrong = join(await tempDir(), "entity-password");
    await writeFile(wrong, "not-dojot", { mode: 0o600 });
    await expectFailure(
      { deviceId: "wrongpw", extra: ["--entity-password-file", wrong] },
      13,
      /submit-csr failed: .*Got request for user with invalid password: wrongpw\./,
      /hint: check the end-entity password/,
    );
  });

  it("end entity not NEW (already issued): exit 13 with the hint to reset the device", async () => {
    await lab.addDevice("issued-once");
    const out = join(await tempDir(), "certs");
    expect((await enrollCli(lab.url, lab, "issued-once", out)).code).toBe(0);
    await expectFailure(
      { deviceId: "issued-once", register: false },
      13,
      /Got request with status GENERATED \(40\), NEW, FAILED or INPROCESS required: issued-once\./,
      /not in NEW state: the platform issued a certificate for this device already; reset the device on the platform to issue again/,
    );
  });

  it("a key CFREE does not take (ECDSA): exit 13 before any key is made or CSR sent (the end entity's profile, read with GET /user), with a hint for --key-type", async () => {
    await expectFailure(
      { deviceId: "eckey", extra: ["--key-type", "ec-p256"] },
      13,
      /generate-key failed: device 'eckey''s end entity uses the certificate profile CFREE, which takes RSA keys of 2048 to 8192 bits only, not ec-p256 .*; no key was made and no certificate requested\n/,
      /--key-type rsa-2048/,
    );
    // The end entity is still NEW: the same device enrolls with an RSA key.
    const rsa = await enrollCli(lab.url, lab, "eckey", join(await tempDir(), "c"), ["--key-type", "rsa-2048"]);
    expect(rsa.code, rsa.stderr).toBe(0);
  });

  it("platform unreachable: exit 75 (temporary)", async () => {
    const port = await closedPort();
    await expectFailure(
      { platform: `http://127.0.0.1:${port}`, deviceId: "offline" },
      75,
      /authenticate failed: the platform at http:\/\/127\.0\.0\.1:\d+ could not be reached: .*ECONNREFUSED/,
    );
  });

  it("the gateway is overloaded (503) or rate-limits (429): exit 75", async () => {
    const busy = await tampered(/^\/ca\//, { status: 503, body: '{"message":"name resolution failed"}' });
    const limited = await startProxy(lab.url, (p) =>
      p === "/auth" ? { status: 429, body: '{"message":"API rate limit exceeded"}' } : undefined,
    );
    try {
      await expectFailure(
        { platform: busy.url, deviceId: "busy" },
        75,
        /fetch-ca failed: .*HTTP 503: name resolution failed/,
      );
      await expectFailure(
        { platform: limited.url, deviceId: "limited" },
        75,
        /HTTP 429: API rate limit exceeded/,
        /limits requests/,
      );
    } finally {
      await Promise.all([busy.close(), limited.close()]);
    }
  });

  it("a token refused later in the run, and again after logging in again: exit 19", async () => {
    const proxy = await tampered(/^\/ca\//, { status: 401, body: '{"message":"token expired"}' });
    try {
      const stderr = await expectFailure(
        { platform: proxy.url, deviceId: "expired" },
        19,
        /fetch-ca failed: .*HTTP 401: token expired, after logging in again$/m,
        /hint: the gateway refuses even the token its own login just gave/,
      );
      expect(stderr).toMatch(
        /note: the platform refused the token at fetch-ca \(HTTP 401: token expired\): logged in again as admin/,
      );
    } finally {
      await proxy.close();
    }
  });
});

describe("a reply that is not what the API promises is a clear error of its step, never a stack trace", () => {
  const cases: Array<[string, RegExp, ReturnType<Tamper>, number, RegExp]> = [
    [
      "an HTML page instead of the token",
      /^\/auth$/,
      { status: 200, body: "<html><title>Kong Dashboard</title></html>", contentType: "text/html" },
      10,
      /authenticate failed: this does not look like a dojot gateway: POST http:\/\/127\.0\.0\.1:\d+\/auth answered HTTP 200 with an HTML page titled "Kong Dashboard"/,
    ],
    [
      "a JSON login reply without a token",
      /^\/auth$/,
      { status: 200, body: '{"token":"x"}' },
      10,
      /authenticate failed: .*not what the API promises: expected a JSON object with a `jwt` token/,
    ],
    [
      "valid JSON sent as text/plain",
      /^\/ca\//,
      { status: 200, body: '{"certificate":"AAAA"}', contentType: "text/plain" },
      11,
      /fetch-ca failed: .*expected a JSON reply \(Content-Type application\/json\), not 'text\/plain'/,
    ],
    [
      "a CA that is not base64",
      /^\/ca\//,
      { status: 200, body: '{"certificate":"not base64!"}' },
      11,
      /fetch-ca failed: .*expected a JSON object whose `certificate` is base64 DER/,
    ],
    [
      "a CA that is not a certificate",
      /^\/ca\//,
      { status: 200, body: '{"certificate":"AAAA"}' },
      11,
      /the CA the platform sent is not an X\.509 certificate/,
    ],
    [
      "a sign reply without status.data",
      /^\/sign\//,
      { status: 200, body: '{"status":{"responseType":"CERTIFICATE"}}' },
      13,
      /submit-csr failed: .*`status\.data`/,
    ],
    [
      "a Flask error page on signing",
      /^\/sign\//,
      { status: 500, body: "<html><title>500 Internal Server Error</title></html>", contentType: "text/html" },
      13,
      /HTTP 500: an HTML page titled "500 Internal Server Error"/,
    ],
    [
      "DER that is not a certificate",
      /^\/sign\//,
      { status: 200, body: '{"status":{"data":"MAMCAQA=","responseType":"CERTIFICATE"}}' },
      14,
      /the certificate the platform sent is not an X\.509 certificate/,
    ],
  ];
  for (const [what, route, reply, code, message] of cases) {
    it(`${what}: exit ${code}`, async () => {
      const proxy = await tampered(route, reply);
      try {
        await expectFailure({ platform: proxy.url, deviceId: `bad-${code}-${what.length}` }, code, message);
      } finally {
        await proxy.close();
      }
    });
  }

  it("a CA other than the one that signed the certificate: exit 14, nothing written", async () => {
    const otherCa = Buffer.from(otherLab.ca.cert.rawData).toString("base64");
    const proxy = await tampered(/^\/ca\//, { status: 200, body: JSON.stringify({ certificate: otherCa }) });
    try {
      await expectFailure(
        { platform: proxy.url, deviceId: "wrongca" },
        14,
        /validate failed: the certificate is not signed by the CA 'CN=IOTmidCA, O=EJBCA IOT, C=SE'.*nothing was written/,
      );
    } finally {
      await proxy.close();
    }
  });

  it("a certificate for another key: exit 14", async () => {
    // The other lab's certificate for the same name carries a key this device never generated.
    const otherOut = join(await tempDir(), "o");
    expect((await enrollCli(otherLab.url, otherLab, "otherkey", otherOut, ["--key-type", "ec-p256"])).code).toBe(0);
    const { readFile } = await import("node:fs/promises");
    const pem = await readFile(join(otherOut, "otherkey.crt"), "utf8");
    const der = pem.replace(/-----[^-]+-----|\s/g, "");
    const proxy = await tampered(/^\/sign\//, {
      status: 200,
      body: JSON.stringify({ status: { data: der, responseType: "CERTIFICATE" } }),
    });
    try {
      await expectFailure(
        { platform: proxy.url, deviceId: "otherkey" },
        14,
        /the certificate's public key is not the key generated for this device/,
      );
    } finally {
      await proxy.close();
    }
  });
});

describe("bad input is refused before any request, in one sentence, exit 2", () => {
  const base = () => ["enroll", "--platform", lab.url, "--username", "admin", "--password-stdin"];
  const usage: Array<[string, string[], RegExp]> = [
    ["no device id", [], /a device id is required/],
    [
      "a device id that leaves the output directory",
      ["--device-id", "../evil"],
      /the device id "\.\.\/evil" is not usable/,
    ],
    ["a device id with a control character", ["--device-id", "a\u0007b"], /is not usable/],
    [
      "an IP SAN that is not an address",
      ["--device-id", "d", "--ip", "999.1.1.1"],
      /--ip '999\.1\.1\.1' is not an IPv4 or IPv6 address/,
    ],
    ["a DNS SAN with a space", ["--device-id", "d", "--dns", "a b"], /--dns 'a b' is not a DNS name/],
    ["an unknown key type", ["--device-id", "d", "--key-type", "rsa-1024"], /argument 'rsa-1024' is invalid/],
  ];
  for (const [what, args, message] of usage) {
    it(what, async () => {
      const cwd = await tempDir();
      const run = await runCli([...base(), ...args], { input: lab.password, cwd });
      expect(run.stderr).toMatch(message);
      expect(run.code).toBe(2);
      expect(existsSync(join(cwd, "certs"))).toBe(false);
    });
  }

  it("plain http beyond loopback is refused unless --allow-http", async () => {
    const run = await runCli(
      ["enroll", "--platform", "http://192.0.2.1:8000", "--device-id", "d", "--username", "admin", "--password-stdin"],
      { input: "x" },
    );
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/refusing plain http to 192\.0\.2\.1:8000/);
    expect(run.stderr).toMatch(/--allow-http/);
  });

  it("a password on the command line is refused without being echoed", async () => {
    const secret = "argv-secret-should-never-print";
    SECRETS.add(secret);
    for (const args of [[`--password=${secret}`], ["--password", secret], [`--pasword=${secret}`]]) {
      const run = await runCli(["enroll", "--platform", lab.url, "--device-id", "d", "--username", "admin", ...args]);
      expect(run.code).toBe(2);
      expect(run.stderr).not.toContain(secret);
    }
  });

  it("no password source names the three ways to give one", async () => {
    const run = await runCli([
      "enroll",
      "--platform",
      lab.url,
      "--device-id",
      "d",
      "--username",
      "admin",
      "--out",
      join(await tempDir(), "c"),
    ]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/no password given/);
    expect(run.stderr).toMatch(/--password-file FILE or --password-stdin, or set CERT_RETRIEVER_PASSWORD/);
  });

  it("a password file that cannot be read: exit 3, nothing written", async () => {
    await lab.addDevice("pwmissing");
    const dir = await tempDir();
    const run = await runCli([
      "enroll",
      "--platform",
      lab.url,
      "--device-id",
      "pwmissing",
      "--username",
      "admin",
      "--password-file",
      join(dir, "nope"),
      "--out",
      join(dir, "certs"),
    ]);
    expect(run.code).toBe(3);
    expect(run.stderr).toMatch(/cannot read the password file .*nope/);
    expect(existsSync(join(dir, "certs"))).toBe(false);
  });

  it("--debug adds the stack trace", async () => {
    const port = await closedPort();
    const run = await runCli(
      [
        "--debug",
        "enroll",
        "--platform",
        `http://127.0.0.1:${port}`,
        "--device-id",
        "d",
        "--username",
        "admin",
        "--password-stdin",
        "--out",
        join(await tempDir(), "c"),
      ],
      { input: "x" },
    );
    expect(run.code).toBe(75);
    expect(run.stderr).toMatch(/\n\s+at /);
  });
});

describe("the password and the token never reach any output", () => {
  it("success with --json and every failure above were scanned by runCli", async () => {
    // runCli throws if a registered secret or a JWT appears in stdout or stderr; this run adds the lab password explicitly.
    await lab.addDevice("scan");
    const out = join(await tempDir(), "certs");
    const run = await enrollCli(lab.url, lab, "scan", out, ["--json", "--debug"]);
    expect(run.code).toBe(0);
    expect(`${run.stdout}${run.stderr}`).not.toContain(lab.password);
  });
});

/** A control character other than tab and newline: none may reach the terminal. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: they are what these tests look for
const CONTROL_CHARACTER = /[\u0000-\u0008\u000b-\u001f\u007f]/;

describe("what the platform says reaches the terminal made safe", () => {
  it("a password the platform echoes back is not printed, nor are escape sequences in its reply", async () => {
    const password = "echoed-Secret-42";
    SECRETS.add(password);
    const proxy = await startProxy(lab.url, (path) =>
      path === "/auth"
        ? {
            status: 403,
            body: JSON.stringify({
              message: `AuthorizationError for password ${password} \u001b[2J\u001b]0;pwned\u0007done`,
              status: 403,
            }),
          }
        : undefined,
    );
    try {
      await lab.addDevice("echo-1");
      const run = await enrollCli(proxy.url, { password }, "echo-1", join(await tempDir(), "certs"));
      expect(run.code).toBe(10);
      expect(run.stderr).toMatch(/AuthorizationError for password <redacted> \?\[2J\?\]0;pwned\?done/);
      expect(run.stderr).not.toMatch(CONTROL_CHARACTER);
    } finally {
      await proxy.close();
    }
  });

  it("a CA whose subject holds escape sequences is shown with them neutralised on the fetch-ca line", async () => {
    const { makeCa } = await import("../helpers/pki.js");
    const evil = await makeCa("IOTmidCA\u001b[31m\u001b]2;owned\u0007");
    const der = Buffer.from(evil.cert.rawData).toString("base64");
    const proxy = await startProxy(lab.url, (path) =>
      path.startsWith("/ca/") ? { status: 200, body: JSON.stringify({ certificate: der }) } : undefined,
    );
    try {
      await lab.addDevice("esc-ca");
      const run = await enrollCli(proxy.url, lab, "esc-ca", join(await tempDir(), "certs"));
      expect(run.stderr).toMatch(/fetch-ca: CA CN=IOTmidCA\?\[31m\?\]2\\;owned\?, SHA-256/);
      expect(run.stderr).not.toMatch(CONTROL_CHARACTER);
      expect(run.code).toBe(14);
    } finally {
      await proxy.close();
    }
  });
});
