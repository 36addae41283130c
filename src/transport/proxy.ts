/**
 * HttpClient's path through HTTP(S)_PROXY: undici's EnvHttpProxyAgent, from undici's public entry,
 * loaded only when the environment names a proxy for the URL. Loading undici costs start-up time
 * (its HTTP parser is WebAssembly, compiled on every run, and its entry makes Node 20 load its own
 * copy too), so a direct connection never does (node-http.ts).
 */
import type { ConnectionOptions } from "node:tls";
import type { Dispatcher, EnvHttpProxyAgent } from "undici";
import { isLoopbackHost } from "./loopback.js";
import type { RawReply, Sender, SendRequest } from "./sender.js";

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
  tls: ConnectionOptions,
  connectTimeout: number,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Sender> {
  const { EnvHttpProxyAgent } = await import("undici");
  const connect = { ...tls, timeout: connectTimeout };
  // `connect` for a host NO_PROXY exempts, `requestTls` for the server at the end of the tunnel.
  // The variables as undici reads them (lowercase first), from the environment given.
  const httpProxy = env.http_proxy ?? env.HTTP_PROXY;
  const httpsProxy = env.https_proxy ?? env.HTTPS_PROXY ?? httpProxy;
  const noProxy = env.no_proxy ?? env.NO_PROXY;
  return new ProxySender(new EnvHttpProxyAgent({ connect, requestTls: connect, httpProxy, httpsProxy, noProxy }));
}
