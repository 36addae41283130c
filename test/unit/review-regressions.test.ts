import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { setDevice, startLab } from "../../lab/src/server.js";
import { softwareCrypto } from "../../src/keys/provider.js";
import { runCli, SECRETS } from "../helpers/cli.js";
import { enrollCli, listFiles } from "../helpers/enroll.js";
import { startProxy, startTestLab, type TestLab, tempDir } from "../helpers/lab.js";

let lab: TestLab;
beforeAll(async () => {
  lab = await startTestLab({ autoRegister: true });
});
afterAll(async () => lab.stop());

describe("review findings", () => {
  it("a token in a malformed /auth reply is not quoted in the error", async () => {
    const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzZXJ2aWNlIjoiYWRtaW4ifQ.c2lnbmF0dXJlc2lnbmF0dXJl";
    SECRETS.add(jwt);
    const proxy = await startProxy(lab.url, (path) =>
      path === "/auth" ? { status: 200, body: JSON.stringify({ jwt }), contentType: "text/plain" } : undefined,
    );
    try {
      const run = await enrollCli(proxy.url, lab, "tok-quote", join(await tempDir(), "c"));
      expect(run.code).toBe(10);
      expect(run.stderr).toContain("<token>");
    } finally {
      await proxy.close();
    }
  });

  it("a signing request that may have reached the platform is not repeated (504 after issuing): exit 75, then the reset hint", async () => {
    let first = true;
    const proxy = await startProxy(lab.url, (path) => {
      if (path.startsWith("/sign/") && first) {
        first = false;
        return { status: 504, body: '{"message":"The upstream server is timing out"}' };
      }
      return undefined;
    });
    try {
      const out = join(await tempDir(), "c");
      const run = await enrollCli(proxy.url, lab, "lost-reply", out);
      expect(run.stderr).toMatch(
        /submit-csr failed: .*HTTP 504.*the request may have reached the platform, so it is not repeated/,
      );
      expect(run.code).toBe(75);
      expect(existsSync(out)).toBe(false);
      const again = await enrollCli(proxy.url, lab, "lost-reply", out);
      expect([again.code, again.stderr]).toEqual([13, expect.stringMatching(/reset the device on the platform/)]);
    } finally {
      await proxy.close();
    }
  });

  it("credentials from x509-identity-mgmt v0.5 (CN <tenant>:<device>) count as valid: no re-enrollment, check says nothing to do", async () => {
    const v05 = await startLab({
      dir: lab.dir,
      host: "127.0.0.1",
      port: 0,
      crypto: softwareCrypto(),
      certProfile: "cfree",
      autoRegister: true,
      adminPassword: lab.password,
      tokenLifetime: 420,
      api: "x509",
      x509Rules: "v0.5",
    });
    try {
      const out = join(await tempDir(), "c");
      expect((await enrollCli(v05.url, lab, "abc123", out)).code).toBe(0);
      const again = await enrollCli(v05.url, lab, "abc123", out);
      expect([again.code, again.stderr]).toEqual([0, expect.stringMatching(/already has valid credentials/)]);
      expect((await runCli(["check", "--device-id", "abc123", "--out", out])).code).toBe(1);
    } finally {
      await v05.close();
    }
  });

  it("--device-id-file on the command line beats a device id from the config file; CERT_RETRIEVER_PASSWORD beats a config passwordFile", async () => {
    const dir = await tempDir();
    await writeFile(join(dir, "id"), "from-file\n");
    await writeFile(join(dir, "wrong"), "not-the-password");
    await writeFile(join(dir, "c.json"), JSON.stringify({ deviceId: "from-config", passwordFile: join(dir, "wrong") }));
    const run = await runCli(
      [
        "enroll",
        "--config",
        join(dir, "c.json"),
        "--platform",
        lab.url,
        "--username",
        "admin",
        "--device-id-file",
        join(dir, "id"),
        "--out",
        join(dir, "o"),
      ],
      { env: { CERT_RETRIEVER_PASSWORD: lab.password } },
    );
    expect(run.code, run.stderr).toBe(0);
    expect(await listFiles(join(dir, "o"))).toEqual([
      "IOTmidCA.crt",
      "from-file.crt",
      "from-file.key",
      "from-file.settings.json",
    ]);
  });

  it("an unusable --client-key is a configuration error (exit 3), not a retried network failure", async () => {
    const dir = await tempDir();
    const crt = await readFile(join(lab.dir, "ca.crt"), "utf8");
    await writeFile(join(dir, "c.crt"), crt);
    await writeFile(join(dir, "k.pem"), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    const run = await enrollCli(lab.url, lab, "badkey", join(dir, "o"), [
      "--client-cert",
      join(dir, "c.crt"),
      "--client-key",
      join(dir, "k.pem"),
    ]);
    expect([run.code, run.stderr]).toEqual([
      3,
      expect.stringMatching(/the TLS files given to --platform-ca, --client-cert or --client-key cannot be used/),
    ]);
  });

  it("a config file that is not JSON is reported without quoting it (it may hold a password)", async () => {
    const dir = await tempDir();
    SECRETS.add("hunter2secret");
    await writeFile(join(dir, "c.json"), '{\n  "username": "admin",\n  "password": hunter2secret\n}', { mode: 0o600 });
    const run = await runCli(["enroll", "--config", join(dir, "c.json"), "--device-id", "x"]);
    expect([run.code, run.stderr]).toEqual([3, expect.stringMatching(/the config file .*c\.json is not valid JSON/)]);
    expect(run.stderr).not.toMatch(/hunter2|sec/);
  });

  it("a damaged profile record makes verify say so in one sentence (exit 3)", async () => {
    const out = join(await tempDir(), "c");
    expect((await enrollCli(lab.url, lab, "damaged", out, ["--profile", "dojot-mosca"])).code).toBe(0);
    await writeFile(join(out, "damaged.profile.json"), "{broken");
    const run = await runCli(["verify", "--broker", "mqtts://127.0.0.1:1", "--device-id", "damaged", "--out", out]);
    expect([run.code, run.stderr]).toEqual([
      3,
      expect.stringMatching(/the recorded profile of 'damaged' .* is damaged/),
    ]);
  });

  it("with valid credentials, an expired token or no password at all still means nothing to do (exit 0)", async () => {
    const out = join(await tempDir(), "c");
    expect((await enrollCli(lab.url, lab, "idle", out)).code).toBe(0);
    const token = join(await tempDir(), "t");
    await writeFile(
      token,
      `${Buffer.from('{"alg":"HS256"}').toString("base64url")}.${Buffer.from('{"service":"admin","exp":1}').toString("base64url")}.c2ln`,
    );
    const withToken = await runCli([
      "enroll",
      "--platform",
      lab.url,
      "--device-id",
      "idle",
      "--token-file",
      token,
      "--out",
      out,
    ]);
    expect([withToken.code, withToken.stderr]).toEqual([0, expect.stringMatching(/already has valid credentials/)]);
    const noPassword = await runCli([
      "enroll",
      "--platform",
      lab.url,
      "--device-id",
      "idle",
      "--username",
      "admin",
      "--out",
      out,
    ]);
    expect(noPassword.code).toBe(0);
  });

  it("enrolling again keeps the profile recorded at enrollment; with --profile generic it removes it", async () => {
    const out = join(await tempDir(), "c");
    expect((await enrollCli(lab.url, lab, "reprofile", out, ["--profile", "dojot-vernemq"])).code).toBe(0);
    await setDevice(lab.dir, "reprofile", "reset");
    expect((await enrollCli(lab.url, lab, "reprofile", out, ["--force"])).code).toBe(0);
    expect(await listFiles(out)).toContain("reprofile.profile.json");
    await setDevice(lab.dir, "reprofile", "reset");
    const generic = await enrollCli(lab.url, lab, "reprofile", out, ["--force", "--profile", "generic"]);
    expect(generic.code, generic.stderr).toBe(0);
    expect(generic.stderr).toMatch(
      /note: --profile "generic" overrides "dojot-vernemq", recorded when device 'reprofile' was enrolled/,
    );
    expect(await listFiles(out)).toEqual(["IOTmidCA.crt", "reprofile.crt", "reprofile.key", "reprofile.settings.json"]);
  });

  it("--ca-name cannot leave the output directory; --renew-before 0 is a valid window", async () => {
    const dir = await tempDir();
    await mkdir(join(dir, "o"));
    const bad = await enrollCli(lab.url, lab, "caname", join(dir, "o"), ["--ca-name", "../escape"]);
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringMatching(/--ca-name "\.\.\/escape" is not usable/)]);
    expect(existsSync(join(dir, "escape.crt"))).toBe(false);
    expect((await runCli(["check", "--device-id", "x", "--out", join(dir, "o"), "--renew-before", "0"])).code).toBe(0);
  });
});
