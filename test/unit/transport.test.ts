import { mkdir, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { softwareCrypto } from "../../src/keys/provider.js";
import * as x509 from "../../src/keys/x509.js";
import { readBounded } from "../../src/transport/bounded-body.js";
import { fetchCrlFromDistributionPoints } from "../../src/transport/crl-distribution.js";
import { DEFAULT_TIMEOUTS, HttpClient, type HttpSettings, type RetryInfo } from "../../src/transport/http.js";
import { proxyNamedFor } from "../../src/transport/proxy.js";
import { addressScope, redirectRefusal } from "../../src/transport/redirects.js";
import { backoffWait, parseRetryAfter } from "../../src/transport/retry.js";
import { runCli } from "../helpers/cli.js";
import { closedPort, tempDir } from "../helpers/lab.js";
import { issueLeaf, makeCa, type TestCa } from "../helpers/pki.js";
import { startForwardProxy } from "../helpers/proxy.js";

const CRL = Buffer.from("a CRL's DER bytes, as far as the transport knows");

/** Servers and clients a test opened, closed after it. */
const opened: Server[] = [];
const clients: HttpClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(
    opened.splice(0).map((s) => {
      s.closeAllConnections();
      return new Promise((resolve) => s.close(resolve));
    }),
  );
});

/** A client as a run makes one: one attempt unless told, a deadline a minute away. */
function client(settings: Partial<HttpSettings> = {}): HttpClient {
  const http = new HttpClient({ timeouts: DEFAULT_TIMEOUTS, attempts: 1, deadline: Date.now() + 60_000, ...settings });
  clients.push(http);
  return http;
}

/** An HTTP server on 127.0.0.1, port 0, that answers with `handle` and records the paths it was asked. */
async function serve(
  handle: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ port: number; paths: string[] }> {
  const paths: string[] = [];
  const server = createServer((req, res) => {
    paths.push(req.url ?? "");
    handle(req, res);
  });
  opened.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as AddressInfo).port, paths };
}

/** A distribution point that redirects each path in `moves` to its target and serves the CRL at `/crl`. */
function redirecting(moves: Record<string, string>) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const to = moves[req.url ?? ""];
    if (to) res.writeHead(302, { location: to }).end();
    else if (req.url === "/crl") res.writeHead(200, { "content-type": "application/pkix-crl" }).end(CRL);
    else res.writeHead(404).end();
  };
}

const fetchCrl = (urls: string[]) => fetchCrlFromDistributionPoints(urls, client());

describe("a CRL distribution point's redirects (issue 24, item 6)", () => {
  it("a redirect on the distribution point's own host and scheme is followed", async () => {
    const dp = await serve(redirecting({ "/old": "/crl" }));
    expect(Buffer.from(await fetchCrl([`http://127.0.0.1:${dp.port}/old`]))).toEqual(CRL);
    expect(dp.paths).toEqual(["/old", "/crl"]);
  });

  it("a redirect to another host name is refused, though the name is this machine too", async () => {
    const dp = await serve((req, res) => redirecting({ "/dp": `http://localhost:${dp.port}/crl` })(req, res));
    await expect(fetchCrl([`http://127.0.0.1:${dp.port}/dp`])).rejects.toThrow(/redirect.* another host/);
    expect(dp.paths).toEqual(["/dp"]);
  });

  it("a redirect to another port of the same host is refused (another service there)", async () => {
    const other = await serve(redirecting({}));
    const dp = await serve(redirecting({ "/dp": `http://127.0.0.1:${other.port}/crl` }));
    await expect(fetchCrl([`http://127.0.0.1:${dp.port}/dp`])).rejects.toThrow(/redirect.* another host/);
    expect(other.paths).toEqual([]);
  });

  it("a redirect to another scheme (http to https here) is refused before any connection is made there", async () => {
    const ca = await makeCa("Redirect Target CA");
    const leaf = await issueLeaf(ca, "localhost", [{ type: "ip", value: "127.0.0.1" }], "server");
    const target = createHttpsServer({ key: leaf.key, cert: leaf.cert }, (_req, res) => res.end(CRL));
    opened.push(target);
    let connections = 0;
    target.on("connection", () => connections++);
    await new Promise<void>((resolve) => target.listen(0, "127.0.0.1", resolve));
    const port = (target.address() as AddressInfo).port;
    const dp = await serve(redirecting({ "/dp": `https://127.0.0.1:${port}/crl` }));
    const refused = await fetchCrl([`http://127.0.0.1:${dp.port}/dp`]).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(connections).toBe(0);
    expect(String(refused)).toMatch(/redirect.* another scheme/);
  });

  it("a redirect to a scheme that is not HTTP is refused as another scheme", async () => {
    const dp = await serve(redirecting({ "/dp": "file:///etc/passwd" }));
    await expect(fetchCrl([`http://127.0.0.1:${dp.port}/dp`])).rejects.toThrow(/redirect.* another scheme/);
  });

  it("more than three redirects are refused, even on the distribution point's own host", async () => {
    const dp = await serve(redirecting({ "/1": "/2", "/2": "/3", "/3": "/4", "/4": "/crl" }));
    await expect(fetchCrl([`http://127.0.0.1:${dp.port}/1`])).rejects.toThrow(/more than 3 redirects/);
    expect(dp.paths).toEqual(["/1", "/2", "/3", "/4"]);
  });
});

