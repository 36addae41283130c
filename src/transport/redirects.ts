/**
 * Which redirects a fetch from a URL that a certificate names may follow. Such a URL is written by
 * a CA, but what answers there may be anyone on the path: left free, a redirect would make this
 * machine ask other hosts, its own loopback services or the private network behind it (a request
 * forgery), or fall from https to plain http. So a redirect stays where it started.
 */
import { BlockList, isIP } from "node:net";
import { bareHost } from "./loopback.js";

/** The most redirects one fetch follows. */
const MAX_REDIRECTS = 3;

/** Where an address leads: this machine, the local link, a private network, or anywhere else. */
type AddressScope = "loopback" | "link-local" | "private" | "public";

/** The ranges of each scope but "public" (IPv4-mapped IPv6 addresses match their IPv4 range). */
const SCOPES: [Exclude<AddressScope, "public">, BlockList][] = (() => {
  const ranges = {
    // 0.0.0.0/8 and :: reach this machine on Linux, as 127/8 and ::1 do.
    loopback: ["127.0.0.0/8", "0.0.0.0/8", "::1/128", "::/128"],
    "link-local": ["169.254.0.0/16", "fe80::/10"],
    // RFC 1918, shared address space (RFC 6598), unique local (RFC 4193) and the old site-local.
    private: ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7", "fec0::/10"],
  } as const;
  return Object.entries(ranges).map(([scope, list]) => {
    const block = new BlockList();
    for (const range of list) {
      const [net, bits] = range.split("/") as [string, string];
      block.addSubnet(net, Number(bits), isIP(net) === 6 ? "ipv6" : "ipv4");
    }
    return [scope as Exclude<AddressScope, "public">, block];
  });
})();

/**
 * The scope of a URL's host, by its form alone (no name is resolved): an IP literal by its range,
 * `localhost` and names under it as loopback, any other name as public.
 */
export function addressScope(hostname: string): AddressScope {
  const host = bareHost(hostname).toLowerCase().replace(/\.$/, "");
  if (host === "localhost" || host.endsWith(".localhost")) return "loopback";
  const family = isIP(host);
  if (family === 0) return "public";
  return SCOPES.find(([, block]) => block.check(host, family === 6 ? "ipv6" : "ipv4"))?.[0] ?? "public";
}

/**
 * Why a redirect to `to`, the `hops`-th of a fetch that started at `start`, is not followed, or
 * undefined when it may be: it keeps the start's scheme (no https -> http, no other protocol) and
 * host (name and port), goes to a loopback, link-local or private address only if the start is
 * one of the same scope, and is among the first {@link MAX_REDIRECTS}.
 */
export function redirectRefusal(start: URL, to: URL, hops: number): string | undefined {
  if (hops > MAX_REDIRECTS) return `more than ${MAX_REDIRECTS} redirects`;
  if (to.protocol !== start.protocol)
    return `it goes to another scheme (${to.protocol.replace(/:$/, "")}) than ${start.protocol.replace(/:$/, "")}`;
  const scope = addressScope(to.hostname);
  if (scope !== "public" && scope !== addressScope(start.hostname))
    return `it goes to a ${scope} address (${to.hostname})`;
  if (to.host !== start.host) return `it goes to another host (${to.host}) than ${start.host}`;
  return undefined;
}
