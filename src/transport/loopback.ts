import { isIP } from "node:net";

/** A URL's hostname without the brackets of an IPv6 literal (`[::1]` -> `::1`), as sockets take it. */
export function bareHost(hostname: string): string {
  return hostname.replace(/^\[|\]$/g, "");
}

/** Whether a URL's host is this machine: `localhost`, 127.0.0.0/8 or ::1 (no name is resolved). */
export function isLoopbackHost(hostname: string): boolean {
  const host = bareHost(hostname);
  return host === "localhost" || host === "::1" || (isIP(host) === 4 && host.startsWith("127."));
}
