import { execFileSync, spawnSync } from "node:child_process";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { SECRETS } from "./cli.js";
import { tempDir } from "./lab.js";

/** Debian's SoftHSM2 module. */
const SOFTHSM_MODULE = "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so";
/** OpenSSL's pkcs11 engine directory (Debian's libengine-pkcs11-openssl). */
const ENGINES_DIR = "/usr/lib/x86_64-linux-gnu/engines-3";

/** A SoftHSM2 token in a temporary directory of its own, initialized by the test. */
export interface TestToken {
  dir: string;
  label: string;
  pin: string;
  module: string;
  /** The environment that points SoftHSM2 (and the pkcs11 engine) at this token. */
  env: Record<string, string>;
  /** A file holding the PIN (0600), for pin-source=. */
  pinFile: string;
  /** pkcs11-tool on this token, logged in; returns stdout. */
  tool(...args: string[]): string;
  /** The private-key objects with `label`, as pkcs11-tool lists them (one text block each). */
  privateKeys(label: string): string[];
  stop(): Promise<void>;
}

/** Makes a SoftHSM2 token `label` with a fresh PIN under a temporary SOFTHSM2_CONF. */
export async function makeSoftToken(label = "device"): Promise<TestToken> {
  const dir = await tempDir("cr-softhsm-");
  await mkdir(join(dir, "tokens"), { mode: 0o700 });
  const conf = join(dir, "softhsm2.conf");
  await writeFile(
    conf,
    `directories.tokendir = ${join(dir, "tokens")}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`,
  );
  const pin = `${Math.floor(100000 + Math.random() * 899999)}`;
  SECRETS.add(pin);
  const env = { SOFTHSM2_CONF: conf, OPENSSL_ENGINES: ENGINES_DIR, PKCS11_MODULE_PATH: SOFTHSM_MODULE };
  execFileSync("softhsm2-util", ["--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", "87654321"], {
    env: { ...process.env, ...env },
    stdio: "ignore",
  });
  const pinFile = join(dir, "pin");
  await writeFile(pinFile, `${pin}\n`, { mode: 0o600 });
  const tool = (...args: string[]) => {
    const run = spawnSync(
      "pkcs11-tool",
      ["--module", SOFTHSM_MODULE, "--token-label", label, "--login", "--pin", pin, ...args],
      { env: { ...process.env, ...env }, encoding: "utf8" },
    );
    if (run.status !== 0) throw new Error(`pkcs11-tool ${args.join(" ")} failed: ${run.stderr}`);
    return run.stdout;
  };
  return {
    dir,
    label,
    pin,
    module: SOFTHSM_MODULE,
    env,
    pinFile,
    tool,
    privateKeys: (keyLabel) =>
      tool("--list-objects", "--type", "privkey")
        .split(/\n(?=Private Key Object)/)
        .filter(
          (block) =>
            block.startsWith("Private Key Object") && new RegExp(`label:\\s+${keyLabel}\\s*$`, "m").test(block),
        ),
    stop: () => rm(dir, { recursive: true, force: true }),
  };
}
