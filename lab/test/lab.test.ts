import { spawn } from "node:child_process";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { softwareCrypto } from "cert-retriever";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { commandLine, runCli, SECRETS } from "../../test/helpers/cli.js";
import { startTestLab, type TestLab, tempDir } from "../../test/helpers/lab.js";
import { openssl } from "../../test/helpers/tools.js";
import { FAULT_KINDS } from "../src/fault-kinds.js";
import { dojotClaims, signJwt } from "../src/jwt.js";
import { loadState } from "../src/state.js";
import * as x509 from "../src/x509.js";

const crypto = softwareCrypto();

async function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = { "content-type": "application/json" },
) {
  const res = await fetch(url, {
    method: "POST",
    headers,
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, text: await res.text(), type: res.headers.get("content-type") ?? "" };
}

async function login(lab: TestLab): Promise<string> {
  const res = await post(`${lab.url}/auth`, { username: "admin", passwd: lab.password });
  return (JSON.parse(res.text) as { jwt: string }).jwt;
}

/** A base64 DER CSR for CN=`cn` with a key of the given WebCrypto algorithm. */
async function csrFor(
  cn: string,
  alg: RsaHashedKeyGenParams | EcKeyGenParams,
  sans: x509.JsonGeneralName[] = [],
): Promise<string> {
  const keys = (await crypto.subtle.generateKey(alg, false, ["sign", "verify"])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: `CN=${cn}`,
      keys,
      signingAlgorithm: alg.name === "ECDSA" ? { name: "ECDSA", hash: "SHA-256" } : alg,
      extensions: sans.length ? [new x509.SubjectAlternativeNameExtension(sans)] : [],
    },
    crypto,
  );
  return Buffer.from(csr.rawData).toString("base64");
}

const RSA = (bits: number): RsaHashedKeyGenParams => ({
  name: "RSASSA-PKCS1-v1_5",
  hash: "SHA-256",
  publicExponent: new Uint8Array([1, 0, 1]),
  modulusLength: bits,
});

