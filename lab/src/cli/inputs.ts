import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { certificatePems } from "cert-retriever";
import * as x509 from "../x509.js";

/** Where the lab keeps its CAs and state when --dir is not given (relative to the working directory). */
export const DEFAULT_DIR = "lab-state";

/** A mistake the lab's command line reports in one sentence and a hint: exit 2 (usage) or 3 (a file it was given). */
export class LabCliError extends Error {
  constructor(
    message: string,
    readonly code: 2 | 3,
    readonly hint?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A flag or argument that is missing or wrong (exit 2). */
export function usage(message: string, hint?: string, cause?: unknown): LabCliError {
  return new LabCliError(message, 2, hint, { cause });
}

/** A line for the operator, on stderr, with control characters made visible (a subject or a path could carry them). */
export function say(line: string): void {
  process.stderr.write(`${line.replace(UNSAFE_FOR_A_TERMINAL, "?")}\n`);
}

/** Control characters and bidirectional overrides: what could rewrite an operator's screen. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: they are what say() neutralises
const UNSAFE_FOR_A_TERMINAL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** A control character, which a device id (a file name for the agent) must not hold. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: an id with one is what checkDeviceId refuses
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;

/** `HOST:PORT` (an IPv6 host in brackets), as --listen and --est-listen take it. */
export function parseListen(value: string, flag = "--listen"): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number.parseInt(m[3]!, 10) : NaN;
  if (!m || port > 65535) throw usage(`${flag} '${value}' is not HOST:PORT`, `use e.g. ${flag} 127.0.0.1:0`);
  return { host: (m[1] ?? m[2])!, port };
}

/** A duration with its unit (`90s`, `5m`, `1h`, `2d`) in ms. */
export function parseDuration(value: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?$/.exec(value.trim());
  if (m && !m[2] && Number.parseFloat(m[1]!) !== 0)
    throw usage(`${flag} '${value}' has no unit`, `say which: ${flag} ${m[1]}s, ${m[1]}m, ${m[1]}h or ${m[1]}d`);
  const factor = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000 }[(m?.[2] ?? "s") as "ms"];
  const ms = m ? Number.parseFloat(m[1]!) * factor : NaN;
  if (!(ms > 0)) throw usage(`${flag} '${value}' is not a duration`, `use e.g. ${flag} 90s, 5m or 1h`);
  return ms;
}

/** A whole number within [min, max]. */
export function parseCount(value: string, flag: string, min: number, max: number): number {
  const n = /^\d+$/.test(value.trim()) ? Number.parseInt(value, 10) : NaN;
  if (!(n >= min && n <= max)) throw usage(`${flag} '${value}' is not a whole number from ${min} to ${max}`);
  return n;
}

/** A device id the agent can store under (it becomes a file name there). */
export function checkDeviceId(id: string): string {
  if (
    id === "." ||
    id === ".." ||
    /[/\\]/.test(id) ||
    CONTROL_CHARACTER.test(id) ||
    Buffer.byteLength(id, "utf8") > 200 ||
    !id
  ) {
    throw usage(
      `the device id ${JSON.stringify(id)} is not usable: it must be 1 to 200 bytes (UTF-8), without '/', '\\' or control characters, and not '.' or '..'`,
    );
  }
  return id;
}

const DNS_NAME =
  /^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** A broker's names, as subject alternative names. */
export function brokerNames(dns: string[], ip: string[]): x509.JsonGeneralName[] {
  for (const name of dns)
    if (!DNS_NAME.test(name) || name.length > 253) throw usage(`--dns '${name}' is not a DNS name`);
  for (const address of ip) if (isIP(address) === 0) throw usage(`--ip '${address}' is not an IPv4 or IPv6 address`);
  if (dns.length + ip.length === 0)
    throw usage("give the broker's names with --dns and/or --ip", "e.g. --dns localhost --ip 127.0.0.1");
  return [
    ...dns.map((value) => ({ type: "dns" as const, value })),
    ...ip.map((value) => ({ type: "ip" as const, value })),
  ];
}

/** The certificates of a PEM file given by `flag`, or a configuration error naming it (exit 3). */
export async function readCertificates(path: string, flag: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new LabCliError(
      `cannot read ${flag} ${path}: ${(err as Error).message}`,
      3,
      `check the path given to ${flag}`,
      { cause: err },
    );
  }
  const pems = certificatePems(text);
  if (pems.length === 0)
    throw new LabCliError(`${flag} ${path} is not a PEM file of the expected kind`, 3, `${flag} takes a PEM file`);
  return pems;
}

/** A DN as text with the names openssl prints, UID included (x509-identity-mgmt's CA carries one). */
export function displayName(name: x509.Name): string {
  return new x509.Name(name.toJSON(), { UID: "0.9.2342.19200300.100.1.1" }).toString();
}
