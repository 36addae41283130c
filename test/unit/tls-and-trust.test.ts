import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLab } from "../../lab/src/server.js";
import { checkPlatformUrl } from "../../src/cli/inputs.js";
import { softwareCrypto } from "../../src/keys/provider.js";
import { runCli } from "../helpers/cli.js";
import { enrollCli, listFiles } from "../helpers/enroll.js";
import { labDir, startProxy, startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { issueLeaf, makeCa, type TestCa } from "../helpers/pki.js";
import { type ForwardProxy, startForwardProxy } from "../helpers/proxy.js";

let lab: TestLab;
let gatewayCa: TestCa;
let files: { dir: string; ca: string; clientCert: string; clientKey: string };
let https: Awaited<ReturnType<typeof startProxy>>;
let mtls: Awaited<ReturnType<typeof startProxy>>;

beforeAll(async () => {
  lab = await startTestLab();
  gatewayCa = await makeCa("Gateway Test CA");
  // 0.0.0.0 reaches this machine without being a loopback name: the proxy tests use it.
  const server = await issueLeaf(
    gatewayCa,
    "localhost",
    [
      { type: "dns", value: "localhost" },
      { type: "ip", value: "127.0.0.1" },
      { type: "ip", value: "0.0.0.0" },
    ],
    "server",
  );
  const client = await issueLeaf(gatewayCa, "factory-station-1", [], "client");
  const dir = await tempDir();
  files = {
    dir,
    ca: join(dir, "gateway-ca.pem"),
    clientCert: join(dir, "client.crt"),
    clientKey: join(dir, "client.key"),
  };
  await writeFile(files.ca, gatewayCa.pem);
  await writeFile(files.clientCert, client.cert);
  await writeFile(files.clientKey, client.key, { mode: 0o600 });
  // HTTPS gateways in front of the lab: one plain, one that requires a client certificate.
  https = await startProxy(lab.url, () => undefined, { key: server.key, cert: server.cert });
  mtls = await startProxy(lab.url, () => undefined, {
    key: server.key,
    cert: server.cert,
    ca: gatewayCa.pem,
    requestCert: true,
    rejectUnauthorized: true,
  });
});
afterAll(async () => {
  await Promise.all([https.close(), mtls.close()]);
  await lab.stop();
});

describe("HTTPS to the platform is verified", () => {
  it("a gateway whose CA is not trusted: exit 11 with the hint for --platform-ca, nothing written", async () => {
    await lab.addDevice("tls-untrusted");
    const out = join(await tempDir(), "certs");
    const run = await enrollCli(https.url, lab, "tls-untrusted", out);
    expect(run.stderr).toMatch(/authenticate failed: the TLS certificate of 127\.0\.0\.1:\d+ is not trusted/);
    expect(run.stderr).toMatch(/--platform-ca FILE/);
    expect(run.code).toBe(11);
    expect(existsSync(out)).toBe(false);
  });

  it("the same gateway with --platform-ca: enrolls", async () => {
    await lab.addDevice("tls-ok");
    const out = join(await tempDir(), "certs");
    const run = await enrollCli(https.url, lab, "tls-ok", out, ["--platform-ca", files.ca]);
    expect(run.code, run.stderr).toBe(0);
    expect(await listFiles(out)).toEqual(["IOTmidCA.crt", "tls-ok.crt", "tls-ok.key", "tls-ok.settings.json"]);
  });

  it("a gateway that requires a client certificate: refused without one (exit 10), enrolls with --client-cert/--client-key", async () => {
    await lab.addDevice("mtls");
    const out = join(await tempDir(), "certs");
    const without = await enrollCli(mtls.url, lab, "mtls", out, ["--platform-ca", files.ca, "--retries", "0"]);
    expect(without.stderr).toMatch(/requires a client certificate or refused ours/);
    expect(without.code).toBe(10);
    const withCert = await enrollCli(mtls.url, lab, "mtls", out, [
      "--platform-ca",
      files.ca,
      "--client-cert",
      files.clientCert,
      "--client-key",
      files.clientKey,
    ]);
    expect(withCert.code, withCert.stderr).toBe(0);
  });

  it("--client-cert without --client-key, or a file that is not PEM, is refused before any request", async () => {
    const a = await runCli(
      [
        "enroll",
        "--platform",
        https.url,
        "--device-id",
        "d",
        "--username",
        "admin",
        "--password-stdin",
        "--client-cert",
        files.clientCert,
      ],
      { input: "x" },
    );
    expect([a.code, a.stderr]).toEqual([2, expect.stringMatching(/--client-cert and --client-key go together/)]);
    const b = await runCli(
      [
        "enroll",
        "--platform",
        https.url,
        "--device-id",
        "d",
        "--username",
        "admin",
        "--password-stdin",
        "--platform-ca",
        files.clientKey,
      ],
      { input: "x" },
    );
    expect([b.code, b.stderr]).toEqual([
      3,
      expect.stringMatching(/--platform-ca .* is not a PEM file of the expected kind/),
    ]);
  });
});

describe("HTTPS_PROXY, HTTP_PROXY and NO_PROXY are honoured, and this machine is never reached through a proxy", () => {
  let proxy: ForwardProxy;
  let connects: string[];
  let forwarded: string[];
  beforeAll(async () => {
    proxy = await startForwardProxy();
    ({ connects, forwarded } = proxy);
  });
  afterAll(async () => proxy.close());

  it("goes through the proxy, and around it for a NO_PROXY host", async () => {
    const proxyUrl = proxy.url;
    const platform = `https://0.0.0.0:${https.port}`;
    await lab.addDevice("proxied");
    connects.length = 0;
    const via = await enrollCli(platform, lab, "proxied", join(await tempDir(), "certs"), ["--platform-ca", files.ca], {
      HTTPS_PROXY: proxyUrl,
    });
    expect(via.code, via.stderr).toBe(0);
    expect(connects).toContain(`0.0.0.0:${https.port}`);

    connects.length = 0;
    await lab.addDevice("direct");
    const direct = await enrollCli(
      platform,
      lab,
      "direct",
      join(await tempDir(), "certs"),
      ["--platform-ca", files.ca],
      { HTTPS_PROXY: proxyUrl, NO_PROXY: "0.0.0.0" },
    );
    expect(direct.code, direct.stderr).toBe(0);
    expect(connects).toEqual([]);
  });

  it("a loopback platform is reached directly whatever the proxy variables say: the password never goes to the proxy", async () => {
    const proxyUrl = proxy.url;
    connects.length = 0;
    forwarded.length = 0;
    await lab.addDevice("loop-1");
    const plain = await enrollCli(lab.url, lab, "loop-1", join(await tempDir(), "certs"), [], {
      HTTP_PROXY: proxyUrl,
      http_proxy: proxyUrl,
      HTTPS_PROXY: proxyUrl,
    });
    expect(plain.code, plain.stderr).toBe(0);
    await lab.addDevice("loop-2");
    const tls = await enrollCli(https.url, lab, "loop-2", join(await tempDir(), "certs"), ["--platform-ca", files.ca], {
      HTTPS_PROXY: proxyUrl,
      https_proxy: proxyUrl,
    });
    expect(tls.code, tls.stderr).toBe(0);
    expect(forwarded).toEqual([]);
    expect(connects).toEqual([]);
  });
});

describe("pinning the CA with --ca-fingerprint", () => {
  it("the pin printed by an unpinned run is accepted by the next; a wrong pin stops before any key is made (exit 11)", async () => {
    await lab.addDevice("pin-1");
    const first = await enrollCli(lab.url, lab, "pin-1", join(await tempDir(), "certs"));
    expect(first.stderr).toMatch(/not pinned: pin it with --ca-fingerprint/);
    const printed = /SHA-256 ([0-9A-F:]{95})/.exec(first.stderr)![1]!;

    await lab.addDevice("pin-2");
    const pinned = await enrollCli(lab.url, lab, "pin-2", join(await tempDir(), "certs"), [
      "--ca-fingerprint",
      `sha256:${printed}`,
    ]);
    expect(pinned.code, pinned.stderr).toBe(0);
    expect(pinned.stderr).toMatch(/\(matches the pin\)/);

    await lab.addDevice("pin-3");
    const out = join(await tempDir(), "certs");
    const wrong = `sha256:${"ab".repeat(32)}`;
    const bad = await enrollCli(lab.url, lab, "pin-3", out, ["--ca-fingerprint", wrong]);
    expect(bad.stderr).toMatch(
      new RegExp(
        `fetch-ca failed: the CA the platform sent has SHA-256 fingerprint ${printed}, not the pinned ${wrong}`,
      ),
    );
    expect(bad.stderr).not.toMatch(/generate-key/);
    expect(bad.code).toBe(11);
    expect(existsSync(out)).toBe(false);
  });

  it("a stored CA that does not match the pin makes the stored credentials invalid, so they are replaced", async () => {
    await lab.addDevice("pin-stored");
    const out = join(await tempDir(), "certs");
    expect((await enrollCli(lab.url, lab, "pin-stored", out)).code).toBe(0);
    const other = await startLab({
      dir: await labDir("cr-lab-", "other"),
      host: "127.0.0.1",
      port: 0,
      crypto: softwareCrypto(),
      certProfile: "cfree",
      autoRegister: true,
      adminPassword: lab.password,
      tokenLifetime: 60,
    });
    try {
      const otherFp = (await import("../../src/flows/certificate.js")).sha256Fingerprint(other.ca.cert);
      const run = await enrollCli(other.url, lab, "pin-stored", out, ["--ca-fingerprint", otherFp]);
      expect(run.stderr).toMatch(/existing credentials will be replaced: the stored CA .* not the pinned/);
      expect(run.code, run.stderr).toBe(0);
    } finally {
      await other.close();
    }
  });

  it("a pin that is not a SHA-256 fingerprint is a usage error", async () => {
    const run = await runCli(
      [
        "enroll",
        "--platform",
        lab.url,
        "--device-id",
        "d",
        "--username",
        "admin",
        "--password-stdin",
        "--ca-fingerprint",
        "md5:abc",
      ],
      { input: "x" },
    );
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/--ca-fingerprint 'md5:abc' is not a SHA-256 fingerprint/);
  });
});

