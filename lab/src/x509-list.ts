/**
 * x509-identity-mgmt's lists (`GET /certificates`, `GET /trusted-cas`), paged as express-paginate
 * 1.0 does (`index.js` at 1.0.0 and v1.0.2, the same): v0.5.0 through its own
 * `src/core/paginate.js`, v0.7.0/v0.8.0 through dojot-microservice-sdk-js v0.1.11's
 * `lib/webUtils/framework/backing/paginate.js`; 25 a page by default, 250 at most
 * (`framework.paginate.*`, v0.5 `PAGINATE_*`).
 */
import type { ServerResponse } from "node:http";
import { send } from "./replies.js";
import type { Query } from "./x509-query.js";
import type { X509Rules } from "./x509-rules.js";

const LIMIT = 25;
const MAX_LIMIT = 250;

/**
 * The page asked for, as express-paginate's middleware sets it into the query (in place, or last,
 * page before limit), then the generation's own fix for a limit under 1: v0.5's makes it 1, the
 * SDK's the default.
 */
function pageOf(query: Query, rules: X509Rules): { page: number; limit: number } {
  const asked = typeof query.page === "string" ? Number.parseInt(query.page, 10) || 1 : 1;
  let limit = typeof query.limit === "string" ? Number.parseInt(query.limit, 10) || 0 : LIMIT;
  limit = Math.min(limit, MAX_LIMIT);
  const page = Math.max(asked, 1);
  if (limit < 1) limit = rules === "v0.5" ? 1 : LIMIT;
  query.page = page;
  query.limit = limit;
  return { page, limit };
}

/** qs 6's `stringify` as express-paginate calls it: RFC 3986 escapes, arrays as `key[0]=…` (escaped). */
function stringify(query: Query): string {
  const escapeComponent = (text: string) =>
    encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return Object.entries(query)
    .flatMap(([key, value]) =>
      Array.isArray(value)
        ? value.map((v, i) => `${escapeComponent(`${key}[${i}]`)}=${escapeComponent(v)}`)
        : [`${escapeComponent(key)}=${escapeComponent(String(value))}`],
    )
    .join("&");
}

/** express-paginate's `href(prev)`: the request's path (Kong's upstream, `/api/...`) with its query, the page one back or on. */
function href(path: string, query: Query, page: number, prev: boolean): string {
  return `${path}?${stringify({ ...query, page: Math.max(prev ? page - 1 : page + 1, 1) })}`;
}

/** A page of `items` under `key`, with its paging object (`req.getPaging`). */
export function sendPage(
  res: ServerResponse,
  url: URL,
  query: Query,
  key: string,
  items: unknown[],
  rules: X509Rules,
): void {
  const { page, limit } = pageOf(query, rules);
  const pages = Math.ceil(items.length / limit);
  const path = `/api${url.pathname.slice("/x509".length)}`;
  send(res, 200, {
    paging: {
      previous: page > 1 ? { number: page - 1, url: href(path, query, page, true) } : null,
      // The next page's link with its first `page=<n+1>` put back to `page=<n>`, as the code does.
      current: { number: page, url: href(path, query, page, false).replace(`page=${page + 1}`, `page=${page}`) },
      next: page < pages ? { number: page + 1, url: href(path, query, page, false) } : null,
      totalItems: items.length,
      totalPages: pages,
      limitPerPage: limit,
    },
    [key]: items.slice((page - 1) * limit, page * limit),
  });
}
