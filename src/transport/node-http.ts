/**
 * HttpClient's direct path, on Node's own `http`/`https`, whose HTTP parser is native.
 * undici parses HTTP in WebAssembly: V8 compiles that module on every run, and a process cannot
 * exit until the optimising compile of its parser finishes (about 140 ms and 35 MB per run on
 * Node 20, 80 ms on Node 24; see docs/performance.md). undici stays for the path
 * through an HTTP(S)_PROXY (proxy.ts), which Node's clients do not take from the environment on Node 20.
 */
import type { ClientRequest, Agent as HttpAgent } from "node:http";
import type { LookupFunction, Socket } from "node:net";
import { TLSSocket } from "node:tls";
import { bareHost } from "./loopback.js";
import { type RawReply, type Sender, type SendRequest, TIMEOUT_CODES } from "./sender.js";
import { type ClientTlsOptions, guardClientCertificate } from "./server-first.js";

// Not imported: on Node 22+ an ESM import of node:http builds its module namespace, whose
// WebSocket export loads Node's own undici (and its WebAssembly parser) on every run.
const http = (): typeof import("node:http") => process.getBuiltinModule("node:http");
const https = (): typeof import("node:https") => process.getBuiltinModule("node:https");

/** How long a kept-alive connection may stay idle (undici's default). */
const IDLE_MS = 4_000;

/**
 * A TLS failure met while writing the request comes as "write EPROTO" with OpenSSL's text; the
 * same failure met by the handshake carries Node's code for it (e.g. ERR_SSL_WRONG_VERSION_NUMBER,
 * made from OpenSSL's reason as Node makes it): the code is given here too, so both read alike.
 */
function withTlsCode(err: NodeJS.ErrnoException): NodeJS.ErrnoException {
  const reason =
    err.code === "EPROTO" ? /:error:[0-9A-F]+:SSL routines:[^:]*:([^:]+):/.exec(err.message)?.[1] : undefined;
  if (reason) err.code = `ERR_SSL_${reason.toUpperCase().replace(/ /g, "_")}`;
  return err;
}

/** Kept-alive connections, idle for {@link IDLE_MS} at most. */
const KEPT = { keepAlive: true, timeout: IDLE_MS };

/** Node's https agent with `tls`, whose connections check the server before they present a client certificate. */
function httpsAgent(tls: ClientTlsOptions): HttpAgent {
  const agent = new (https().Agent)({ ...KEPT, ...tls });
  const open = agent.createConnection.bind(agent);
  agent.createConnection = (options, callback) => {
    const socket = open(options, callback);
    if (!(socket instanceof TLSSocket)) return socket;
    const { servername, host, checkServerIdentity } = options;
    return guardClientCertificate(socket, { ...tls, servername, host: host ?? undefined, checkServerIdentity });
  };
  return agent;
}

/** Keep-alive connections to the server over http and over https (with the given TLS settings). */
export class NodeHttpClient implements Sender {
  private agents: { "http:"?: HttpAgent; "https:"?: HttpAgent } = {};

  constructor(
    private readonly tls: () => ClientTlsOptions,
    private readonly lookup?: LookupFunction,
  ) {}

  /** Sends one request; resolves when the reply's headers have come. */
  request(req: SendRequest): Promise<RawReply> {
    const secure = req.url.protocol === "https:";
    const lib = secure ? https() : http();
    // An idle connection is dropped after 4 s, or sooner if the server's Keep-Alive says so (as undici
    // does): reused after the server closed it, a signing request would fail as "may have been sent".
    const scheme = secure ? "https:" : "http:";
    const agent = this.agents[scheme] ?? (secure ? httpsAgent(this.tls()) : new lib.Agent(KEPT));
    this.agents[scheme] = agent;
    const { url } = req;
    return new Promise<RawReply>((resolve, reject) => {
      const timer = new Timer();
      const request = lib.request(
        {
          agent,
          protocol: url.protocol,
          hostname: bareHost(url.hostname),
          port: url.port || undefined,
          path: `${url.pathname}${url.search}`,
          method: req.method,
          headers:
            req.body === undefined
              ? req.headers
              : { ...req.headers, "content-length": String(Buffer.byteLength(req.body)) },
          signal: req.signal,
          ...(this.lookup ? { lookup: this.lookup } : {}),
        },
        (res) => {
          timer.clear();
          // The body's limit is on silence between chunks, as undici's bodyTimeout is.
          const socket = res.socket;
          const silent = () =>
            res.destroy(Object.assign(new Error("Body Timeout Error"), { code: TIMEOUT_CODES.body }));
          socket.setTimeout(req.timeouts.body, silent);
          // The agent's idle limit takes over again once the socket is back in its pool.
          res.once("close", () => socket.removeListener("timeout", silent));
          resolve({ statusCode: res.statusCode ?? 0, headers: res.headers, body: res });
        },
      );
      request.once("socket", (socket) => watchConnect(request, socket, req, timer));
      request.once("error", (err) => {
        timer.clear();
        reject(withTlsCode(err));
      });
      request.end(req.body);
    });
  }

  /** Closes the kept connections so the process can exit. */
  async close(): Promise<void> {
    for (const agent of Object.values(this.agents)) agent.destroy();
  }
}

/** The one pending timer of a request: connect, then headers. */
class Timer {
  private timer: NodeJS.Timeout | undefined;

  set(ms: number, then: () => void): void {
    this.clear();
    this.timer = setTimeout(then, ms);
  }

  clear(): void {
    clearTimeout(this.timer);
  }
}

/** Times the connection (on a new socket), then the wait for the reply's headers, failing the request with undici's codes. */
function watchConnect(request: ClientRequest, socket: Socket, req: SendRequest, timer: Timer): void {
  const fail = (code: string, message: string) => request.destroy(Object.assign(new Error(message), { code }));
  const waitForHeaders = () =>
    timer.set(req.timeouts.headers, () => fail(TIMEOUT_CODES.headers, "Headers Timeout Error"));
  if (!(socket as { connecting?: boolean }).connecting) {
    waitForHeaders();
    return;
  }
  timer.set(req.timeouts.connect, () =>
    fail(
      TIMEOUT_CODES.connect,
      `Connect Timeout Error (attempted address: ${req.url.host}, timeout: ${req.timeouts.connect}ms)`,
    ),
  );
  socket.once(req.url.protocol === "https:" ? "secureConnect" : "connect", waitForHeaders);
}
