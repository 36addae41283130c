import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import type { TLSSocket } from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_TIMEOUTS, HttpClient } from "../../src/transport/http.js";
import { type Mitm, type MitmOptions, startMitm } from "../helpers/mitm.js";
import { issueLeaf, makeCa, type TestCa } from "../helpers/pki.js";
import { type ForwardProxy, startForwardProxy } from "../helpers/proxy.js";

/**
 * A client certificate goes only to a server that passed the checks: the transport checks the
 * server's chain and name inside the handshake, before its certificate and the key's signature
 * are written, on a direct connection and through a proxy's tunnel alike (Node itself checks only
 * after the handshake, when a TLS 1.2 server already has both). What the server saw is recorded
 * at the server.
 */

let gateway: TestCa;
let device: { cert: string; key: string };
let proxy: ForwardProxy;
const clients: HttpClient[] = [];
const closing: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  gateway = await makeCa("Server-First Gateway CA");
  device = await issueLeaf(gateway, "device-1", [], "client");
  proxy = await startForwardProxy();
});
afterAll(async () => proxy?.close());
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(closing.splice(0).map((close) => close()));
});

/** A client that trusts the gateway's CA and presents the device's certificate. */
function client(): HttpClient {
  const http = new HttpClient({
    timeouts: DEFAULT_TIMEOUTS,
    attempts: 1,
    deadline: Date.now() + 30_000,
    tls: { ca: [gateway.pem], system: false, ...device },
  });
  clients.push(http);
  return http;
}

/** A MITM speaking up to TLS 1.2 (where the client's certificate goes in clear) with `tls`. */
async function mitm(tls: MitmOptions["tls"]): Promise<Mitm> {
  const started = await startMitm({ tls, maxVersion: "TLSv1.2" });
  closing.push(() => started.close());
  return started;
}

/** 0.0.0.0 reaches this machine without being a loopback name: requests to it go through the proxy. */
const viaProxy = (url: string) => url.replace("127.0.0.1", "0.0.0.0");

/** Runs `body` with HTTPS_PROXY set to the test's proxy (and NO_PROXY as given), restoring the variables after. */
async function withProxy<T>(noProxy: string | undefined, body: () => Promise<T>): Promise<T> {
  const saved = { HTTPS_PROXY: process.env.HTTPS_PROXY, NO_PROXY: process.env.NO_PROXY };
  process.env.HTTPS_PROXY = proxy.url;
  if (noProxy === undefined) delete process.env.NO_PROXY;
  else process.env.NO_PROXY = noProxy;
  try {
    return await body();
  } finally {
    for (const [name, value] of Object.entries(saved))
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
  }
}

/** A server of the gateway's CA for 127.0.0.1 and 0.0.0.0 that requires a client certificate and records whose it saw. */
async function realServer(): Promise<{ url: string; seen: string[] }> {
  const seen: string[] = [];
  const tls = await issueLeaf(
    gateway,
    "gateway",
    [
      { type: "ip", value: "127.0.0.1" },
      { type: "ip", value: "0.0.0.0" },
    ],
    "server",
  );
  const server: Server = createServer(
    { ...tls, ca: gateway.pem, requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      seen.push(String((req.socket as TLSSocket).getPeerCertificate().subject?.CN));
      res.end("{}");
    },
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  closing.push(
    () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(resolve);
      }),
  );
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/x`, seen };
}

describe("a client certificate goes only to a server that passed the checks", () => {
  it("a server of an unknown CA gets neither the certificate nor its signature (tls-untrusted)", async () => {
    const m = await mitm(
      await issueLeaf(await makeCa("Unknown CA"), "127.0.0.1", [{ type: "ip", value: "127.0.0.1" }], "server"),
    );
    await expect(client().json("fetch-ca", new URL(m.url), { method: "GET" })).rejects.toMatchObject({
      reason: "tls-untrusted",
    });
    expect([m.clientCertificates, m.requests, m.handshakes]).toEqual([[], [], 0]);
  });

  it("a server of the trusted CA under another name gets neither (the name is checked in the handshake too)", async () => {
    const m = await mitm(
      await issueLeaf(gateway, "elsewhere", [{ type: "dns", value: "elsewhere.example" }], "server"),
    );
    await expect(client().json("fetch-ca", new URL(m.url), { method: "GET" })).rejects.toMatchObject({
      reason: "tls-untrusted",
      message: expect.stringContaining("ERR_TLS_CERT_ALTNAME_INVALID"),
    });
    expect([m.clientCertificates, m.requests, m.handshakes]).toEqual([[], [], 0]);
  });

  it("through a proxy's tunnel, the same: the server behind it gets nothing", async () => {
    const m = await mitm(
      await issueLeaf(await makeCa("Unknown CA"), "0.0.0.0", [{ type: "ip", value: "0.0.0.0" }], "server"),
    );
    const before = proxy.connects.length;
    await withProxy(undefined, async () => {
      await expect(client().json("fetch-ca", new URL(viaProxy(m.url)), { method: "GET" })).rejects.toMatchObject({
        reason: "tls-untrusted",
      });
    });
    expect(proxy.connects.length).toBeGreaterThan(before);
    expect([m.clientCertificates, m.requests, m.handshakes]).toEqual([[], [], 0]);
  });

  it("the server that passes gets the certificate: directly, through the tunnel, and around it for a NO_PROXY host", async () => {
    const server = await realServer();
    expect((await client().json("fetch-ca", new URL(server.url), { method: "GET" })).status).toBe(200);
    const before = proxy.connects.length;
    await withProxy(undefined, async () => {
      expect((await client().json("fetch-ca", new URL(viaProxy(server.url)), { method: "GET" })).status).toBe(200);
    });
    expect(proxy.connects.length).toBe(before + 1);
    await withProxy("0.0.0.0", async () => {
      expect((await client().json("fetch-ca", new URL(viaProxy(server.url)), { method: "GET" })).status).toBe(200);
    });
    expect(proxy.connects.length).toBe(before + 1);
    expect(server.seen).toEqual(["device-1", "device-1", "device-1"]);
  });
});