describe("the redirect rule, as a pure function", () => {
  const refusal = (start: string, to: string, hops = 1) => redirectRefusal(new URL(start), new URL(to), hops);

  it("the same scheme and host (name and port) is followed, up to three times", () => {
    expect(refusal("http://crl.example.com/a.crl", "http://crl.example.com/b.crl")).toBeUndefined();
    expect(refusal("http://crl.example.com:80/a.crl", "http://CRL.example.com/b.crl", 3)).toBeUndefined();
    expect(refusal("http://crl.example.com/a.crl", "http://crl.example.com/b.crl", 4)).toBe("more than 3 redirects");
  });

  it("another scheme is refused: https to http, http to https, and anything else", () => {
    expect(refusal("https://crl.example.com/a.crl", "http://crl.example.com/a.crl")).toMatch(
      /another scheme \(http\) than https/,
    );
    expect(refusal("http://crl.example.com/a.crl", "https://crl.example.com/a.crl")).toMatch(
      /another scheme \(https\) than http/,
    );
    expect(refusal("http://crl.example.com/a.crl", "ftp://crl.example.com/a.crl")).toMatch(/another scheme \(ftp\)/);
    expect(refusal("http://crl.example.com/a.crl", "file:///etc/passwd")).toMatch(/another scheme \(file\)/);
  });

  it("another host or port is refused, though the name may be this machine too", () => {
    expect(refusal("http://crl.example.com/a.crl", "http://cdn.example.net/a.crl")).toMatch(
      /another host \(cdn\.example\.net\) than crl\.example\.com/,
    );
    expect(refusal("http://crl.example.com/a.crl", "http://crl.example.com:8080/a.crl")).toMatch(/another host/);
    expect(refusal("http://127.0.0.1:8080/a.crl", "http://localhost:8080/a.crl")).toMatch(
      /another host \(localhost:8080\)/,
    );
  });

  it("from a public distribution point, a loopback, link-local or private address is refused as such", () => {
    const start = "http://crl.example.com/a.crl";
    for (const to of [
      "127.0.0.1",
      "127.1.2.3",
      "localhost",
      "db.localhost",
      "[::1]",
      "0.0.0.0",
      "[::ffff:127.0.0.1]",
      "0x7f.1",
    ]) {
      expect(refusal(start, `http://${to}/x`), to).toMatch(/a loopback address/);
    }
    for (const to of ["169.254.169.254", "[fe80::1]"])
      expect(refusal(start, `http://${to}/x`), to).toMatch(/a link-local address/);
    for (const to of [
      "10.0.0.5",
      "172.16.0.1",
      "172.31.255.255",
      "192.168.1.1",
      "100.64.0.1",
      "[fd00::1]",
      "[::ffff:10.0.0.1]",
    ]) {
      expect(refusal(start, `http://${to}/x`), to).toMatch(/a private address/);
    }
  });

  it("a distribution point that is itself private or loopback keeps its own address, and no other scope", () => {
    expect(refusal("http://10.1.2.3/a.crl", "http://10.1.2.3/b.crl")).toBeUndefined();
    expect(refusal("http://127.0.0.1:9/a.crl", "http://127.0.0.1:9/b.crl")).toBeUndefined();
    expect(refusal("http://10.1.2.3/a.crl", "http://127.0.0.1/b.crl")).toMatch(/a loopback address/);
    expect(refusal("http://10.1.2.3/a.crl", "http://169.254.169.254/")).toMatch(/a link-local address/);
    expect(refusal("http://10.1.2.3/a.crl", "http://10.9.9.9/b.crl")).toMatch(/another host/);
  });

  it("scopes are told by the address's form alone; other names are public (the host rule covers them)", () => {
    expect(addressScope("8.8.8.8")).toBe("public");
    expect(addressScope("crl.example.com")).toBe("public");
    expect(addressScope("172.32.0.1")).toBe("public");
    expect(addressScope("LOCALHOST.")).toBe("loopback");
    expect(addressScope("[2001:db8::1]")).toBe("public");
  });
});