describe("lab platform: dojot's /auth (protocol notes, section 2)", () => {
  let lab: TestLab;
  beforeAll(async () => {
    lab = await startTestLab({ tokenLifetime: 1 });
  });
  afterAll(async () => lab.stop());

  it("answers dojot's error bodies and codes", async () => {
    expect(await post(`${lab.url}/auth`, "{}", { "content-type": "text/plain" })).toMatchObject({
      status: 400,
      text: '{"message":"invalid mimetype","status":400}',
    });
    expect(await post(`${lab.url}/auth`, { passwd: "x" })).toMatchObject({
      status: 400,
      text: '{"message":"missing username","status":400}',
    });
    expect(await post(`${lab.url}/auth`, { username: "admin" })).toMatchObject({
      status: 400,
      text: '{"message":"missing password","status":400}',
    });
    expect(await post(`${lab.url}/auth`, { username: "ghost", passwd: "x" })).toMatchObject({
      status: 401,
      text: '{"message":"AuthenticationError","status":401}',
    });
    expect(await post(`${lab.url}/auth`, { username: "admin", passwd: "wrong" })).toMatchObject({
      status: 403,
      text: '{"message":"AuthorizationError","status":403}',
    });
  });

  it("issues an HS256 JWT whose service claim is the tenant, user name lower-cased, with an expiry", async () => {
    const res = await post(`${lab.url}/auth`, { username: "ADMIN", passwd: lab.password });
    expect(res.status).toBe(200);
    const jwt = (JSON.parse(res.text) as { jwt: string }).jwt;
    const [head, body] = jwt
      .split(".")
      .slice(0, 2)
      .map((p) => JSON.parse(Buffer.from(p, "base64url").toString()));
    expect(head).toEqual({ alg: "HS256", typ: "JWT" });
    expect(body).toMatchObject({ service: "admin", username: "admin" });
    expect(body.exp - body.iat).toBe(1);
  });

  it("requires the JWT on /ca and /sign: none -> 401, forged -> 403, as Kong 0.11's jwt plugin answers (dojot v0.4.3)", async () => {
    const none = await fetch(`${lab.url}/ca/IOTmidCA`);
    expect([none.status, await none.text()]).toEqual([401, '{"message":"Unauthorized"}']);
    const jwt = await login(lab);
    const forged = jwt.slice(0, -4) + (jwt.endsWith("AAAA") ? "BBBB" : "AAAA");
    const bad = await fetch(`${lab.url}/ca/IOTmidCA`, { headers: { authorization: `Bearer ${forged}` } });
    expect([bad.status, await bad.text()]).toEqual([403, '{"message":"Invalid signature"}']);
  });

  // dojot's kong.config.sh adds the jwt plugin without config.claims_to_verify (v0.4.3: commented
  // out; v0.5.0, v0.8.1: `name=jwt` alone), and Kong then checks no claim (kong/plugins/jwt/
  // handler.lua at 0.11.0 and 2.0.4): an expired token passes. With `exp` to verify it is refused
  // with the claim's error as the body.
  it('an expired token passes Kong as dojot configures it; with claims_to_verify=exp, 401 {"exp":"token expired"}', async () => {
    const checking = await startTestLab({ claimsToVerify: ["exp"] });
    try {
      for (const [platform, expected] of [
        [lab, [200]],
        [checking, [401, '{"exp":"token expired"}']],
      ] as const) {
        const state = (await loadState(platform.dir))!;
        const past = Math.floor(Date.now() / 1000) - 60;
        const expired = signJwt(
          { ...dojotClaims({ name: "admin", service: "admin", id: 1 }, 1, past), exp: past },
          state.jwtSecret,
        );
        SECRETS.add(expired);
        const res = await fetch(`${platform.url}/ca/IOTmidCA`, { headers: { authorization: `Bearer ${expired}` } });
        const text = await res.text();
        expect(expected.length === 1 ? [res.status] : [res.status, text]).toEqual(expected);
      }
    } finally {
      await checking.stop();
    }
  });
});

describe("lab platform: Kong in front of dojot's services, without a JWT", () => {
  let lab: TestLab;
  beforeAll(async () => {
    lab = await startTestLab({ api: "both" });
  });
  afterAll(async () => lab.stop());

  // Kong's jwt plugin (PRIORITY 1005, kong/plugins/jwt/handler.lua at 2.0.4 and 2.2.2; 0.11's the
  // same) runs before dojot's pepkong (no PRIORITY, so 0: dojot/kong v0.5.0 and v0.8.0
  // plugins/pepkong/kong/plugins/pepkong/handler.lua), on every route dojot's kong.config.sh protects.
  it('no token (no Authorization header, or one that is not Bearer): Kong\'s 401 {"message":"Unauthorized"}, on EJBCA-REST\'s and x509-identity-mgmt\'s routes alike', async () => {
    for (const path of ["/ca/IOTmidCA", "/sign/dev1/pkcs10", "/x509/v1/ca", "/x509/v1/certificates"]) {
      for (const headers of [{}, { authorization: "Basic YWRtaW46eA==" }, { authorization: "Bearer" }] as Record<
        string,
        string
      >[]) {
        const res = await fetch(`${lab.url}${path}`, { method: path.startsWith("/sign") ? "POST" : "GET", headers });
        expect(
          [res.status, res.headers.get("content-type"), await res.text()],
          `${path} ${JSON.stringify(headers)}`,
        ).toEqual([401, "application/json; charset=utf-8", '{"message":"Unauthorized"}']);
      }
    }
  });

  it("a token Kong takes from ?jwt= passes its plugin, then pepkong, which wants the Authorization header, answers 401 with an empty body", async () => {
    const res = await fetch(`${lab.url}/x509/v1/ca?jwt=${await login(lab)}`);
    expect([res.status, await res.text()]).toEqual([401, ""]);
    const bad = await fetch(`${lab.url}/ca/IOTmidCA?jwt=not.a-token.at-all`);
    expect(bad.status).toBe(401);
    expect(await bad.text()).not.toBe("");
  });
});

