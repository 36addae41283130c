import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { certsOnlyPkcs7 } from "../../lab/src/pkcs7.js";
import { sha256Fingerprint } from "../../src/flows/certificate.js";
import { type CliRun, leakedForm, runCli, SECRETS } from "../helpers/cli.js";
import { tempDir } from "../helpers/lab.js";
import { issueLeaf, makeCa } from "../helpers/pki.js";

/**
 * A hostile platform echoes the secrets of a run back in its error replies, in every form they
 * took on the wire: the password as it is, JSON-escaped (a dojot login's body), in base64 (HTTP
 * Basic's `user:password`, or alone), URL-encoded; and slices of the token it issued. None of it
 * may reach stderr or stdout, as text or with --json. The harness's check (leakedForm) knows
 * every form, so a form that slips through fails the run that printed it.
 */

const USER = "device-admin";
/** A password with what escaping changes: a quote, a backslash, a percent sign, a colon and non-ASCII. */
const PASSWORD = 'Tr0ub"\\a%41:dör€-42';
SECRETS.add(PASSWORD);

const b64 = (text: string) => Buffer.from(text, "utf8").toString("base64");

/** What a hostile dojot says when it refuses a login, from what it received: each form of the password. */
const LOGIN_ECHOES: Record<string, (body: string, passwd: string, user: string) => string> = {
  "the password as it is": (_b, p, u) => `no user ${u} with password ${p}`,
  "the request body, JSON-escaped": (body) => `cannot parse ${body}`,
  "the request body, JSON with ASCII escapes (as Python writes it)": (_b, p, u) =>
    `cannot parse {"username": "${u}", "passwd": ${JSON.stringify(p).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)}}`,
  "the password in base64": (_b, p) => `password ${b64(p)} refused`,
  "HTTP Basic's user:password in base64": (_b, p, u) => `expected header Authorization: Basic ${b64(`${u}:${p}`)}`,
  "the password URL-encoded": (_b, p, u) => `bad form username=${u}&passwd=${encodeURIComponent(p)}`,
};