/** A real CRL of `ca`, DER. */
async function crlOf(ca: TestCa): Promise<Buffer> {
  const crl = await x509.X509CrlGenerator.create(
    {
      issuer: ca.cert.subjectName,
      thisUpdate: new Date(Date.now() - 60_000),
      nextUpdate: new Date(Date.now() + 3_600_000),
      entries: [],
      signingKey: ca.keys.privateKey,
      signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    },
    softwareCrypto(),
  );
  return Buffer.from(crl.rawData);
}

/** An HTTPS server on 127.0.0.1 whose certificate (from `ca`) names 127.0.0.1 and 0.0.0.0 (a name no proxy rule exempts). */
async function serveTls(
  ca: TestCa,
  handle: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ port: number; paths: string[] }> {
  const leaf = await issueLeaf(
    ca,
    "localhost",
    [
      { type: "ip", value: "127.0.0.1" },
      { type: "ip", value: "0.0.0.0" },
    ],
    "server",
  );
  const paths: string[] = [];
  const server = createHttpsServer({ key: leaf.key, cert: leaf.cert }, (req, res) => {
    paths.push(req.url ?? "");
    handle(req, res);
  });
  opened.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as AddressInfo).port, paths };
}

describe("CRLs from distribution points go through the HttpClient, with today's limits", () => {
  it("DER is returned as it is, PEM is decoded to DER", async () => {
    const ca = await makeCa("DP CA");
    const der = await crlOf(ca);
    const pem = `-----BEGIN X509 CRL-----\n${der.toString("base64")}\n-----END X509 CRL-----\n`;
    const dp = await serve((req, res) => res.end(req.url === "/pem" ? pem : der));
    expect(Buffer.from(await fetchCrl([`http://127.0.0.1:${dp.port}/der`]))).toEqual(der);
    expect(Buffer.from(await fetchCrl([`http://127.0.0.1:${dp.port}/pem`]))).toEqual(der);
  });

  it("an error status is the distribution point's, with its status; the next distribution point is asked, three at most", async () => {
    const points = await Promise.all([0, 1, 2, 3].map(() => serve((_req, res) => res.writeHead(404).end())));
    const urls = points.map((p) => `http://127.0.0.1:${p.port}/crl`);
    await expect(fetchCrl(urls)).rejects.toMatchObject({
      step: "revocation",
      reason: "platform-error",
      facts: { status: 404, host: `127.0.0.1:${points[2]!.port}` },
      message: `revocation failed: ${urls[2]} answered HTTP 404`,
    });
    expect(points.map((p) => p.paths.length)).toEqual([1, 1, 1, 0]);
    const good = await serve(redirecting({}));
    expect(Buffer.from(await fetchCrl([urls[0]!, `http://127.0.0.1:${good.port}/crl`]))).toEqual(CRL);
  });

  it("all of them within the time given together: a distribution point that never answers ends the fetch at it", async () => {
    const hanging = await serve(() => undefined);
    const next = await serve(redirecting({}));
    const fetched = fetchCrlFromDistributionPoints(
      [`http://127.0.0.1:${hanging.port}/crl`, `http://127.0.0.1:${next.port}/crl`],
      client(),
      300,
    );
    await expect(fetched).rejects.toMatchObject({
      reason: "deadline",
      message: expect.stringMatching(
        /revocation failed: the CRL distribution point at http:\/\/127\.0\.0\.1:\d+ could not be reached: the deadline passed/,
      ),
    });
    expect(next.paths).toEqual([]);
  });

  it("the body is bounded as it streams (16 MiB), whatever the length header says", async () => {
    const dp = await serve((_req, res) => {
      res.writeHead(200, { "content-type": "application/pkix-crl" }); // chunked: no length announced
      const chunk = Buffer.alloc(1024 * 1024);
      let sent = 0;
      const more = () => {
        while (sent < 17 && res.write(chunk)) sent++;
        if (sent < 17)
          res.once("drain", () => {
            sent++;
            more();
          });
        else res.end();
      };
      res.on("error", () => undefined);
      more();
    });
    await expect(fetchCrl([`http://127.0.0.1:${dp.port}/crl`])).rejects.toMatchObject({
      reason: "reply-malformed",
      message: expect.stringMatching(/is larger than 16777216 bytes/),
    });
  });

  it("the client's trust anchors hold for an https distribution point (--platform-ca), and a temporary failure is retried", async () => {
    const gateway = await makeCa("DP Gateway CA");
    let asked = 0;
    const dp = await serveTls(gateway, (_req, res) => (asked++ === 0 ? res.writeHead(503).end() : res.end(CRL)));
    const url = `https://127.0.0.1:${dp.port}/crl`;
    await expect(fetchCrlFromDistributionPoints([url], client())).rejects.toMatchObject({ reason: "tls-untrusted" });
    const retries: RetryInfo[] = [];
    const trusted = client({
      tls: { ca: [gateway.pem] },
      attempts: 2,
      backoffBaseMs: 1,
      onRetry: (info) => retries.push(info),
    });
    expect(Buffer.from(await fetchCrlFromDistributionPoints([url], trusted))).toEqual(CRL);
    expect(retries).toEqual([expect.objectContaining({ step: "revocation", attempt: 1, reason: "HTTP 503" })]);
  });
});