describe("lab platform: EJBCA-REST /ca and /sign (section 3)", () => {
  let lab: TestLab;
  let auth: Record<string, string>;
  beforeAll(async () => {
    lab = await startTestLab();
    auth = { authorization: `Bearer ${await login(lab)}`, "content-type": "application/json" };
  });
  afterAll(async () => lab.stop());

  it("serves the CA as bare base64 DER split every 64 characters, DN like dojot's", async () => {
    const res = await fetch(`${lab.url}/ca/IOTmidCA`, { headers: auth });
    const { certificate } = (await res.json()) as { certificate: string };
    const lines = certificate.split("\n");
    expect(lines.slice(0, -1).every((l) => l.length === 64)).toBe(true);
    expect(certificate).not.toContain("BEGIN");
    const ca = new x509.X509Certificate(Buffer.from(certificate, "base64"));
    expect(ca.subject).toBe("CN=IOTmidCA, O=EJBCA IOT, C=SE");
    const unknown = await fetch(`${lab.url}/ca/Nope`, { headers: auth });
    expect([unknown.status, await unknown.text()]).toEqual([
      400,
      '{"status":400,"message":"soap message: CA with name Nope does not exist."}',
    ]);
  });

  it("signs a NEW end entity once: subject from the end entity, the CSR's SANs kept (CFREE allows extension override), capped at the CA's end; then 400 GENERATED", async () => {
    await lab.addDevice("abc123");
    const csr = await csrFor("ignored-cn", RSA(2048), [
      { type: "dns", value: "abc.local" },
      { type: "ip", value: "10.0.0.1" },
      { type: "url", value: "spiffe://x/y" },
    ]);
    const res = await post(`${lab.url}/sign/abc123/pkcs10`, { passwd: "dojot", certificate: csr }, auth);
    expect(res.status).toBe(200);
    const status = (JSON.parse(res.text) as { status: { data: string; responseType: string } }).status;
    expect(status.responseType).toBe("CERTIFICATE");
    const cert = new x509.X509Certificate(Buffer.from(status.data, "base64"));
    expect(cert.subject).toBe("CN=abc123");
    // CFREE asks for 730 days, IOTmidCA lives 650: EJBCA never issues past its CA's end.
    expect(cert.notAfter.getTime()).toBe(lab.ca.cert.notAfter.getTime());
    const pem = cert.toString("pem");
    const dir = await tempDir();
    await writeFile(join(dir, "c.pem"), pem);
    const ext = openssl("x509", "-noout", "-ext", "subjectAltName,keyUsage", "-in", join(dir, "c.pem"));
    expect(ext).toMatch(/DNS:abc\.local, IP Address:10\.0\.0\.1, URI:spiffe:\/\/x\/y\n/);
    expect(ext).toContain("Digital Signature, Non Repudiation, Key Encipherment, Data Encipherment, Key Agreement");

    const again = await post(`${lab.url}/sign/abc123/pkcs10`, { passwd: "dojot", certificate: csr }, auth);
    expect(again).toMatchObject({
      status: 400,
      text: '{"status":400,"message":"soap message: Got request with status GENERATED (40), NEW, FAILED or INPROCESS required: abc123."}',
    });
  });

  it("with extension override off (--no-extension-override), the CSR's SANs do not reach the certificate", async () => {
    const strict = await startTestLab({ extensionOverride: false });
    try {
      await strict.addDevice("abc124");
      const jwt = await login(strict);
      const csr = await csrFor("abc124", RSA(2048), [
        { type: "dns", value: "abc.local" },
        { type: "url", value: "spiffe://x/y" },
      ]);
      const res = await post(
        `${strict.url}/sign/abc124/pkcs10`,
        { passwd: "dojot", certificate: csr },
        { authorization: `Bearer ${jwt}`, "content-type": "application/json" },
      );
      const cert = new x509.X509Certificate(
        Buffer.from((JSON.parse(res.text) as { status: { data: string } }).status.data, "base64"),
      );
      expect(cert.getExtension(x509.SubjectAlternativeNameExtension)).toBeNull();
    } finally {
      await strict.stop();
    }
  });

  it("refuses what CFREE refuses: 1024-bit RSA and ECDSA keys; a wrong end-entity password in EJBCA 6.3.1.1's words", async () => {
    await lab.addDevice("short");
    const short = await post(
      `${lab.url}/sign/short/pkcs10`,
      { passwd: "dojot", certificate: await csrFor("short", RSA(1024)) },
      auth,
    );
    expect(short).toMatchObject({
      status: 400,
      text: expect.stringContaining("Illegal key length, not authorized by certificate profile: 1024."),
    });
    const ec = await post(
      `${lab.url}/sign/short/pkcs10`,
      { passwd: "dojot", certificate: await csrFor("short", { name: "ECDSA", namedCurve: "P-256" }) },
      auth,
    );
    expect(ec).toMatchObject({ status: 400, text: expect.stringContaining("Illegal key algorithm used: ECDSA.") });
    const pw = await post(
      `${lab.url}/sign/short/pkcs10`,
      { passwd: "nope", certificate: await csrFor("short", RSA(2048)) },
      auth,
    );
    expect(pw).toMatchObject({
      status: 400,
      text: '{"status":400,"message":"soap message: Got request for user with invalid password: short."}',
    });
  });

  it("reproduces EJBCA-REST's parameter checks, including the 500 page when only one is missing", async () => {
    expect(await post(`${lab.url}/sign/x/pkcs10`, "{}", { ...auth, "content-type": "text/plain" })).toMatchObject({
      status: 400,
      text: '{"status":400,"message":"invalid mimetype"}',
    });
    expect(await post(`${lab.url}/sign/x/pkcs10`, "{not json", auth)).toMatchObject({
      status: 400,
      text: '{"status":400,"message":"malformed JSON"}',
    });
    expect(await post(`${lab.url}/sign/x/pkcs10`, {}, auth)).toMatchObject({
      status: 400,
      text: '{"status":400,"message":"Missing parameter. Expected: passwd and certificate"}',
    });
    const one = await post(`${lab.url}/sign/x/pkcs10`, { passwd: "dojot" }, auth);
    expect(one.status).toBe(500);
    expect(one.type).toContain("text/html");
  });
});

