/**
 * HttpClient's path through HTTP(S)_PROXY: undici's EnvHttpProxyAgent, from undici's public entry,
 * loaded only when the environment names a proxy for the URL. Loading undici costs start-up time
 * (its HTTP parser is WebAssembly, compiled on every run, and its entry makes Node 20 load its own
 * copy too), so a direct connection never does (node-http.ts).
 */
import { isIP } from "node:net";
import { connect as tlsConnect } from "node:tls";
import type { buildConnector, Dispatcher, EnvHttpProxyAgent, Pool } from "undici";
import { bareHost, isLoopbackHost } from "./loopback.js";
import { type RawReply, type Sender, type SendRequest, TIMEOUT_CODES } from "./sender.js";
import { type ClientTlsOptions, guardClientCertificate } from "./server-first.js";

/**
 * Whether a request to `url` goes through a proxy: the environment names one for its scheme
 * (https falls back to HTTP_PROXY, as undici reads them), and the host is not this machine. A
 * loopback server is never proxied (as NO_PROXY conventions have it): over plain http it would
 * otherwise hand the password and the token in clear to whatever proxy the environment names.
 * NO_PROXY itself is undici's to read.
 */
export function proxyNamedFor(url: URL, env: NodeJS.ProcessEnv = process.env): boolean {
  if (isLoopbackHost(url.hostname)) return false;
  const http = env.http_proxy ?? env.HTTP_PROXY;
  const https = env.https_proxy ?? env.HTTPS_PROXY;
  return Boolean(url.protocol === "https:" ? https || http : http);
}

/** Requests through undici's EnvHttpProxyAgent (HTTP(S)_PROXY and NO_PROXY read by undici). */
class ProxySender implements Sender {
  constructor(private readonly agent: EnvHttpProxyAgent) {}

  /** Sends one request through the proxy (or around it, for a NO_PROXY host); resolves when the headers have come. */
  async request(req: SendRequest): Promise<RawReply> {
    const { url, timeouts } = req;
    const options: Dispatcher.RequestOptions = {
      origin: url.origin,
      path: `${url.pathname}${url.search}`,
      method: req.method as Dispatcher.HttpMethod,
      headers: req.headers,
      body: req.body,
      headersTimeout: timeouts.headers,
      bodyTimeout: timeouts.body,
      signal: req.signal,
    };
    const res = await this.agent.request(options);
    return { statusCode: res.statusCode, headers: res.headers, body: res.body };
  }

  /** Closes the kept connections (and tunnels) so the process can exit. */
  close(): Promise<void> {
    return this.agent.close();
  }
}

/**
 * A sender through the proxy the environment names, with `tls` for the server (trusted CAs, client
 * certificate) and `connectTimeout` for each connection. undici is imported here, not before.
 */
export async function openProxySender(
  tls: ClientTlsOptions,
  connectTimeout: number,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Sender> {
  const undici = await import("undici");
  const connect = { ...tls, timeout: connectTimeout };
  // With a client certificate, the TLS to the server is made here, where it can check the server first.
  const factory = (origin: string, opts: Pool.Options) =>
    new undici.Pool(origin, {
      ...opts,
      connect: checkedTlsOver(
        typeof opts.connect === "function" ? opts.connect : undici.buildConnector({ ...opts.connect }),
        tls,
        connectTimeout,
      ),
    });
  // `connect` for a host NO_PROXY exempts, `requestTls` for the server at the end of the tunnel.
  // The variables as undici reads them (lowercase first), from the environment given.
  // An empty value where the environment has none: undici would read its process's variables instead.
  const httpProxy = env.http_proxy ?? env.HTTP_PROXY ?? "";
  const httpsProxy = env.https_proxy ?? env.HTTPS_PROXY ?? httpProxy;
  const noProxy = env.no_proxy ?? env.NO_PROXY ?? "";
  return new ProxySender(
    new undici.EnvHttpProxyAgent({
      connect,
      requestTls: connect,
      httpProxy,
      httpsProxy,
      noProxy,
      ...(tls.requestOCSP ? { factory } : {}),
    }),
  );
}

/**
 * A connector that asks `plain` for the TCP connection to the server (the proxy's tunnel, or a
 * direct one for a host NO_PROXY exempts) and makes the TLS over it itself: undici's own TLS
 * cannot check the server before the client certificate goes out (server-first.ts).
 */
function checkedTlsOver(
  plain: buildConnector.connector,
  tls: ClientTlsOptions,
  timeoutMs: number,
): buildConnector.connector {
  return (opts, callback) => {
    if (opts.protocol !== "https:") return plain(opts, callback);
    const port = opts.port || "443";
    plain({ ...opts, protocol: "http:", host: `${opts.hostname}:${port}`, port }, (err, raw) => {
      if (err || !raw) return callback(err ?? new Error("no connection"), null);
      const host = bareHost(opts.hostname);
      const options = { ...tls, socket: raw, host, servername: opts.servername || (isIP(host) ? undefined : host) };
      const socket = guardClientCertificate(tlsConnect({ ...options, ALPNProtocols: ["http/1.1"] }), options);
      const fail = (e: Error) => {
        clearTimeout(timer);
        callback(e, null);
      };
      const timer = setTimeout(
        () => socket.destroy(Object.assign(new Error("Connect Timeout Error"), { code: TIMEOUT_CODES.connect })),
        timeoutMs,
      );
      socket.once("error", fail).once("secureConnect", () => {
        clearTimeout(timer);
        socket.off("error", fail);
        callback(null, socket);
      });
    });
  };
}
