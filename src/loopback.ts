import { isIP } from "node:net";

/** Whether a URL's host is this machine: `localhost`, 127.0.0.0/8 or ::1 (no name is resolved). */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, "");
  return host === "localhost" || host === "::1" || (isIP(host) === 4 && host.startsWith("127."));
}
