import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openssl } from "./tools.js";

/**
 * A factory PKI made with openssl at test time (nothing is committed): a root CA, an intermediate
 * under it, and certificates a device could have been born with.
 */
export interface FactoryPki {
  dir: string;
  /** PEM of the root CA (self-signed, CA:TRUE, keyCertSign). */
  rootPem: string;
  /** PEM of the intermediate CA. */
  intPem: string;
  /** Issues a certificate under `issuer` and returns its PEM file's path. */
  issue(name: string, opts?: { issuer?: "root" | "int"; days?: number; ca?: boolean; cn?: string }): string;
  /** A file holding these PEM texts, one after the other. */
  bundle(name: string, ...pems: string[]): string;
  read(path: string): string;
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

/** A new factory PKI in `dir` (root `rootCn`, intermediate `<rootCn> Devices`). */
export function makeFactoryPki(dir: string, rootCn = "Factory Root CA"): FactoryPki {
  const file = (name: string) => join(dir, name);
  openssl(
    "req",
    "-x509",
    ...EC,
    "-keyout",
    file("root.key"),
    "-out",
    file("root.crt"),
    "-subj",
    `/O=Acme/CN=${rootCn}`,
    "-days",
    "30",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  );
  const ext = (name: string, ca: boolean) => {
    const path = file(`${name}.ext`);
    writeFileSync(
      path,
      ca
        ? "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
        : "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    );
    return path;
  };
  const sign = (name: string, cn: string, issuer: string, days: number, ca: boolean) => {
    openssl("req", ...EC, "-keyout", file(`${name}.key`), "-out", file(`${name}.csr`), "-subj", `/O=Acme/CN=${cn}`);
    openssl(
      "x509",
      "-req",
      "-in",
      file(`${name}.csr`),
      "-CA",
      file(`${issuer}.crt`),
      "-CAkey",
      file(`${issuer}.key`),
      "-set_serial",
      `0x${Math.random().toString(16).slice(2, 12)}`,
      "-days",
      String(days),
      "-extfile",
      ext(name, ca),
      "-out",
      file(`${name}.crt`),
    );
    return file(`${name}.crt`);
  };
  sign("int", `${rootCn} Devices`, "root", 20, true);
  const read = (path: string) => readFileSync(path, "utf8");
  return {
    dir,
    rootPem: read(file("root.crt")),
    intPem: read(file("int.crt")),
    // openssl 3.0 takes -days down to -1: a certificate that ended a day ago.
    issue: (name, opts = {}) => sign(name, opts.cn ?? name, opts.issuer ?? "int", opts.days ?? 10, opts.ca ?? false),
    bundle: (name, ...pems) => {
      writeFileSync(file(name), `${pems.map((p) => p.trimEnd()).join("\n")}\n`);
      return file(name);
    },
    read,
  };
}
