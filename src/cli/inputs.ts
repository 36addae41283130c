import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { CertRetrieverError, describeCause } from "../errors.js";
import type { SubjectAltNames } from "../flows/build-csr.js";
import type { RenewWindow } from "../flows/inspect.js";
import { isLoopbackHost } from "../transport/loopback.js";
import { usage } from "./hints.js";
import { cliIo } from "./io.js";
import { readSecretFile } from "./secret-file.js";

/** Refuses a device id that could not be a file name inside the output directory. */
export function checkDeviceId(id: string | undefined): string {
  if (!id) throw usage("a device id is required", "pass --device-id or set CERT_RETRIEVER_DEVICE_ID");
  return checkFileName(id, "the device id", "pass the platform's device id with --device-id");
}

/** A control character, which a file name must not hold. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: a name with one is what checkFileName refuses
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;

/**
 * Refuses a name that becomes a file name in the output directory but could leave it, or would not
 * fit a file name: the limit is in bytes (UTF-8), as file systems count, not in characters.
 */
export function checkFileName(name: string, what: string, hint?: string): string {
  if (
    name === "." ||
    name === ".." ||
    /[/\\]/.test(name) ||
    CONTROL_CHARACTER.test(name) ||
    Buffer.byteLength(name, "utf8") > 200 ||
    !name
  ) {
    throw usage(
      `${what} ${JSON.stringify(name)} is not usable: it must be 1 to 200 bytes (UTF-8), without '/', '\\' or control characters, and not '.' or '..'`,
      hint,
    );
  }
  return name;
}

/** Refuses a device id and CA name whose files would collide with each other or with the store's own files (before any request). */
export async function checkStoreNames(deviceId: string, caName: string): Promise<void> {
  const { fileNamesProblem } = await import("../store/names.js"); // the store loads only when a command needs it
  const problem = fileNamesProblem(deviceId, caName);
  if (problem) throw usage(problem, "pass another --device-id or --ca-name");
}

/** Parses the platform URL and refuses plain http beyond loopback unless allowed. */
export function checkPlatformUrl(value: string | undefined, allowHttp: boolean, warn: (line: string) => void): URL {
  if (!value)
    throw usage("the platform URL is required", "pass --platform http(s)://HOST:PORT or set CERT_RETRIEVER_PLATFORM");
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw usage(
      `the platform URL '${value}' is not a URL`,
      "pass --platform like https://dojot.example.com or http://localhost:8000",
    );
  }
  if (url.username || url.password) {
    throw usage(
      "the platform URL must not contain credentials",
      "pass the user with --username and the password from a file or stdin",
    );
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw usage(`the platform URL must start with https:// or http://, not ${url.protocol}//`);
  }
  if (url.protocol === "http:" && !isLoopbackHost(url.hostname)) {
    if (!allowHttp) {
      throw usage(
        `refusing plain http to ${url.host}: the password, the token and the CA certificate would travel in clear`,
        "use https://, or pass --allow-http if this network is trusted",
      );
    }
    warn(`warning: --allow-http: the password, the token and the CA certificate travel in clear to ${url.host}`);
  }
  return url;
}

const DNS_NAME =
  /^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** Checks the requested subject alternative names. */
export function checkSans(dns: string[], ip: string[], uri: string[]): SubjectAltNames {
  for (const name of dns) {
    if (!DNS_NAME.test(name) || name.length > 253) throw usage(`--dns '${name}' is not a DNS name`);
  }
  for (const addr of ip) {
    if (isIP(addr) === 0) throw usage(`--ip '${addr}' is not an IPv4 or IPv6 address`);
  }
  for (const u of uri) {
    let ok = false;
    try {
      ok = /^[a-z][a-z0-9+.-]*:$/i.test(new URL(u).protocol);
    } catch {
      ok = false;
    }
    if (!ok) throw usage(`--uri '${u}' is not an absolute URI such as spiffe://example.com/device/1`);
  }
  return { dns, ip, uri };
}

/** Where the password comes from; it is never a command-line argument. */
export interface PasswordSource {
  file?: string;
  stdin?: boolean;
  env?: string;
}

/** A secret's reader; `signal` abandons a read still waiting (a pipe's writer that has not come). */
export type SecretRead = (signal?: AbortSignal) => Promise<string>;

/**
 * Returns a reader of the password from a file, stdin or the environment, in that order of
 * preference. Fails with a usage error naming the options if none is given.
 */
export function passwordReader(source: PasswordSource, what = "password"): SecretRead {
  if (source.file && source.stdin) throw usage(`give the ${what} either with a file or on stdin, not both`);
  if (!source.file && !source.stdin && source.env === undefined) {
    // Asked only when the authenticate step runs: a run with nothing to do needs no password.
    const missing = new CertRetrieverError(`no ${what} given`, { step: "authenticate", reason: "missing-credentials" });
    return () => Promise.reject(missing);
  }
  return async (signal) => {
    let text: string;
    if (source.file) {
      try {
        text = await readSecretFile(source.file, signal);
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        throw new CertRetrieverError(`cannot read the ${what} file ${source.file}: ${describeCause(err)}`, {
          cause: err,
          step: "config",
          reason: "config",
          hint: "check the path given to --password-file",
        });
      }
    } else if (source.stdin) {
      text = await readStdin();
    } else {
      text = source.env!;
    }
    const value = text.replace(/\r?\n$/, "");
    if (!value) throw usage(`the ${what} is empty`);
    return value;
  };
}

