import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { chmod, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runCli } from "./cli.js";
import { closedPort, tempDir } from "./lab.js";

/** A mosquitto broker on 127.0.0.1 with mutual TLS, identity as username, and a per-identity ACL. */
export interface TestBroker {
  url: string;
  port: number;
  dir: string;
  stop(): Promise<void>;
}

/** The rules each profile's topic needs (%u = the certificate's CN). */
const ACL = [
  "pattern readwrite /admin/%u/attrs", // dojot-mosca: /<tenant>/<device>/attrs, CN = device
  "pattern readwrite %u/attrs", // dojot-vernemq with x509 v0.5: CN = <tenant>:<device>
  "pattern readwrite admin:%u/attrs", // dojot-vernemq when CN = device
  "pattern readwrite %u/messages/json", // airvantage
].join("\n");

/**
 * Starts mosquitto with a server certificate from the lab CA in `labDir` (`lab server-cert`, the
 * key given to the mosquitto user, which reads it after dropping privileges); `api: "x509"` uses
 * the X509 Identity CA, as a dojot v0.5+ broker does, for both its certificate and its clients'.
 * `port`: the port of a broker stopped before (a restart, which its clients reconnect to).
 */
export async function startBroker(
  labDir: string,
  opts: { crlPem?: string; api?: "legacy" | "x509" | "est"; port?: number } = {},
): Promise<TestBroker> {
  const dir = await tempDir("cr-mosq-");
  await chmod(dir, 0o755); // the mosquitto user must reach its files
  const certs = join(dir, "tls");
  const owner = spawnSync("id", ["-u", "mosquitto"]).status === 0 ? ["--key-owner", "mosquitto"] : [];
  const issued = await runCli([
    "lab",
    "server-cert",
    "--dir",
    labDir,
    "--out",
    certs,
    "--dns",
    "localhost",
    "--ip",
    "127.0.0.1",
    "--api",
    opts.api ?? "legacy",
    ...owner,
  ]);
  if (issued.code !== 0) throw new Error(`lab server-cert failed: ${issued.stderr}`);
  await chmod(certs, 0o755);
  const port = opts.port ?? (await closedPort());
  await writeFile(join(dir, "acl"), `${ACL}\n`, { mode: 0o644 });
  const conf = [
    "per_listener_settings false",
    `listener ${port} 127.0.0.1`,
    `cafile ${join(certs, "ca.crt")}`,
    `certfile ${join(certs, "server.crt")}`,
    `keyfile ${join(certs, "server.key")}`,
    "require_certificate true",
    "use_identity_as_username true",
    `acl_file ${join(dir, "acl")}`,
    "allow_anonymous false",
    ...(opts.crlPem ? [`crlfile ${join(dir, "crl.pem")}`] : []),
    "log_dest stderr",
    "log_type all",
  ].join("\n");
  if (opts.crlPem) await writeFile(join(dir, "crl.pem"), opts.crlPem, { mode: 0o644 });
  await writeFile(join(dir, "mosquitto.conf"), `${conf}\n`, { mode: 0o644 });
  const child: ChildProcess = spawn("mosquitto", ["-c", join(dir, "mosquitto.conf")], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  child.stderr!.on("data", (d: Buffer) => (log += d.toString()));
  const until = Date.now() + 10_000;
  while (!/running/.test(log)) {
    if (Date.now() > until || child.exitCode !== null) throw new Error(`mosquitto did not start:\n${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await writeFile(join(dir, "log"), "");
  return {
    url: `mqtts://localhost:${port}`,
    port,
    dir,
    stop: async () => {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.on("exit", r)));
      await writeFile(join(dir, "log"), log);
    },
  };
}
