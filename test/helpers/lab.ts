import { mkdtemp, rm } from "node:fs/promises";
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer, type ServerOptions as HttpsOptions } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CertProfile } from "../../lab/src/ca.js";
import {
  type EstLabOptions,
  type LabApi,
  type LabOptions,
  type RunningLab,
  setDevice,
  startLab,
} from "../../lab/src/server.js";
import { softwareCrypto } from "../../src/keys/provider.js";
import { SECRETS } from "./cli.js";
import { type CaSet, seedLabCas } from "./lab-cas.js";

/** A throwaway lab platform on 127.0.0.1 with its own CA, made for one test file. */
export interface TestLab extends RunningLab {
  dir: string;
  password: string;
  addDevice(id: string): Promise<void>;
  resetDevice(id: string): Promise<void>;
  stop(): Promise<void>;
}

/** A fresh temporary directory; removed by the returned function. */
export async function tempDir(prefix = "cr-test-"): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** A new lab directory holding the run's lab CAs of `set` (see lab-cas.ts). */
export async function labDir(prefix = "cr-lab-", set: CaSet = "main"): Promise<string> {
  const dir = await tempDir(prefix);
  await seedLabCas(dir, set);
  return dir;
}

/** Starts a lab in a temporary directory, with the run's CAs of `caSet` (default `main`). */
export async function startTestLab(
  opts: {
    caSet?: CaSet;
    certProfile?: CertProfile;
    autoRegister?: boolean;
    tokenLifetime?: number;
    claimsToVerify?: LabOptions["claimsToVerify"];
    extensionOverride?: boolean;
    api?: LabApi;
    est?: EstLabOptions;
    scep?: LabOptions["scep"];
    cmp?: LabOptions["cmp"];
    faults?: LabOptions["faults"];
    forceCrlRenew?: boolean;
    ejbcaRestVersion?: LabOptions["ejbcaRestVersion"];
  } = {},
): Promise<TestLab> {
  const dir = await labDir("cr-lab-", opts.caSet);
  const password = `lab-${Math.random().toString(36).slice(2)}-secret`;
  SECRETS.add(password);
  const lab = await startLab({
    dir,
    host: "127.0.0.1",
    port: 0,
    crypto: softwareCrypto(),
    certProfile: opts.certProfile ?? "cfree",
    autoRegister: opts.autoRegister ?? false,
    adminPassword: password,
    tokenLifetime: opts.tokenLifetime ?? 420,
    claimsToVerify: opts.claimsToVerify,
    extensionOverride: opts.extensionOverride,
    api: opts.api,
    est: opts.est,
    scep: opts.scep,
    cmp: opts.cmp,
    faults: opts.faults,
    forceCrlRenew: opts.forceCrlRenew,
    ejbcaRestVersion: opts.ejbcaRestVersion,
  });
  return {
    ...lab,
    dir,
    password,
    addDevice: (id) => setDevice(dir, id, "add"),
    resetDevice: (id) => setDevice(dir, id, "reset"),
    stop: async () => {
      await lab.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A reply a tampering proxy sends instead of the platform's. */
export type Tamper = (
  path: string,
  upstream: { status: number; body: string },
  request: { method: string; body: string },
) => { status: number; body: string; contentType?: string } | undefined;

/**
 * An HTTP server on 127.0.0.1 that forwards to `target` and lets a test rewrite replies: a
 * misbehaving platform (HTML pages, wrong fields, certificates from elsewhere) over real HTTP.
 */
export async function startProxy(
  target: string,
  tamper: Tamper,
  tls?: HttpsOptions,
): Promise<{ url: string; port: number; close(): Promise<void> }> {
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const up = httpRequest(new URL(req.url ?? "/", target), { method: req.method, headers: req.headers }, (upRes) => {
        const body: Buffer[] = [];
        upRes.on("data", (c: Buffer) => body.push(c));
        upRes.on("end", () => {
          const original = { status: upRes.statusCode ?? 500, body: Buffer.concat(body).toString() };
          const out = tamper(req.url ?? "/", original, {
            method: req.method ?? "GET",
            body: Buffer.concat(chunks).toString(),
          }) ?? { ...original, contentType: String(upRes.headers["content-type"] ?? "") };
          res.writeHead(out.status, { "content-type": out.contentType ?? "application/json" }).end(out.body);
        });
      });
      up.end(Buffer.concat(chunks));
    });
  };
  const server = tls ? createHttpsServer(tls, handler) : createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `${tls ? "https" : "http"}://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A port on 127.0.0.1 where nothing listens (bound, then closed). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** A lab with a JWT of its admin already in hand, for calling its routes directly. */
export type LabWithJwt = RunningLab & { dir: string; jwt: string };

/** Starts a lab (x509-identity-mgmt unless `more.api` says otherwise) whose admin has logged in with `password`. */
export async function startLabWithJwt(password: string, more: Partial<LabOptions> = {}): Promise<LabWithJwt> {
  const dir = await labDir("cr-x509-");
  const running = await startLab({
    dir,
    host: "127.0.0.1",
    port: 0,
    crypto: softwareCrypto(),
    certProfile: "cfree",
    autoRegister: false,
    adminPassword: password,
    tokenLifetime: 420,
    api: "x509",
    x509Rules: "v0.7",
    ...more,
  });
  const res = await fetch(`${running.url}/auth`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: "admin", passwd: password }),
  });
  return { ...running, dir, jwt: ((await res.json()) as { jwt: string }).jwt };
}

/** A call to one of the lab's routes with its JWT: the status and the JSON body (if any). */
export async function callLab(
  platform: LabWithJwt,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${platform.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${platform.jwt}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

/** A lab (x509-identity-mgmt, any key type, devices registered as they come) behind a proxy that keeps every CSR sent to it. */
export async function startCsrRecordingLab(): Promise<{
  lab: TestLab;
  url: string;
  csrs: string[];
  stop(): Promise<void>;
}> {
  const lab = await startTestLab({ certProfile: "open", autoRegister: true, api: "x509" });
  const csrs: string[] = [];
  const proxy = await startProxy(lab.url, (path, _up, request) => {
    if (request.method === "POST" && path.startsWith("/x509/v1/certificates")) {
      const csr = (JSON.parse(request.body) as { csr?: string }).csr;
      if (csr) csrs.push(csr);
    }
    return undefined;
  });
  const stop = async () => {
    await proxy.close();
    await lab.stop();
  };
  return { lab, url: proxy.url, csrs, stop };
}
