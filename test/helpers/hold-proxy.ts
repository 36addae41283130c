import { createServer, type IncomingMessage, request } from "node:http";
import type { AddressInfo } from "node:net";

/** A reverse proxy in front of a platform that holds the requests a test picks until it releases them: a platform that takes its time, for as long as the test needs. */
export interface HoldingProxy {
  /** The proxy's URL, to give as --platform. */
  url: string;
  /** Resolves once a request that `hold` picks has arrived (and is held). */
  held: Promise<void>;
  /** Sends the held requests on, and every later one straight through. */
  release(): void;
  close(): Promise<void>;
}

/** Starts a proxy on 127.0.0.1 in front of `target` (http), holding each request `hold` picks until release(). */
export async function startHoldingProxy(
  target: string,
  hold: (req: IncomingMessage) => boolean,
): Promise<HoldingProxy> {
  const upstream = new URL(target);
  let released = false;
  const waiting: Array<() => void> = [];
  let arrived!: () => void;
  const held = new Promise<void>((resolve) => (arrived = resolve));
  const server = createServer((req, res) => {
    const body: Buffer[] = [];
    req.on("data", (d: Buffer) => body.push(d));
    req.on("end", () => {
      const forward = () => {
        const out = request(
          { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
          (reply) => {
            res.writeHead(reply.statusCode ?? 502, reply.headers);
            reply.pipe(res);
          },
        );
        out.on("error", () => res.destroy());
        out.end(Buffer.concat(body));
      };
      if (released || !hold(req)) return forward();
      waiting.push(forward);
      arrived();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    held,
    release: () => {
      released = true;
      for (const forward of waiting.splice(0)) forward();
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