describe("retries: the policy's attempts, backoff and deadline", () => {
  it("a temporary status is tried again, each retry told before its wait", async () => {
    let asked = 0;
    const server = await serve((_req, res) =>
      ++asked <= 2
        ? res.writeHead(503, { "content-type": "application/json" }).end('{"message":"busy"}')
        : res.end("{}"),
    );
    const retries: RetryInfo[] = [];
    const http = client({ attempts: 3, backoffBaseMs: 1, backoffCapMs: 1, onRetry: (info) => retries.push(info) });
    const reply = await http.json("fetch-ca", new URL(`http://127.0.0.1:${server.port}/ca`), { method: "GET" });
    expect(reply.status).toBe(200);
    expect(retries.map(({ attempt, attempts, reason }) => ({ attempt, attempts, reason }))).toEqual([
      { attempt: 1, attempts: 3, reason: "HTTP 503" },
      { attempt: 2, attempts: 3, reason: "HTTP 503" },
    ]);
  });

  it("when the attempts run out: overloaded, with what the server said and how many attempts", async () => {
    const server = await serve((_req, res) =>
      res.writeHead(503, { "content-type": "application/json" }).end('{"message":"busy"}'),
    );
    const http = client({ attempts: 2, backoffBaseMs: 1 });
    await expect(
      http.json("fetch-ca", new URL(`http://127.0.0.1:${server.port}/ca`), { method: "GET" }),
    ).rejects.toMatchObject({
      reason: "overloaded",
      message: `fetch-ca failed: the platform at http://127.0.0.1:${server.port} answered HTTP 503: busy (2 attempts)`,
      facts: { status: 503, host: `127.0.0.1:${server.port}` },
    });
  });

  it("a request that is not idempotent is not repeated once it may have been sent; one refused at connect is", async () => {
    const reset = await serve((req) => req.socket.destroy());
    const http = client({ attempts: 3, backoffBaseMs: 1 });
    const url = new URL(`http://127.0.0.1:${reset.port}/sign`);
    await expect(http.json("submit-csr", url, { method: "POST", body: {}, once: true })).rejects.toMatchObject({
      reason: "maybe-sent",
      facts: { maybeSent: true },
    });
    expect(reset.paths).toEqual(["/sign"]);
    const refused = new URL(`http://127.0.0.1:${await closedPort()}/sign`);
    await expect(http.json("submit-csr", refused, { method: "POST", body: {}, once: true })).rejects.toMatchObject({
      reason: "unreachable",
      message: expect.stringMatching(/\(3 attempts\)$/),
    });
  });

  it("the backoff is exponential with full jitter under its cap; Retry-After wins; no wait ends past the deadline", () => {
    const policy = { attempts: 9, deadline: 10_000, backoffBaseMs: 100, backoffCapMs: 1_000 };
    const top = () => 0.999;
    expect([2, 3, 4, 5, 6].map((n) => backoffWait(policy, n, undefined, 0, top))).toEqual([99, 199, 399, 799, 999]);
    expect(backoffWait(policy, 2, undefined, 0, () => 0)).toBe(0);
    expect(backoffWait(policy, 2, 5_000, 0, top)).toBe(5_000);
    expect(backoffWait(policy, 2, 10_000, 0, top)).toBeUndefined();
    expect(backoffWait(policy, 2, undefined, 9_950, top)).toBeUndefined();
    expect(parseRetryAfter("120")).toBe(120_000);
    expect(parseRetryAfter(new Date(1_000).toUTCString(), 5_000)).toBe(0);
    expect(parseRetryAfter("soon")).toBeUndefined();
  });
});

