import { usageError } from "../../errors.js";

/** The path prefix every EST URL has (RFC 7030 §3.2.2). */
const EST_PREFIX = "/.well-known/est";

/**
 * The EST base URL of a `--platform` URL: the prefix is added to a bare host; a path must be the
 * prefix, optionally with one CA label. Throws a usage error for anything else, or for plain http
 * (EST runs over TLS only, §3.3).
 */
export function estBaseUrl(url: URL): URL {
  if (url.protocol !== "https:")
    throw usageError(`EST runs over TLS only (RFC 7030 §3.3): ${url.origin} is plain http`, "platform");
  const path = url.pathname.replace(/\/+$/, "");
  if (path === "") return new URL(`${url.origin}${EST_PREFIX}`);
  if (/^\/\.well-known\/est(\/[^/]+)?$/.test(path)) return new URL(`${url.origin}${path}`);
  throw usageError(
    `the EST URL's path must be ${EST_PREFIX} or ${EST_PREFIX}/<label> (RFC 7030 §3.2.2), not ${url.pathname}`,
    "platform",
  );
}
