import { type ChildProcess, execFile, spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { sha256ColonHex } from "../../src/keys/fingerprint.js";
import * as x509 from "../../src/keys/x509.js";
import { tempDir } from "./lab.js";

/** micromdm's scepserver (Debian's package `scep`), running on 127.0.0.1 with a CA of its own. */
export interface ScepServer {
  url: string;
  /** The CA's fingerprint, as --ca-fingerprint takes it. */
  pin: string;
  caPem: string;
  /** What the server logged (with -debug: each pkiMessage's type). */
  log(): string;
  stop(): Promise<void>;
}

/** A port no one listens on now (scepserver takes its port as a flag, not 0). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Resolves once `port` takes a connection, rejects once `child` has exited. */
async function listening(port: number, child: ChildProcess): Promise<void> {
  for (;;) {
    if (child.exitCode !== null) throw new Error(`scepserver exited (${child.exitCode}) before it listened`);
    const up = await new Promise<boolean>((resolve) => {
      const socket = connect(port, "127.0.0.1", () => resolve(true)).on("error", () => resolve(false));
      socket.unref();
      socket.once("connect", () => socket.destroy());
    });
    if (up) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Makes a CA of `keySize` bits with `scepserver ca -init` and serves it with the challenge `challenge`. */
export async function startScepServer(opts: {
  keySize: number;
  challenge: string;
  allowRenewDays?: number;
}): Promise<ScepServer> {
  const depot = join(await tempDir("cr-scep-"), "depot");
  await promisify(execFile)("scepserver", ["ca", "-init", "-depot", depot, "-keySize", String(opts.keySize)]);
  const caPem = await readFile(join(depot, "ca.pem"), "utf8");
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    let log = "";
    const args = ["-depot", depot, "-port", String(port), "-challenge", opts.challenge, "-debug"];
    if (opts.allowRenewDays !== undefined) args.push("-allowrenew", String(opts.allowRenewDays));
    const child = spawn("scepserver", args, { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout!.on("data", (d: Buffer) => (log += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (log += d.toString()));
    try {
      await listening(port, child);
    } catch (err) {
      if (attempt < 3) continue; // another process took the port in between
      throw err;
    }
    return {
      url: `http://127.0.0.1:${port}/scep`,
      pin: `sha256:${sha256ColonHex(new x509.X509Certificate(caPem).rawData).replace(/:/g, "")}`,
      caPem,
      log: () => log,
      stop: async () => {
        if (child.exitCode !== null) return;
        child.kill("SIGTERM");
        await new Promise((resolve) => child.once("exit", resolve));
      },
    };
  }
}
