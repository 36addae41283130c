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

/**
 * A list with Express Paginate's paging, as x509-identity-mgmt's list routes answer (`?page`,
 * `?limit`, default 25, at most 250: `framework.paginate.*`), the items under `key`.
 */
export function sendPage(res: ServerResponse, url: URL, key: string, items: unknown[]): void {
  const limit = Math.min(Math.max(Number.parseInt(url.searchParams.get("limit") ?? "25", 10) || 25, 1), 250);
  const page = Math.max(Number.parseInt(url.searchParams.get("page") ?? "1", 10) || 1, 1);
  const pages = Math.ceil(items.length / limit);
  const href = (n: number) => `/api${url.pathname.slice("/x509".length)}?page=${n}&limit=${limit}`;
  send(res, 200, {
    paging: {
      previous: page > 1 ? { number: page - 1, url: href(page - 1) } : null,
      current: { number: page, url: href(page) },
      next: page < pages ? { number: page + 1, url: href(page + 1) } : null,
      totalItems: items.length,
      totalPages: pages,
      limitPerPage: limit,
    },
    [key]: items.slice((page - 1) * limit, page * limit),
  });
}