/** A dojot platform on 127.0.0.1 whose every reply is `answer`'s. */
async function hostilePlatform(answer: (req: IncomingMessage, body: string) => { status: number; body: unknown }) {
  const server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d.toString("utf8")));
    req.on("end", () => {
      const reply = answer(req, body);
      res.writeHead(reply.status, { "content-type": "application/json" }).end(JSON.stringify(reply.body));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A password file holding PASSWORD, mode 0600, and an output directory beside it. */
async function deviceDir(): Promise<{ pw: string; out: string; dir: string }> {
  const dir = await tempDir("cr-redact-");
  await writeFile(join(dir, "pw"), PASSWORD, { mode: 0o600 });
  return { pw: join(dir, "pw"), out: join(dir, "certs"), dir };
}

/** `enroll` against `platform` with `login` (password or token flags), text or --json. */
async function enroll(platform: string, out: string, login: string[], json: boolean, api: string[]): Promise<CliRun> {
  return runCli([
    "enroll",
    ...api,
    "--platform",
    platform,
    "--device-id",
    "5e1ec7ed",
    "--out",
    out,
    "--non-interactive",
    ...login,
    ...(json ? ["--json"] : []),
  ]);
}

/** What a failed run printed: on stderr (and with --json, in the error object on stdout), the echo redacted. */
function expectRedacted(run: CliRun, json: boolean, code: number): void {
  expect(run.code, run.stderr).toBe(code);
  expect(run.stderr).toContain("<redacted>");
  if (json) expect(JSON.stringify(JSON.parse(run.stdout))).toContain("<redacted>");
}

describe("a password a hostile dojot echoes back is redacted in every form it took on the wire", () => {
  let echo = LOGIN_ECHOES["the password as it is"]!;
  let platform: Awaited<ReturnType<typeof hostilePlatform>>;
  beforeAll(async () => {
    platform = await hostilePlatform((req, body) => {
      if (req.url !== "/auth") return { status: 404, body: { message: "Not found" } };
      const sent = JSON.parse(body) as { username: string; passwd: string };
      return { status: 401, body: { message: echo(body, sent.passwd, sent.username) } };
    });
  });
  afterAll(() => platform?.close());

  for (const [form, reply] of Object.entries(LOGIN_ECHOES)) {
    for (const json of [false, true]) {
      it(`${form}${json ? ", --json" : ""}`, async () => {
        echo = reply;
        const { pw, out } = await deviceDir();
        const login = ["--username", USER, "--password-file", pw];
        const run = await enroll(platform.url, out, login, json, ["--api", "x509-identity-mgmt"]);
        expectRedacted(run, json, 10);
      });
    }
  }
});

describe("a password a hostile EST server echoes back is redacted, HTTP Basic's base64 included", () => {
  let echo: (authorization: string) => string = (a) => a;
  let est: { url: string; pin: string; close(): Promise<void> };
  beforeAll(async () => {
    const root = await makeCa("Hostile EST Root");
    const tls = await issueLeaf(root, "127.0.0.1", [{ type: "ip", value: "127.0.0.1" }], "server");
    const server = createHttpsServer(tls, (req, res) => {
      req.resume();
      if (req.url!.endsWith("/cacerts")) {
        res.writeHead(200, { "content-type": "application/pkcs7-mime" });
        res.end(Buffer.from(certsOnlyPkcs7([new Uint8Array(root.cert.rawData)])).toString("base64"));
      } else if (req.url!.endsWith("/simpleenroll")) {
        res.writeHead(401, { "content-type": "text/plain" }).end(echo(req.headers.authorization ?? ""));
      } else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    est = {
      url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/est`,
      pin: `sha256:${sha256Fingerprint(root.cert)}`,
      close: () => new Promise((resolve) => server.close(() => resolve())),
    };
  });
  afterAll(() => est?.close());

  const decoded = (authorization: string) =>
    Buffer.from(authorization.replace(/^Basic /, ""), "base64")
      .toString("utf8")
      .split(":")
      .slice(1)
      .join(":");
  const echoes: Record<string, (authorization: string) => string> = {
    "the Authorization header as received": (a) => `refused Authorization: ${a}`,
    "the password alone in base64": (a) => `refused ${b64(decoded(a))}`,
    "the password decoded from the header": (a) => `refused password ${decoded(a)}`,
  };
  for (const [form, reply] of Object.entries(echoes)) {
    for (const json of [false, true]) {
      it(`${form}${json ? ", --json" : ""}`, async () => {
        echo = reply;
        const { pw, out } = await deviceDir();
        const login = ["--username", USER, "--password-file", pw, "--ca-fingerprint", est.pin];
        const run = await enroll(est.url, out, login, json, ["--api", "est"]);
        expectRedacted(run, json, 10);
      });
    }
  }
});

/** A well-formed dojot JWT that expires in ten minutes, with a random signature. */
function makeJwt(): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const claims = { service: "admin", username: USER, exp: Math.floor(Date.now() / 1000) + 600, iat: 1 };
  return `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}.${randomBytes(32).toString("base64url")}`;
}

describe("slices of the run's token that a hostile dojot echoes back are redacted", () => {
  const jwt = makeJwt();
  SECRETS.add(jwt);
  const [, payload, signature] = jwt.split(".") as [string, string, string];
  let platform: Awaited<ReturnType<typeof hostilePlatform>>;
  beforeAll(async () => {
    // A slice of 20 characters inside the claims, and the signature alone: neither is shaped like a whole JWT.
    const says = `token refused: claims ...${payload.slice(8, 28)}... do not match signature ${signature}`;
    platform = await hostilePlatform((req) =>
      req.url === "/auth" ? { status: 200, body: { jwt } } : { status: 403, body: { message: says } },
    );
  });
  afterAll(() => platform?.close());

  for (const how of ["logged in by this run", "from --token-file"]) {
    for (const json of [false, true]) {
      it(`a token ${how}${json ? ", --json" : ""}`, async () => {
        const { pw, out, dir } = await deviceDir();
        await writeFile(join(dir, "token"), `${jwt}\n`, { mode: 0o600 });
        const login =
          how === "from --token-file"
            ? ["--token-file", join(dir, "token")]
            : ["--username", USER, "--password-file", pw];
        const run = await enroll(platform.url, out, login, json, ["--api", "x509-identity-mgmt"]);
        expect(run.code, run.stderr).not.toBe(0);
        expect(run.stderr).toContain("<redacted>");
        if (json) expect(run.stdout).toContain("<redacted>");
      });
    }
  }
});

describe("the CLI's redaction, in-process, for any password and user", () => {
  /** Every form in which a run can have sent `password` (as `user`'s), as a hostile platform would echo it. */
  const forms = (user: string, password: string) => [
    password,
    JSON.stringify(password).slice(1, -1),
    b64(password),
    b64(`${user}:${password}`),
    Buffer.from(`${user}:${password}`).toString("base64url"),
    encodeURIComponent(password),
    new URLSearchParams({ p: password }).toString().slice(2),
  ];

  it("no form survives safeText (stderr) or printJson (stdout, redacted before serialising)", async () => {
    const written: string[] = [];
    const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
      written.push(String(chunk));
      return true;
    });
    try {
      await fc.assert(
        fc.asyncProperty(
          fc.string({ unit: "grapheme", minLength: 4, maxLength: 24 }),
          fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 12 }).filter((u) => !u.includes(":")),
          fc.string({ maxLength: 8 }),
          async (password, user, around) => {
            fc.pre(password.trim().length >= 4 && !"<redacted>".includes(password));
            vi.resetModules(); // a run of its own: only this password is held
            const { holdSecret, printJson, safeText } = await import("../../src/cli/output.js");
            holdSecret(password, user);
            for (const form of forms(user, password)) {
              const text = `${around}refused ${form} there${around}`;
              expect(leakedForm(safeText(text), password)).toBeUndefined();
              written.length = 0;
              printJson({ error: { message: text, facts: [text] } });
              expect(written.join("")).toContain('"facts"'); // printJson wrote where the spy sees it
              expect(leakedForm(written.join(""), password)).toBeUndefined();
            }
          },
        ),
        { numRuns: 200 },
      );
    } finally {
      spy.mockRestore();
    }
  });
});