describe("the deadline and the timeouts", () => {
  it("a deadline already past sends nothing", async () => {
    const server = await serve((_req, res) => res.end("{}"));
    const http = client({ deadline: Date.now() - 1, attempts: 3 });
    await expect(
      http.json("submit-csr", new URL(`http://127.0.0.1:${server.port}/sign`), {
        method: "POST",
        body: {},
        once: true,
      }),
    ).rejects.toMatchObject({
      reason: "deadline",
      message: expect.not.stringMatching(/may have reached/),
    });
    expect(server.paths).toEqual([]);
  });

  it("a request in flight is cut at the deadline, the client's or the request's own earlier one", async () => {
    const server = await serve(() => undefined);
    const url = new URL(`http://127.0.0.1:${server.port}/ca`);
    await expect(
      client({ deadline: Date.now() + 200, attempts: 3 }).json("fetch-ca", url, { method: "GET" }),
    ).rejects.toMatchObject({ reason: "deadline", message: expect.stringMatching(/the deadline passed/) });
    await expect(client().json("fetch-ca", url, { method: "GET", deadline: Date.now() + 200 })).rejects.toMatchObject({
      reason: "deadline",
    });
  });

  it("no headers within the headers timeout, or a body that falls silent: timed out, retried, then unreachable", async () => {
    const timeouts = { connect: 1_000, headers: 200, body: 200 };
    const silent = await serve(() => undefined);
    const stalled = await serve((_req, res) => res.writeHead(200).write("{"));
    for (const server of [silent, stalled]) {
      const http = client({ timeouts, attempts: 2, backoffBaseMs: 1 });
      await expect(
        http.json("fetch-ca", new URL(`http://127.0.0.1:${server.port}/ca`), { method: "GET" }),
      ).rejects.toMatchObject({
        reason: "unreachable",
        message: expect.stringMatching(
          /could not be reached: the request timed out \(no reply within 0\.2 s\) \(2 attempts\)/,
        ),
      });
      expect(server.paths).toEqual(["/ca", "/ca"]);
    }
  });
});

describe("bounded bodies: one reader for every reply", () => {
  it("reads no more than the bound, drops the rest, and says so by returning nothing", async () => {
    let pulled = 0;
    let destroyed = false;
    const body = (n: number) => ({
      async *[Symbol.asyncIterator]() {
        for (let i = 0; i < n; i++) {
          pulled++;
          yield Buffer.alloc(4, i);
        }
      },
      destroy: () => {
        destroyed = true;
      },
    });
    expect(await readBounded(body(3), 12)).toEqual(
      Buffer.concat([Buffer.alloc(4, 0), Buffer.alloc(4, 1), Buffer.alloc(4, 2)]),
    );
    pulled = 0;
    expect(await readBounded(body(100), 10)).toBeUndefined();
    expect([pulled, destroyed]).toEqual([3, true]);
  });

  it("a reply past 1 MiB is reply-malformed, from the host, naming no platform; exactly 1 MiB is read", async () => {
    const server = await serve((req, res) =>
      res.end(Buffer.alloc(req.url === "/big" ? 1024 * 1024 + 1 : 1024 * 1024, 0x20)),
    );
    const http = client();
    const big = http.json("fetch-ca", new URL(`http://127.0.0.1:${server.port}/big`), { method: "GET" });
    await expect(big).rejects.toMatchObject({
      step: "fetch-ca",
      reason: "reply-malformed",
      message: `fetch-ca failed: the reply from 127.0.0.1:${server.port} is larger than 1048576 bytes`,
      facts: { status: 200, host: `127.0.0.1:${server.port}` },
    });
    await expect(big).rejects.toMatchObject({ message: expect.not.stringMatching(/dojot|platform/) });
    expect(
      (await http.json("fetch-ca", new URL(`http://127.0.0.1:${server.port}/full`), { method: "GET" })).text,
    ).toHaveLength(1024 * 1024);
  });
});