/** The first line on stdin (or all of it, without a line break): a writer that keeps stdin open need not close it. */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of cliIo().stdin) {
    chunks.push(chunk as Buffer);
    if ((chunk as Buffer).includes(10)) break;
  }
  const text = Buffer.concat(chunks).toString("utf8");
  const end = text.indexOf("\n");
  return end >= 0 ? text.slice(0, end + 1) : text;
}

/**
 * A secret's reader that waits no longer than the run may: an interrupt (its reason) or the
 * deadline (exit 75) ends the wait, abandons the read (a pipe's) and stops reading stdin, so that
 * the process can end.
 */
export function boundedRead(
  read: SecretRead,
  signal: AbortSignal,
  deadline: number,
  what = "password",
): () => Promise<string> {
  return () =>
    new Promise<string>((resolve, reject) => {
      // The run's stdin, taken now: a signal's handler runs outside the run.
      const { stdin } = cliIo();
      const abandon = new AbortController();
      const stop = (err: unknown) => {
        cleanup();
        abandon.abort(err);
        stdin.destroy?.();
        reject(err);
      };
      const onAbort = () => stop(signal.reason);
      const timer = setTimeout(
        () =>
          stop(
            new CertRetrieverError(`authenticate failed: the ${what} did not arrive before the deadline`, {
              step: "authenticate",
              reason: "deadline",
              hint: "send it on stdin (one line is enough), or give a longer --deadline",
            }),
          ),
        Math.max(0, deadline - Date.now()),
      );
      const cleanup = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      read(abandon.signal).then(
        (value) => {
          cleanup();
          resolve(value);
        },
        (err: unknown) => {
          cleanup();
          reject(err);
        },
      );
    });
}

/** A secret's value must never be echoed: an argv that tries to pass one is refused without repeating it. */
export function refuseSecretsOnArgv(argv: string[]): void {
  for (const arg of argv) {
    if (/^--?(password|passwd|pass|entity-password)(=|$)/i.test(arg)) {
      throw usage(
        "a password is never accepted as a command-line argument (other users can read a process's arguments)",
        "use --password-file FILE, --password-stdin or CERT_RETRIEVER_PASSWORD",
      );
    }
  }
}

/** Commander's messages quote unknown options as typed; drop any `=value` so a mistyped secret flag leaks nothing. */
export function redactOptionValues(message: string): string {
  return message.replace(/'(-{1,2}[^'=\s]+)=[^']*'/g, "'$1=…'");
}

/**
 * Parses a duration such as `90s`, `5m`, `1h`, `30d` or `500ms`, in milliseconds. The unit is
 * required (`30` could mean seconds or days); only `0` stands alone.
 */
export function parseDuration(value: string, flag: string, allowZero = false): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?$/.exec(value.trim());
  if (m && !m[2] && Number.parseFloat(m[1]!) !== 0) {
    throw usage(
      `${flag} '${value}' has no unit`,
      `say which: ${flag} ${m[1]}s, ${m[1]}m, ${m[1]}h or ${m[1]}d${flag === "--renew-before" ? `, or a share of the lifetime, ${m[1]}%` : ""}`,
    );
  }
  const factor = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000 }[(m?.[2] ?? "s") as "ms"];
  const ms = m ? Number.parseFloat(m[1]!) * factor : NaN;
  if (!(ms > 0 || (allowZero && ms === 0)))
    throw usage(`${flag} '${value}' is not a duration`, `use e.g. ${flag} 90s, 5m or 1h`);
  return ms;
}

/** Parses `--renew-before`: a duration (`30d`, `0` for "at expiry") or a share of the lifetime (`33%`). */
export function parseRenewWindow(value: string): RenewWindow {
  const percent = /^(\d+(?:\.\d+)?)\s*%$/.exec(value.trim());
  if (!percent) return { ms: parseDuration(value, "--renew-before", true) };
  const fraction = Number.parseFloat(percent[1]!) / 100;
  if (!(fraction > 0 && fraction < 1))
    throw usage(
      `--renew-before '${value}' is not a share of the lifetime between 0% and 100%`,
      "use e.g. --renew-before 33% (renew when a third of the lifetime is left)",
    );
  return { fraction };
}

/** Parses a whole number within [min, max]. */
export function parseCount(value: string, flag: string, min: number, max: number): number {
  const n = /^\d+$/.test(value.trim()) ? Number.parseInt(value, 10) : NaN;
  if (!(n >= min && n <= max)) throw usage(`${flag} '${value}' is not a whole number from ${min} to ${max}`);
  return n;
}

/** Reads a PEM file given by `flag`, or fails with a configuration error naming it. */
export async function readPemFile(path: string, flag: string, label: RegExp): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new CertRetrieverError(`cannot read ${flag} ${path}: ${describeCause(err)}`, {
      cause: err,
      step: "config",
      reason: "config",
      hint: `check the path given to ${flag}`,
    });
  }
  if (!label.test(text)) {
    throw new CertRetrieverError(`${flag} ${path} is not a PEM file of the expected kind`, {
      step: "config",
      reason: "config",
      hint: `${flag} takes a PEM file`,
    });
  }
  return text;
}
