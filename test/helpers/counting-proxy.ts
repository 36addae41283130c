import { createServer, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";

/** One request the platform saw: what was asked, the conditional header sent, and what came back. */
export interface Counted {
  method: string;
  path: string;
  status: number;
  ifNoneMatch?: string;
  /** The reply's body, in bytes. */
  bodyBytes: number;
}

/** A reverse proxy on 127.0.0.1 in front of `target` that counts what goes through it, as the platform would see it. */
export async function startCountingProxy(
  target: string,
): Promise<{ url: string; seen: Counted[]; close(): Promise<void> }> {
  const seen: Counted[] = [];
  const server = createServer((req, res) => {
    const up = httpRequest(new URL(req.url ?? "/", target), { method: req.method, headers: req.headers }, (upRes) => {
      let bodyBytes = 0;
      upRes.on("data", (c: Buffer) => (bodyBytes += c.length));
      upRes.on("end", () => {
        const ifNoneMatch = req.headers["if-none-match"];
        seen.push({
          method: req.method ?? "",
          path: req.url ?? "",
          status: upRes.statusCode ?? 0,
          ifNoneMatch,
          bodyBytes,
        });
      });
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
