import { chownSync } from "node:fs";
import { chmod, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { revocationOf } from "../../lab/src/crl.js";
import { type RunningLab, startLab } from "../../lab/src/server.js";
import { softwareCrypto } from "../../src/keys/provider.js";
import * as x509 from "../../src/keys/x509.js";
import { runCli, SECRETS } from "../helpers/cli.js";
import { enrollCli, listFiles, snapshot } from "../helpers/enroll.js";
import { labDir, startTestLab, type TestLab, tempDir } from "../helpers/lab.js";

let lab: TestLab;
beforeAll(async () => {
  lab = await startTestLab({ autoRegister: true });
});
afterAll(async () => lab.stop());

const enrollArgs = (id: string, out: string) => [
  "enroll",
  "--platform",
  lab.url,
  "--device-id",
  id,
  "--username",
  "admin",
  "--out",
  out,
];

describe("settings: flags > environment > config file > defaults", () => {
  it("a config file fills what flags and the environment leave unset, and is overridden by them", async () => {
    const dir = await tempDir();
    const config = join(dir, "config.json");
    await writeFile(
      config,
      JSON.stringify({
        platform: "http://127.0.0.1:1",
        deviceId: "from-config",
        username: "admin",
        out: join(dir, "cfg-out"),
        dns: ["a.local"],
        keyType: "rsa-2048",
      }),
    );
    // The environment beats the file (platform), a flag beats both (device id); the rest comes from the file.
    const run = await runCli(["enroll", "--config", config, "--device-id", "from-flag", "--password-stdin", "--json"], {
      input: lab.password,
      env: { CERT_RETRIEVER_PLATFORM: lab.url, CERT_RETRIEVER_DEVICE_ID: "from-env" },
    });
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout);
    expect(result.deviceId).toBe("from-flag");
    expect(result.store.location).toBe(join(dir, "cfg-out"));
    expect(await listFiles(join(dir, "cfg-out"))).toEqual([
      "IOTmidCA.crt",
      "from-flag.crt",
      "from-flag.key",
      "from-flag.settings.json",
    ]);
  });

  it("a per-user config file ($XDG_CONFIG_HOME/cert-retriever/config.json) is read; --config replaces it, the environment beats it", async () => {
    const home = await tempDir();
    await mkdir(join(home, "cert-retriever"), { recursive: true });
    const out = join(home, "user-out");
    await writeFile(
      join(home, "cert-retriever", "config.json"),
      JSON.stringify({ platform: lab.url, username: "admin", out, renewBefore: "soon" }),
      { mode: 0o600 },
    );
    // The user's file sets a bad renewBefore: check sees it; the environment overrides it.
    const bad = await runCli(["check", "--device-id", "xdg-1"], { env: { XDG_CONFIG_HOME: home } });
    expect(bad.code).toBe(255);
    expect(bad.stderr).toMatch(/--renew-before 'soon' is not a duration/);
    const env = { XDG_CONFIG_HOME: home, CERT_RETRIEVER_RENEW_BEFORE: "30d" };
    const enrolled = await runCli(["enroll", "--device-id", "xdg-1", "--password-stdin", "--json"], {
      env,
      input: `${lab.password}\n`,
    });
    expect(enrolled.code, enrolled.stderr).toBe(0);
    expect(JSON.parse(enrolled.stdout).store.location).toBe(out);
    // An explicit --config is the only file read.
    const other = join(home, "other.json");
    await writeFile(other, JSON.stringify({ out: join(home, "other-out") }));
    const explicit = await runCli(["check", "--device-id", "xdg-1", "--config", other, "--json"], {
      env: { XDG_CONFIG_HOME: home },
    });
    expect(explicit.code).toBe(0); // needed: nothing in other-out
    expect(JSON.parse(explicit.stdout)).toMatchObject({ needed: true, state: "missing" });
  });

  it("the user's config file is skipped with a warning, never fatal, when it cannot be trusted or read (a HOME that is another user's); --config stays strict", async () => {
    const home = await tempDir();
    await mkdir(join(home, "cert-retriever"), { recursive: true });
    const file = join(home, "cert-retriever", "config.json");
    await writeFile(file, JSON.stringify({ renewBefore: "soon" }));
    await chmod(file, 0o666);
    const run = await runCli(["check", "--device-id", "xdg-2", "--out", await tempDir()], {
      env: { XDG_CONFIG_HOME: home },
    });
    expect(run.stderr).toMatch(
      /warning: skipping the user's config file: refusing the config file .*config\.json: other users can write it/,
    );
    expect(run.code).toBe(0); // needed: the file's bad value was never used
    const strict = await runCli(["check", "--device-id", "xdg-2", "--config", file]);
    expect(strict.code).toBe(255);
    // A number where a duration is expected: the file and the key are named, not a flag.
    await writeFile(file, JSON.stringify({ deadline: 300 }));
    await chmod(file, 0o644);
    const number = await runCli(["enroll", "--config", file, "--device-id", "n", "--non-interactive"]);
    expect(number.code).toBe(3);
    expect(number.stderr).toMatch(
      /the config file .*config\.json: 'deadline' must be a duration with its unit, such as "300s", not the number 300/,
    );
  });

  it("an unknown key in the config file is an error that names it (exit 3)", async () => {
    const dir = await tempDir();
    await writeFile(join(dir, "c.json"), JSON.stringify({ platfrom: "x" }));
    const run = await runCli(
      [...enrollArgs("u", join(dir, "o")), "--config", join(dir, "c.json"), "--password-stdin"],
      { input: "x" },
    );
    expect(run.code).toBe(3);
    expect(run.stderr).toMatch(/the config file .*c\.json has an unknown key 'platfrom'/);
  });

  it("a config file other users could have written is refused (exit 3), before it can send a secret anywhere", async () => {
    const dir = await tempDir();
    const secret = join(dir, "root-only");
    await writeFile(secret, lab.password, { mode: 0o600 });
    const config = join(dir, "c.json");
    // What another local user would plant: our secret, sent to their host.
    await writeFile(config, JSON.stringify({ platform: lab.url, passwordFile: secret }));
    await chmod(config, 0o666);
    const writable = await runCli([
      ...enrollArgs("cfg-planted", join(dir, "o")),
      "--config",
      config,
      "--non-interactive",
    ]);
    expect(writable.stderr).toMatch(/refusing the config file .*c\.json: other users can write it \(mode 666\)/);
    expect(writable.code).toBe(3);
    await chmod(config, 0o644);
    if (process.getuid?.() === 0) {
      chownSync(config, 65534, 65534); // owned by nobody
      const foreign = await runCli([
        ...enrollArgs("cfg-planted", join(dir, "o")),
        "--config",
        config,
        "--non-interactive",
      ]);
      expect(foreign.stderr).toMatch(/refusing the config file .*c\.json: it belongs to another user \(uid 65534\)/);
      expect(foreign.code).toBe(3);
      chownSync(config, 0, 0);
    }
    const trusted = await runCli([
      ...enrollArgs("cfg-planted", join(dir, "o")),
      "--config",
      config,
      "--non-interactive",
    ]);
    expect(trusted.code, trusted.stderr).toBe(0);
  });

  it("--password-stdin wins over a password file from the environment; a systemd credential wins over the config file's password file", async () => {
    const dir = await tempDir();
    const wrong = join(dir, "wrong");
    await writeFile(wrong, "not-the-password", { mode: 0o600 });
    const stdin = await runCli(
      [...enrollArgs("pw-stdin-wins", join(dir, "a")), "--password-stdin", "--non-interactive"],
      { input: lab.password, env: { CERT_RETRIEVER_PASSWORD_FILE: wrong } },
    );
    expect(stdin.code, stdin.stderr).toBe(0);
    const creds = join(dir, "creds");
    await mkdir(creds, { mode: 0o700 });
    await writeFile(join(creds, "password"), lab.password, { mode: 0o400 });
    const config = join(dir, "c.json");
    await writeFile(config, JSON.stringify({ passwordFile: wrong }), { mode: 0o600 });
    const credential = await runCli(
      [...enrollArgs("cred-wins", join(dir, "b")), "--config", config, "--non-interactive"],
      { env: { CREDENTIALS_DIRECTORY: creds } },
    );
    expect(credential.code, credential.stderr).toBe(0);
  });

  it("a password file or token file other users can write is refused (exit 3)", async () => {
    const dir = await tempDir();
    const file = join(dir, "pw");
    await writeFile(file, lab.password);
    await chmod(file, 0o666);
    const run = await runCli([...enrollArgs("pw-open", join(dir, "a")), "--password-file", file, "--non-interactive"]);
    expect(run.stderr).toMatch(/refusing the password file .*pw: other users can write it \(mode 666\)/);
    expect(run.code).toBe(3);
    const token = join(dir, "token");
    await writeFile(token, "x.y.z");
    await chmod(token, 0o622);
    const tok = await runCli([...enrollArgs("tok-open", join(dir, "b")), "--token-file", token, "--non-interactive"]);
    expect(tok.stderr).toMatch(/refusing the token file .*token: other users can write it \(mode 622\)/);
    expect(tok.code).toBe(3);
  });

  it("a password in the config file is used only if the file is 0600; otherwise it is ignored with a warning", async () => {
    const dir = await tempDir();
    const config = join(dir, "c.json");
    await writeFile(config, JSON.stringify({ password: lab.password }), { mode: 0o644 });
    await chmod(config, 0o644);
    const open = await runCli([...enrollArgs("cfgpw-open", join(dir, "a")), "--config", config]);
    expect(open.stderr).toMatch(
      /warning: ignoring 'password' in .*c\.json: the file is readable by others \(mode 644\)/,
    );
    expect(open.code).toBe(2);
    await chmod(config, 0o600);
    const closed = await runCli([...enrollArgs("cfgpw-closed", join(dir, "b")), "--config", config]);
    expect(closed.code, closed.stderr).toBe(0);
  });

  it("reads the password and the device id from systemd credentials and --device-id-file", async () => {
    const creds = await tempDir();
    await writeFile(join(creds, "password"), lab.password, { mode: 0o400 });
    const idFile = join(creds, "device-id");
    await writeFile(idFile, "from-file\nignored second line\n");
    const out = join(await tempDir(), "o");
    const run = await runCli(
      ["enroll", "--platform", lab.url, "--username", "admin", "--device-id-file", idFile, "--out", out],
      { env: { CREDENTIALS_DIRECTORY: creds } },
    );
    expect(run.code, run.stderr).toBe(0);
    expect(await listFiles(out)).toEqual(["IOTmidCA.crt", "from-file.crt", "from-file.key", "from-file.settings.json"]);
  });

  it("without a terminal nothing is asked: a missing value is a usage error naming the flag and the variable", async () => {
    const run = await runCli(["enroll", "--device-id", "x"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/the platform URL is required/);
    expect(run.stderr).toMatch(/--platform .* CERT_RETRIEVER_PLATFORM/);
  });
});

describe("factory token reuse: login once, enroll many", () => {
  let limited: RunningLab;
  beforeAll(async () => {
    limited = await startLab({
      dir: lab.dir,
      host: "127.0.0.1",
      port: 0,
      crypto: softwareCrypto(),
      certProfile: "cfree",
      autoRegister: true,
      adminPassword: lab.password,
      tokenLifetime: 420,
      authRateLimit: [
        { limit: 5, windowMs: 60_000 },
        { limit: 40, windowMs: 3_600_000 },
      ],
    });
  });
  afterAll(async () => limited.close());

  it("login writes a 0600 token and says how long it lives; enroll --token-file needs no password; the 6th login in a minute gets 429", async () => {
    const dir = await tempDir();
    const token = join(dir, "station.token");
    const login = await runCli(
      ["login", "--platform", limited.url, "--username", "admin", "--password-stdin", "--token-file", token, "--json"],
      { input: lab.password },
    );
    expect(login.code, login.stderr).toBe(0);
    expect(login.stderr).toMatch(
      /logged in as admin \(tenant admin\); the token is valid for (6 min 5\d|7 min 0) s, until .*; written to .*station\.token \(mode 0600\)/,
    );
    expect(JSON.parse(login.stdout)).toMatchObject({
      username: "admin",
      tenant: "admin",
      validForSeconds: expect.any(Number),
    });
    expect((await stat(token)).mode & 0o777).toBe(0o600);
    SECRETS.add((await readFile(token, "utf8")).trim());

    for (let i = 0; i < 6; i++) {
      const run = await runCli([
        "enroll",
        "--platform",
        limited.url,
        "--device-id",
        `line-${i}`,
        "--token-file",
        token,
        "--out",
        join(dir, `d${i}`),
        "--non-interactive",
      ]);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toMatch(/authenticate: using the token from .*station\.token \(tenant admin\)/);
    }
    // Four more logins fill the minute's five; the next one is refused with Kong's 429 and Retry-After.
    for (let i = 0; i < 4; i++) {
      expect(
        (
          await runCli(
            [
              "login",
              "--platform",
              limited.url,
              "--username",
              "admin",
              "--password-stdin",
              "--token-file",
              join(dir, `t${i}`),
            ],
            { input: lab.password },
          )
        ).code,
      ).toBe(0);
    }
    const refused = await runCli(
      [
        "login",
        "--platform",
        limited.url,
        "--username",
        "admin",
        "--password-stdin",
        "--token-file",
        join(dir, "t9"),
        "--retries",
        "0",
      ],
      { input: lab.password },
    );
    expect(refused.code).toBe(75);
    expect(refused.stderr).toMatch(/answered HTTP 429: API rate limit exceeded/);
    expect(refused.stderr).toMatch(/log in once with 'cert-retriever login' and use --token-file/);
  });

  it("a token the platform refuses (forged: Kong 0.11's 403 'Invalid signature', not a missing permission) is exit 19 with the hint to log in again (an expired one: classification.test.ts)", async () => {
    const dir = await tempDir();
    const forged = `${Buffer.from('{"alg":"HS256"}').toString("base64url")}.${Buffer.from(JSON.stringify({ service: "admin", exp: Math.floor(Date.now() / 1000) + 600 })).toString("base64url")}.c2lnbmF0dXJl`;
    await writeFile(join(dir, "t"), forged, { mode: 0o600 });
    const run = await runCli([
      "enroll",
      "--platform",
      lab.url,
      "--device-id",
      "forged",
      "--token-file",
      join(dir, "t"),
      "--out",
      join(dir, "o"),
    ]);
    expect(run.code).toBe(19);
    expect(run.stderr).toMatch(/fetch-ca failed: .*HTTP 403: Invalid signature/);
    expect(run.stderr).toMatch(/cert-retriever login/);
  });
});

describe("check: the ExecCondition= contract (0 enroll, 1 nothing to do, 255 error)", () => {
  it("every failure of check is 255, a bad flag or environment value included (1-254 would silently skip the unit)", async () => {
    for (const [args, env] of [
      [["check", "--store", "filess"], {}],
      [["check"], { CERT_RETRIEVER_STORE: "filess" }],
      [["check", "--no-such-flag"], {}],
    ] as const) {
      const run = await runCli([...args, "--device-id", "chk-bad", "--out", join(await tempDir(), "c")], { env });
      expect(run.code, `${args.join(" ")} ${JSON.stringify(env)}: ${run.stderr}`).toBe(255);
    }
    expect((await runCli(["check", "--help"])).code).toBe(0);
  });

  it("answers 0 for missing, half, expiring, unpinned-CA and interrupted state, 1 for valid, 255 on error", async () => {
    const out = join(await tempDir(), "certs");
    const check = (...extra: string[]) => runCli(["check", "--device-id", "chk", "--out", out, ...extra]);
    const missing = await check();
    expect([missing.code, missing.stderr]).toEqual([
      0,
      expect.stringMatching(/enrollment needed: no credentials for 'chk'/),
    ]);

    expect((await enrollCli(lab.url, lab, "chk", out)).code).toBe(0);
    const valid = await check("--json");
    expect([valid.code, valid.stderr]).toEqual([
      1,
      expect.stringMatching(/nothing to do: 'chk' has valid credentials .* until .* \(renewal due from .*\)/),
    ]);
    expect(JSON.parse(valid.stdout)).toMatchObject({ needed: false, deviceId: "chk" });

    const expiring = await check("--renew-before", "731d");
    expect([expiring.code, expiring.stderr]).toEqual([0, expect.stringMatching(/within the renewal window/)]);
    const pinned = await check("--ca-fingerprint", `sha256:${"00".repeat(32)}`);
    expect([pinned.code, pinned.stderr]).toEqual([0, expect.stringMatching(/the stored CA .* not the pinned/)]);

    await mkdir(join(out, ".staging-x"));
    expect((await check()).code).toBe(0);
    await rm(join(out, ".staging-x"), { recursive: true });

    await rm(join(out, "chk.crt"));
    const half = await check();
    expect([half.code, half.stderr]).toEqual([0, expect.stringMatching(/half state: .*chk\.crt missing/)]);

    const noId = await runCli(["check", "--out", out]);
    expect([noId.code, noId.stderr]).toEqual([255, expect.stringMatching(/a device id is required/)]);
    await writeFile(join(out, "..", "file"), "");
    const badOut = await runCli(["check", "--device-id", "chk", "--out", join(out, "..", "file")]);
    expect(badOut.code).toBe(255);
  });

  it("on EJBCA-REST, a renewal inside the window puts the device's end entity back to NEW itself (POST /user, its own values), renews, and revokes the replaced certificate as superseded", async () => {
    const out = join(await tempDir(), "certs");
    expect((await enrollCli(lab.url, lab, "renew", out)).code).toBe(0);
    const before = await snapshot(out);
    const old = new x509.X509Certificate(await readFile(join(out, "renew.crt"), "utf8"));
    const run = await enrollCli(lab.url, lab, "renew", out, ["--renew-before", "731d", "--json"]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(
      /existing credentials will be replaced: the certificate expires at .* within the renewal window/,
    );
    expect(run.stderr).toMatch(
      /note: the device's end entity had issued the certificate this run replaces \(GENERATED\): it was reset to NEW to issue the new one/,
    );
    expect(JSON.parse(run.stdout).previous).toMatchObject({ serialNumber: old.serialNumber, revoked: "revoked" });
    expect((await snapshot(out))["renew.crt"]).not.toBe(before["renew.crt"]);
    const state = JSON.parse(await readFile(join(lab.dir, "state.json"), "utf8"));
    // Superseded (RFC 5280 reason 4), by DELETE /ca/<the CA's DN>/certificate/<serial>.
    expect(revocationOf(state, "legacy", old.serialNumber)).toMatchObject({ reason: 4 });
    // The entity kept its own subject and password: the next renewal works the same way.
    expect(state.devices.renew).toMatchObject({ status: 40, subjectDN: "CN=renew" });
    const again = await enrollCli(lab.url, lab, "renew", out, ["--force"]);
    expect(again.code, again.stderr).toBe(0);
  });
});

describe("idempotent re-runs with a token", () => {
  it("a CA that changed on the platform is found and the credentials enrolled again", async () => {
    const dir = await tempDir();
    const token = join(dir, "token");
    expect(
      (
        await runCli(
          ["login", "--platform", lab.url, "--username", "admin", "--password-stdin", "--token-file", token],
          { input: lab.password },
        )
      ).code,
    ).toBe(0);
    SECRETS.add((await readFile(token, "utf8")).trim());
    const out = join(dir, "certs");
    const args = ["enroll", "--platform", lab.url, "--device-id", "ca-moves", "--token-file", token, "--out", out];
    expect((await runCli(args)).code).toBe(0);
    const same = await runCli(args);
    expect([same.code, same.stderr]).toEqual([0, expect.stringMatching(/already has valid credentials/)]);
    // Another platform (another CA) behind the same device id: the stored CA no longer matches.
    const other = await startLab({
      dir: await labDir("cr-lab-", "other"),
      host: "127.0.0.1",
      port: 0,
      crypto: softwareCrypto(),
      certProfile: "cfree",
      autoRegister: true,
      adminPassword: lab.password,
      tokenLifetime: 420,
    });
    try {
      const otherToken = join(dir, "other-token");
      expect(
        (
          await runCli(
            ["login", "--platform", other.url, "--username", "admin", "--password-stdin", "--token-file", otherToken],
            { input: lab.password },
          )
        ).code,
      ).toBe(0);
      SECRETS.add((await readFile(otherToken, "utf8")).trim());
      const moved = await runCli([
        "enroll",
        "--platform",
        other.url,
        "--device-id",
        "ca-moves",
        "--token-file",
        otherToken,
        "--out",
        out,
      ]);
      expect(moved.stderr).toMatch(
        /existing credentials will be replaced: the platform's CA differs from the stored one/,
      );
      expect(moved.code, moved.stderr).toBe(0);
    } finally {
      await other.close();
    }
  });
});
