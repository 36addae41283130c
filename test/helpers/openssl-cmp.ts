import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A small PKI made by openssl for the CMP mock server: a CA, a device key and the certificate it answers with. */
export interface CmpPki {
  dir: string;
  caCert: string;
  /** The device's key (PEM PKCS#8) and its certificate, CN=dev1, signed by the CA. */
  deviceKey: string;
  deviceCert: string;
  /** A certificate for the server's signatures (CN=CMP RA, from the CA) and its key; and one of the same names from another CA. */
  raCert: string;
  raKey: string;
  strangerCert: string;
  strangerKey: string;
}

/** Makes the PKI in a new temporary directory. */
export async function makeCmpPki(): Promise<CmpPki> {
  const dir = await mkdtemp(join(tmpdir(), "cr-cmp-"));
  const p = (name: string) => join(dir, name);
  const run = (...args: string[]) => execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  run("req", "-x509", ...ec, "-keyout", p("ca.key"), "-out", p("ca.crt"), "-subj", "/CN=CMP Test CA", "-days", "30");
  run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", p("dev.key"));
  run("req", "-new", "-key", p("dev.key"), "-subj", "/CN=dev1", "-out", p("dev.csr"));
  await writeFile(p("ext"), "keyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n");
  run(
    "x509",
    "-req",
    "-in",
    p("dev.csr"),
    "-CA",
    p("ca.crt"),
    "-CAkey",
    p("ca.key"),
    "-set_serial",
    "7",
    "-days",
    "10",
    "-extfile",
    p("ext"),
    "-out",
    p("dev.crt"),
  );
  run("req", "-new", ...ec, "-keyout", p("ra.key"), "-subj", "/CN=CMP RA", "-out", p("ra.csr"));
  run(
    "x509",
    "-req",
    "-in",
    p("ra.csr"),
    "-CA",
    p("ca.crt"),
    "-CAkey",
    p("ca.key"),
    "-days",
    "10",
    "-out",
    p("ra.crt"),
  );
  run(
    "req",
    "-x509",
    ...ec,
    "-keyout",
    p("stranger.key"),
    "-out",
    p("stranger.crt"),
    "-subj",
    "/CN=CMP RA",
    "-days",
    "9",
  );
  return {
    dir,
    caCert: p("ca.crt"),
    deviceKey: p("dev.key"),
    deviceCert: p("dev.crt"),
    raCert: p("ra.crt"),
    raKey: p("ra.key"),
    strangerCert: p("stranger.crt"),
    strangerKey: p("stranger.key"),
  };
}

/** OpenSSL's CMP mock server (`openssl cmp -port 0`), listening: its URL, what it logged, and how to stop it. */
export interface MockCmp {
  url: string;
  log: () => string;
  stop: () => Promise<void>;
}

/** Starts `openssl cmp -port 0 ARGS` and resolves once it prints the port it accepts on ("ACCEPT [::]:PORT"). */
export function startMockCmp(args: string[]): Promise<MockCmp> {
  const child: ChildProcess = spawn("openssl", ["cmp", "-port", "0", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return new Promise((resolve, reject) => {
    void exited.then(() => reject(new Error(`openssl cmp exited (${child.exitCode}) before listening: ${err}`)));
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const port = /ACCEPT \S*:(\d+)/.exec(out)?.[1];
      if (!port) return;
      resolve({
        url: `http://127.0.0.1:${port}/pkix/`,
        log: () => out + err,
        stop: async () => {
          if (child.exitCode === null) child.kill();
          await exited;
        },
      });
    });
  });
}