describe("the lab's command line", () => {
  it("lab serve --help lists every fault kind (the single-file build has no source to point to)", async () => {
    const run = await runCli(["lab", "serve", "--help"]);
    for (const kind of FAULT_KINDS) expect(run.stdout, kind).toMatch(new RegExp(`^ {2}${kind} +\\S`, "m"));
    expect(run.stdout).not.toMatch(/src\/lab/);
  });
});

describe("lab serve as a process", () => {
  it("listening beyond loopback, it warns, bounds connections and held bytes, and limits /auth as dojot's Kong does (the sixth login in a minute is 429)", async () => {
    const child = spawn(
      process.execPath,
      commandLine(["lab", "serve", "--dir", await tempDir(), "--listen", "0.0.0.0:0"]),
      {
        env: { PATH: process.env.PATH ?? "", CERT_RETRIEVER_LAB_PASSWORD: "exposed-lab-pw" },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    SECRETS.add("exposed-lab-pw");
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`lab did not start: ${stderr}`)), 20_000);
        createInterface({ input: child.stdout }).once("line", (line) => {
          clearTimeout(timer);
          resolve(line);
        });
      });
      expect(stderr).toMatch(/warning: the lab listens on 0\.0\.0\.0, beyond this machine/);
      expect(stderr).toMatch(/lab: \/auth limited to 5\/min,40\/h as dojot's Kong does/);
      expect(stderr).toMatch(
        /lab: at most 512 connections \(64 from one address\) and 32 MiB of request bodies at once; past that, 503/,
      );
      const local = `http://127.0.0.1:${new URL(url).port}`; // the test talks to it on loopback only
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++)
        statuses.push((await post(`${local}/auth`, { username: "admin", passwd: "exposed-lab-pw" })).status);
      expect(statuses).toEqual([200, 200, 200, 200, 200, 429]);
    } finally {
      child.kill("SIGTERM");
      await new Promise((resolve) => child.on("close", resolve));
    }
  });

  it("prints its URL, generates and shows the admin password once, keeps CA and devices across restarts", async () => {
    const dir = await tempDir();
    const serve = async (env: Record<string, string> = {}) => {
      const child = spawn(process.execPath, commandLine(["lab", "serve", "--dir", dir, "--listen", "127.0.0.1:0"]), {
        env: { PATH: process.env.PATH ?? "", ...env },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stderr = "";
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`lab did not start: ${stderr}`)), 20_000);
        createInterface({ input: child.stdout }).once("line", (line) => {
          clearTimeout(timer);
          resolve(line);
        });
      });
      const stop = async () => {
        child.kill("SIGTERM");
        return new Promise<number | null>((resolve) => child.on("close", resolve));
      };
      return { url, stop, stderr: () => stderr };
    };

    const first = await serve();
    expect(first.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const password = /password (\S+) \(shown once/.exec(first.stderr())?.[1];
    expect(password).toBeTruthy();
    SECRETS.add(password!);
    expect(await stat(join(dir, "ca.key")).then((s) => s.mode & 0o777)).toBe(0o600);
    const caBefore = await readFile(join(dir, "ca.crt"), "utf8");
    const added = await runCli(["lab", "device", "add", "--dir", dir, "persist1"]);
    expect(added.code).toBe(0);
    const out = join(dir, "certs");
    const ok = await runCli(
      [
        "enroll",
        "--platform",
        first.url,
        "--device-id",
        "persist1",
        "--username",
        "admin",
        "--password-stdin",
        "--out",
        out,
      ],
      { input: password },
    );
    expect(ok.code, ok.stderr).toBe(0);
    expect(await first.stop()).toBe(0);

    const second = await serve();
    expect(second.stderr()).not.toContain("shown once");
    expect(await readFile(join(dir, "ca.crt"), "utf8")).toBe(caBefore);
    const again = await runCli(
      [
        "enroll",
        "--platform",
        second.url,
        "--device-id",
        "persist1",
        "--username",
        "admin",
        "--password-stdin",
        "--out",
        join(dir, "c2"),
      ],
      { input: password },
    );
    expect(again.code).toBe(13); // the end entity stayed GENERATED across the restart
    expect(again.stderr).toMatch(/status GENERATED/);
    const reset = await runCli(["lab", "device", "reset", "--dir", dir, "persist1"]);
    expect(reset.code).toBe(0);
    const third = await runCli(
      [
        "enroll",
        "--platform",
        second.url,
        "--device-id",
        "persist1",
        "--username",
        "admin",
        "--password-stdin",
        "--out",
        join(dir, "c3"),
      ],
      { input: password },
    );
    expect(third.code, third.stderr).toBe(0);
    expect(openssl("verify", "-CAfile", join(dir, "ca.crt"), join(dir, "c3", "persist1.crt"))).toMatch(/: OK/);
    await second.stop();
  });

  it("resetting a device the lab does not know is a usage error", async () => {
    const lab = await startTestLab();
    try {
      const run = await runCli(["lab", "device", "reset", "--dir", lab.dir, "ghost"]);
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(/device 'ghost' is not registered in the lab/);
    } finally {
      await lab.stop();
    }
  });
});
