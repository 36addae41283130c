import type { ServerResponse } from "node:http";

/** A request body parsed as a JSON object, or undefined if it is not one. */
export function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return value && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Answers JSON (or an empty body when `body` is undefined), with its length. */
export function send(res: ServerResponse, status: number, body: unknown): void {
  if (body === undefined) {
    res.writeHead(status, { "content-length": "0" }).end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) }).end(text);
}

/** Flask's 500 page, for an exception a view of EJBCA-REST does not catch. */
export function sendFlaskError(res: ServerResponse): void {
  const text = `<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>\n`;
  res.writeHead(500, { "content-type": "text/html", "content-length": Buffer.byteLength(text) }).end(text);
}
