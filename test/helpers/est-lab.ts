import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { LabFault } from "../../lab/src/faults.js";
import { type EstLabOptions, type RunningLab, startLab } from "../../lab/src/server.js";
import { sha256Fingerprint } from "../../src/flows/certificate.js";
import { softwareCrypto } from "../../src/keys/provider.js";
import { type CliRun, runCli, SECRETS } from "./cli.js";
import { labDir, tempDir } from "./lab.js";

// The lab's EST server as the EST tests use it (test/system/est*.test.ts).

/** The device every EST test enrolls. */
export const DEVICE = "est-device-1";

export interface EstLab extends RunningLab {
  dir: string;
  password: string;
  estUrl: string;
  /** The EST root's PEM (for --platform-ca) and its pin. */
  rootPem: string;
  pin: string;
  stop(): Promise<void>;
}

/** A lab serving EST only (and the CRL), its CAs the run's, the admin password held as a secret. */
export async function estLab(est: EstLabOptions = {}, faults: LabFault[] = []): Promise<EstLab> {
  const dir = await labDir("cr-est-lab-");
  const password = `est-${Math.random().toString(36).slice(2)}-secret`;
  SECRETS.add(password);
  const lab = await startLab({
    dir,
    host: "127.0.0.1",
    port: 0,
    crypto: softwareCrypto(),
    certProfile: "open",
    autoRegister: false,
    adminPassword: password,
    tokenLifetime: 420,
    api: "est",
    est,
    faults,
  });
  const root = lab.estCa!.root.cert;
  const rootPem = root.toString("pem");
  return {
    ...lab,
    dir,
    password,
    estUrl: lab.estUrl!,
    rootPem,
    pin: `sha256:${sha256Fingerprint(root)}`,
    stop: async () => {
      await lab.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A device's directory and the password file beside it. */
export async function device(lab: EstLab): Promise<{ out: string; pw: string }> {
  const base = await tempDir("cr-est-");
  const pw = join(base, "password");
  await writeFile(pw, lab.password, { mode: 0o600 });
  return { out: join(base, "certs"), pw };
}

/** The arguments of `cert-retriever enroll --api est` for DEVICE into `out`, plus `args`. */
export function estEnrollArgs(lab: EstLab, out: string, args: string[]): string[] {
  return ["enroll", "--api", "est", "--platform", lab.estUrl, "--device-id", DEVICE, "--out", out, ...args];
}

/** `cert-retriever enroll --api est` for DEVICE into `out`, plus `args`, never prompting. */
export function enrollEst(lab: EstLab, out: string, args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  return runCli(estEnrollArgs(lab, out, ["--non-interactive", ...args]), { env, timeoutMs: 30_000 });
}

export const certPath = (out: string) => join(out, `${DEVICE}.crt`);
export const chainPath = (out: string) => join(out, "IOTmidCA.crt");

/** The PEM blocks of a file. */
export async function pemBlocks(path: string): Promise<string[]> {
  return (await readFile(path, "utf8")).match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n/g) ?? [];
}