/** Runs `body` with the proxy variables set as given (and no others), restoring them after. */
async function withProxyEnv<T>(env: Record<string, string>, body: () => Promise<T>): Promise<T> {
  const names = ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"];
  const saved = Object.fromEntries(names.map((n) => [n, process.env[n]]));
  for (const n of names) delete process.env[n];
  Object.assign(process.env, env);
  try {
    return await body();
  } finally {
    for (const n of names)
      if (saved[n] === undefined) delete process.env[n];
      else process.env[n] = saved[n];
  }
}

describe("HTTP(S)_PROXY and NO_PROXY", () => {
  it("which URLs go through a proxy: the variable for the scheme (https falls back to HTTP_PROXY), never this machine", () => {
    const https = new URL("https://gw.example.com/");
    const http = new URL("http://gw.example.com/");
    expect([
      proxyNamedFor(https, { HTTPS_PROXY: "http://p" }),
      proxyNamedFor(http, { HTTPS_PROXY: "http://p" }),
    ]).toEqual([true, false]);
    expect([proxyNamedFor(https, { HTTP_PROXY: "http://p" }), proxyNamedFor(http, { http_proxy: "http://p" })]).toEqual(
      [true, true],
    );
    expect(proxyNamedFor(https, {})).toBe(false);
    for (const host of ["127.0.0.1", "localhost", "[::1]"])
      expect(proxyNamedFor(new URL(`https://${host}/`), { HTTPS_PROXY: "http://p", HTTP_PROXY: "http://p" })).toBe(
        false,
      );
  });

  it("https goes through a CONNECT tunnel with the client's trust anchors, and around it for a NO_PROXY host", async () => {
    const gateway = await makeCa("Proxy Gateway CA");
    const server = await serveTls(gateway, (_req, res) => res.end('{"ok":true}'));
    const proxy = await startForwardProxy();
    try {
      const url = new URL(`https://0.0.0.0:${server.port}/ca`);
      const via = await withProxyEnv({ HTTPS_PROXY: proxy.url }, () =>
        client({ tls: { ca: [gateway.pem] } }).json("fetch-ca", url, { method: "GET" }),
      );
      expect([via.status, via.text, proxy.connects]).toEqual([200, '{"ok":true}', [`0.0.0.0:${server.port}`]]);
      const around = await withProxyEnv({ HTTPS_PROXY: proxy.url, NO_PROXY: "0.0.0.0" }, () =>
        client({ tls: { ca: [gateway.pem] } }).json("fetch-ca", url, { method: "GET" }),
      );
      expect([around.status, proxy.connects.length]).toEqual([200, 1]);
      const untrusted = withProxyEnv({ HTTPS_PROXY: proxy.url }, () =>
        client().json("fetch-ca", url, { method: "GET" }),
      );
      await expect(untrusted).rejects.toMatchObject({ reason: "tls-untrusted" });
    } finally {
      await proxy.close();
    }
  });

  it("plain http goes through HTTP_PROXY, with the same bound on the reply and the same timeouts", async () => {
    const server = await serve((req, res) =>
      req.url === "/hang" ? undefined : res.end(req.url === "/big" ? Buffer.alloc(64) : "{}"),
    );
    const proxy = await startForwardProxy();
    try {
      await withProxyEnv({ HTTP_PROXY: proxy.url }, async () => {
        const http = client({ timeouts: { connect: 1_000, headers: 200, body: 200 } });
        const at = (path: string) => new URL(`http://0.0.0.0:${server.port}${path}`);
        expect((await http.json("fetch-ca", at("/ok"), { method: "GET" })).text).toBe("{}");
        await expect(http.request("fetch-ca", at("/big"), { method: "GET", maxBytes: 63 })).rejects.toMatchObject({
          reason: "reply-malformed",
          message: `fetch-ca failed: the reply from 0.0.0.0:${server.port} is larger than 63 bytes`,
        });
        await expect(http.json("fetch-ca", at("/hang"), { method: "GET" })).rejects.toMatchObject({
          reason: "unreachable",
          message: expect.stringMatching(/no reply within 0\.2 s/),
        });
      });
      // undici tunnels plain http through CONNECT too: the proxy sees the tunnels, the server the requests.
      expect(new Set(proxy.connects)).toEqual(new Set([`0.0.0.0:${server.port}`]));
      expect(server.paths).toEqual(["/ok", "/big", "/hang"]);
    } finally {
      await proxy.close();
    }
  });

  it("a distribution point is fetched through the proxy too", async () => {
    const gateway = await makeCa("Proxied DP CA");
    const dp = await serveTls(gateway, (_req, res) => res.end(CRL));
    const proxy = await startForwardProxy();
    try {
      const crl = await withProxyEnv({ HTTPS_PROXY: proxy.url }, () =>
        fetchCrlFromDistributionPoints([`https://0.0.0.0:${dp.port}/crl`], client({ tls: { ca: [gateway.pem] } })),
      );
      expect([Buffer.from(crl), proxy.connects]).toEqual([CRL, [`0.0.0.0:${dp.port}`]]);
    } finally {
      await proxy.close();
    }
  });
});

