import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import { promisify } from "node:util";
import { privateKeyPem } from "../../src/keys/key-types.js";
import { softwareCrypto } from "../../src/keys/provider.js";
import * as x509 from "../../src/keys/x509.js";
import { openssl } from "./tools.js";

const crypto = softwareCrypto();

/** A reply of the lab's EST server, as it came: status, headers, body text. */
export interface EstReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * One HTTPS request to an EST URL (`https://127.0.0.1:PORT/...`) with the EST root as the only
 * trust anchor, on a connection of its own (a client certificate is never reused), within 10 s.
 */
export function estRequest(
  url: string,
  rootPem: string,
  opts: { method?: string; body?: string; headers?: Record<string, string>; cert?: string; key?: string } = {},
): Promise<EstReply> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: opts.method ?? "GET",
        headers: opts.headers,
        ca: rootPem,
        cert: opts.cert,
        key: opts.key,
        agent: false,
        timeout: 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }),
        );
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no reply from ${url} within 10 s`)));
    req.on("error", reject);
    req.end(opts.body);
  });
}

/** `Authorization: Basic` for `user:password` (RFC 7617). */
export function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
}

/** A new key (P-256 unless told) and its CSR for `name` (a DN string), with SANs if given. */
export async function keyAndCsr(
  name: string,
  opts: { sans?: x509.JsonGeneralName[]; alg?: "ec-p256" | "ec-p384" | "rsa" } = {},
): Promise<{ csr: x509.Pkcs10CertificateRequest; der: Uint8Array; key: string; keys: CryptoKeyPair }> {
  const alg = opts.alg ?? "ec-p256";
  const gen =
    alg === "rsa"
      ? { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256", publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 }
      : { name: "ECDSA", namedCurve: alg === "ec-p384" ? "P-384" : "P-256" };
  const sign = alg === "rsa" ? gen : { name: "ECDSA", hash: alg === "ec-p384" ? "SHA-384" : "SHA-256" };
  const keys = (await crypto.subtle.generateKey(gen, true, ["sign", "verify"])) as CryptoKeyPair;
  const extensions = opts.sans ? [new x509.SubjectAlternativeNameExtension(opts.sans)] : [];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    { name, keys, signingAlgorithm: sign, extensions },
    crypto,
  );
  return { csr, der: new Uint8Array(csr.rawData), key: await privateKeyPem(keys.privateKey, crypto), keys };
}

/** Base64 of DER, as an EST request body; `wrapped`: in 76-character CRLF lines, as MIME writes it. */
export function b64(der: Uint8Array | ArrayBuffer, wrapped = false): string {
  const text = Buffer.from(der instanceof ArrayBuffer ? new Uint8Array(der) : der).toString("base64");
  return wrapped ? `${text.match(/.{1,76}/g)!.join("\r\n")}\r\n` : text;
}

/** The certificates (PEM) of a base64 PKCS#7 body, as `openssl pkcs7 -inform DER -print_certs` reads it; throws if openssl cannot. */
export function pkcs7Certs(body: string, dir: string): string[] {
  const path = join(dir, `p7-${Math.random().toString(36).slice(2)}.der`);
  writeFileSync(path, Buffer.from(body.replace(/\s+/g, ""), "base64"));
  return (
    openssl("pkcs7", "-inform", "DER", "-in", path, "-print_certs").match(
      /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g,
    ) ?? []
  );
}

/** Runs openssl without blocking (for commands that talk to a lab in this process, like s_client); stdout, or throws with stderr. */
export async function opensslAsync(...args: string[]): Promise<string> {
  const running = promisify(execFile)("openssl", args, { timeout: 10_000, encoding: "utf8" });
  running.child.stdin?.end(); // s_client reads stdin until it ends
  return (await running).stdout;
}

/** What one run of strongSwan's `pki` did: its command line, exit code, stdout and stderr (without the plugin-loading noise of Debian's build). */
export interface PkiRun {
  args: string[];
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs strongSwan's `pki` (asynchronously: the lab answering it runs in this process), within
 * `timeoutMs`. Debian's build lists plugins it does not ship; the "failed to load" lines are dropped.
 */
export async function runPki(args: string[], timeoutMs = 15_000): Promise<PkiRun> {
  const run = promisify(execFile);
  try {
    const { stdout, stderr } = await run("pki", args, { timeout: timeoutMs, encoding: "utf8" });
    return { args, code: 0, stdout, stderr: quiet(stderr) };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string; killed?: boolean };
    return {
      args,
      code: typeof e.code === "number" ? e.code : -1,
      stdout: e.stdout ?? "",
      stderr: quiet(e.stderr ?? "") + (e.killed ? "\n(killed: timed out)" : ""),
    };
  }
}

function quiet(stderr: string): string {
  return stderr
    .split("\n")
    .filter((l) => !/^plugin '[^']+': failed to load/.test(l))
    .join("\n");
}