describe("the deadline bounds the whole run", () => {
  it("a signing request the deadline stops before it is sent is not reported as one that may have reached the platform", async () => {
    const { HttpClient, DEFAULT_TIMEOUTS } = await import("../../src/transport/http.js");
    const http = new HttpClient({ timeouts: DEFAULT_TIMEOUTS, attempts: 3, deadline: Date.now() - 1 }); // the run's clock: already past
    const sent = http.json("submit-csr", new URL(`${lab.url}/sign/x/pkcs10`), { method: "POST", body: {}, once: true });
    await expect(sent).rejects.toMatchObject({
      reason: "deadline",
      message: expect.stringMatching(/submit-csr failed: .*the deadline passed/),
    });
    await expect(sent).rejects.toMatchObject({ message: expect.not.stringMatching(/may have reached/) });
    await http.close();
  });

  it("a platform that never answers: exit 75 when --deadline passes, however long the request timeout", async () => {
    const slow = await startLab({
      dir: lab.dir,
      host: "127.0.0.1",
      port: 0,
      crypto: softwareCrypto(),
      certProfile: "cfree",
      autoRegister: true,
      adminPassword: lab.password,
      tokenLifetime: 60,
      faults: [{ route: "ca", kind: "hang" }],
    });
    try {
      const started = Date.now();
      const run = await enrollCli(slow.url, lab, "deadline", join(await tempDir(), "certs"), [
        "--deadline",
        "2s",
        "--request-timeout",
        "60s",
      ]);
      expect(run.stderr).toMatch(/fetch-ca failed: .*the deadline passed/);
      expect(run.stderr).toMatch(/--deadline/);
      expect(run.code).toBe(75);
      expect(Date.now() - started).toBeLessThan(15_000);
    } finally {
      await slow.close();
    }
  });

  it("durations and counts are checked: --deadline soon is a usage error", async () => {
    const run = await runCli(
      [
        "enroll",
        "--platform",
        lab.url,
        "--device-id",
        "d",
        "--username",
        "admin",
        "--password-stdin",
        "--deadline",
        "soon",
      ],
      { input: "x" },
    );
    expect([run.code, run.stderr]).toEqual([2, expect.stringMatching(/--deadline 'soon' is not a duration/)]);
  });
});

describe("plain http", () => {
  it("is allowed to loopback, refused elsewhere, and warned about with --allow-http (checked without any traffic)", () => {
    const warnings: string[] = [];
    expect(checkPlatformUrl("http://127.0.0.1:8000", false, (l) => warnings.push(l)).host).toBe("127.0.0.1:8000");
    expect(checkPlatformUrl("http://[::1]:8000", false, (l) => warnings.push(l)).hostname).toBe("[::1]");
    expect(() => checkPlatformUrl("http://gateway.example:8000", false, (l) => warnings.push(l))).toThrow(
      /refusing plain http to gateway\.example:8000/,
    );
    expect(warnings).toEqual([]);
    checkPlatformUrl("http://gateway.example:8000", true, (l) => warnings.push(l));
    expect(warnings).toEqual([
      expect.stringMatching(
        /--allow-http: the password, the token and the CA certificate travel in clear to gateway\.example:8000/,
      ),
    ]);
    expect(() => checkPlatformUrl("http://user:pw@127.0.0.1", false, () => {})).toThrow(/must not contain credentials/);
  });
});