describe("check --revocation distribution-points, through the run's HTTP client", () => {
  it("an https distribution point is trusted with --platform-ca; a redirect to another host is refused and said", async () => {
    const ca = await makeCa("DP Check CA");
    const gateway = await makeCa("DP Check Gateway CA");
    const crl = await crlOf(ca);
    const dp = await serveTls(gateway, (_req, res) => res.end(crl));
    const moved = await serve((req, res) => redirecting({ "/dp": `http://localhost:${moved.port}/crl` })(req, res));
    const dir = await tempDir("cr-dp-transport-");
    const out = join(dir, "certs");
    await mkdir(out, { mode: 0o700 });
    await writeFile(join(dir, "gateway.pem"), gateway.pem);
    const enrolled = async (id: string, url: string) => {
      const leaf = await issueLeaf(ca, id, [], "client", [new x509.CRLDistributionPointsExtension([url])]);
      await writeFile(join(out, `${id}.key`), leaf.key, { mode: 0o600 });
      await writeFile(join(out, `${id}.crt`), leaf.cert);
    };
    await writeFile(join(out, "IOTmidCA.crt"), ca.pem);
    await enrolled("dp-tls", `https://127.0.0.1:${dp.port}/ca.crl`);
    await enrolled("dp-moved", `http://127.0.0.1:${moved.port}/dp`);
    const check = (id: string, ...extra: string[]) =>
      runCli([
        "check",
        "--device-id",
        id,
        "--out",
        out,
        "--revocation",
        "distribution-points",
        "--crl-refresh",
        "0s",
        ...extra,
      ]);
    // Before any CRL is kept (the two share the CA, so its cache): each failure is said as it is.
    const refused = await check("dp-moved");
    expect([refused.code, refused.stderr]).toEqual([
      1,
      expect.stringMatching(
        /revocation could not be checked: .*redirects to http:\/\/localhost:\d+\/crl, which is not followed: it goes to another host/,
      ),
    ]);
    expect(moved.paths).toEqual(["/dp"]);
    const untrusted = await check("dp-tls");
    expect([untrusted.code, untrusted.stderr]).toEqual([
      1,
      expect.stringMatching(
        /revocation could not be checked: .*the TLS certificate of 127\.0\.0\.1:\d+ is not trusted/,
      ),
    ]);
    const trusted = await check("dp-tls", "--platform-ca", join(dir, "gateway.pem"));
    expect([trusted.code, trusted.stderr]).toEqual([
      1,
      expect.stringMatching(/is not revoked, says the CRL just fetched/),
    ]);
  });
});
