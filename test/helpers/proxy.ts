import { createServer } from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";

/** A forward proxy on 127.0.0.1, as HTTP(S)_PROXY names one, that records what went through it. */
export interface ForwardProxy {
  url: string;
  /** The `host:port` of each CONNECT tunnel asked for (https through the proxy). */
  connects: string[];
  /** `METHOD absolute-url body` of each plain-http request sent to the proxy (refused with 502: what it would have seen). */
  forwarded: string[];
  close(): Promise<void>;
}

/** Starts a forward proxy: CONNECT tunnels (undici tunnels plain http too); an absolute-form request is recorded and refused. */
export async function startForwardProxy(): Promise<ForwardProxy> {
  const connects: string[] = [];
  const forwarded: string[] = [];
  // A tunnel's sockets leave the server's keeping: closed here, or close() would wait for the client's keep-alive.
  const tunnels = new Set<Socket>();
  const proxy = createServer((req, res) => {
    let body = "";
    req.on("data", (d: Buffer) => (body += d.toString()));
    req.on("end", () => {
      forwarded.push(`${req.method} ${req.url} ${body}`);
      res.writeHead(502).end();
    });
  });
  proxy.on("connect", (req, client: Socket, head: Buffer) => {
    connects.push(req.url ?? "");
    const [host, port] = (req.url ?? "").split(":");
    const upstream = connect(Number(port), host, () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      upstream.write(head);
      upstream.pipe(client).pipe(upstream);
    });
    for (const socket of [client, upstream]) {
      tunnels.add(socket);
      socket.on("close", () => tunnels.delete(socket));
    }
    upstream.on("error", () => client.destroy());
    client.on("error", () => upstream.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    connects,
    forwarded,
    close: () =>
      new Promise((resolve) => {
        for (const socket of tunnels) socket.destroy();
        proxy.closeAllConnections();
        proxy.close(() => resolve());
      }),
  };
}
