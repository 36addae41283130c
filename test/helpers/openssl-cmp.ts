import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
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

/** Bootstrap certificates (IDevIDs) for a CMP first enrollment signed without a secret. */
export interface BootstrapPki {
  /** The manufacturer's root CA, which the server trusts for its devices' bootstrap certificates. */
  rootCert: string;
  /** An RSA-2048 IDevID from the manufacturer's intermediate CA, the intermediate after it in the same file; and its key. */
  chainCert: string;
  rsaKey: string;
  /** A P-256 IDevID from a CA the server does not trust; and its key. */
  strangerCert: string;
  strangerKey: string;
}

/** Makes the manufacturer's CAs and the IDevIDs in `dir`. */
export async function makeBootstrapPki(dir: string): Promise<BootstrapPki> {
  const p = (name: string) => join(dir, name);
  const run = (...args: string[]) => execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  await writeFile(p("ca-ext"), "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n");
  await writeFile(
    p("id-ext"),
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectKeyIdentifier=hash\n",
  );
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  const issue = (name: string, subj: string, ca: string, ext: string, newkey = ec) => {
    run("req", "-new", ...newkey, "-keyout", p(`${name}.key`), "-subj", subj, "-out", p(`${name}.csr`));
    run(
      "x509",
      "-req",
      "-in",
      p(`${name}.csr`),
      "-CA",
      p(`${ca}.crt`),
      "-CAkey",
      p(`${ca}.key`),
      "-days",
      "20",
      "-extfile",
      p(ext),
      "-out",
      p(`${name}.crt`),
    );
  };
  run(
    "req",
    "-x509",
    ...ec,
    "-keyout",
    p("mfr.key"),
    "-out",
    p("mfr.crt"),
    "-subj",
    "/CN=Maker Root CA",
    "-days",
    "30",
  );
  issue("mfr-sub", "/CN=Maker Device CA", "mfr", "ca-ext");
  issue("idevid", "/CN=idevid-0042/serialNumber=0042", "mfr-sub", "id-ext", ["-newkey", "rsa:2048", "-nodes"]);
  run(
    "req",
    "-x509",
    ...ec,
    "-keyout",
    p("other.key"),
    "-out",
    p("other.crt"),
    "-subj",
    "/CN=Other Maker CA",
    "-days",
    "30",
  );
  issue("stranger-id", "/CN=idevid-0042/serialNumber=0042", "other", "id-ext");
  await writeFile(
    p("idevid-chain.crt"),
    (await readFile(p("idevid.crt"), "utf8")) + (await readFile(p("mfr-sub.crt"), "utf8")),
  );
  return {
    rootCert: p("mfr.crt"),
    chainCert: p("idevid-chain.crt"),
    rsaKey: p("idevid.key"),
    strangerCert: p("stranger-id.crt"),
    strangerKey: p("stranger-id.key"),
  };
}

/** A manufacturer's CA and a device's bootstrap certificate (IDevID) it issued, P-256, made with openssl in `dir`, named by `name`. */
export function makeManufacturer(dir: string, name: string): { ca: string; cert: string; key: string } {
  const [ca, caKey, csr, cert, key] = ["ca.pem", "ca.key", "boot.csr", "boot.pem", "boot.key"].map((f) =>
    join(dir, `${name}-${f}`),
  ) as [string, string, string, string, string];
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  const openssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  openssl("req", "-x509", ...ec, "-keyout", caKey, "-out", ca, "-subj", `/CN=${name} Manufacturer CA`, "-days", "2");
  openssl("req", "-new", ...ec, "-keyout", key, "-out", csr, "-subj", `/CN=${name} device IDevID`);
  openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", caKey, "-CAcreateserial", "-out", cert, "-days", "1");
  return { ca, cert, key };
}
