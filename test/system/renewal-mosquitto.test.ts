import { spawnSync } from "node:child_process";
import { copyFile, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.js";
import { type LabProcess, startLabProcess } from "../helpers/clock.js";
import { tempDir } from "../helpers/lab.js";
import { startBroker } from "../helpers/mosquitto.js";
import { haveTool } from "../helpers/tools.js";

/**
 * Renewal as a device lives it: a lab platform issuing one-hour certificates, the device and the
 * platform on one clock that the test moves (libfaketime), the renewal window at its default (a
 * third of the lifetime left: from 40 minutes on).
 */

const hasMosquitto = haveTool("mosquitto") && haveTool("mosquitto_pub");
const DEVICE = "a1b2c3";

/** A device's directory, and the environment that points cert-retriever at `lab` and at the directory (plus `extra`). */
async function deviceOn(lab: LabProcess, prefix: string, extra: Record<string, string> = {}) {
  const out = join(await tempDir(prefix), "certs");
  const pw = join(out, "..", "password");
  await writeFile(pw, lab.password, { mode: 0o600 });
  return {
    out,
    env: {
      ...extra,
      CERT_RETRIEVER_PLATFORM: lab.url,
      CERT_RETRIEVER_USERNAME: "admin",
      CERT_RETRIEVER_PASSWORD_FILE: pw,
      CERT_RETRIEVER_DEVICE_ID: DEVICE,
      CERT_RETRIEVER_OUT: out,
    },
  };
}

describe.skipIf(!hasMosquitto)(
  "mosquitto with the lab's CRL (crlfile)",
  () => {
    let lab: LabProcess;
    beforeAll(async () => {
      lab = await startLabProcess(["--api", "x509", "--cert-lifetime", "1h", "--force-crl-renew"]);
      await runCli(["lab", "device", "add", "--dir", lab.dir, DEVICE]);
    });
    afterAll(async () => lab?.stop());

    it("refuses the revoked certificate and accepts the new one, which the client the hook restarted uses", async () => {
      const { out, env } = await deviceOn(lab, "cr-crl-");
      expect((await runCli(["enroll", "--non-interactive"], { env })).code).toBe(0);
      expect((await runCli(["check"], { env })).code).toBe(1); // fetches and keeps the CRL, which the broker gets
      const old = join(out, "..", "old");
      await mkdir(old);
      for (const f of [`${DEVICE}.crt`, `${DEVICE}.key`]) await copyFile(join(out, f), join(old, f));
      const crl = () => readFile(join(out, "IOTmidCA.crl"), "utf8");
      const topic = `admin:${DEVICE}/attrs`;
      const tls = (dir: string) => [
        "--cafile",
        join(out, "IOTmidCA.crt"),
        "--cert",
        join(dir, `${DEVICE}.crt`),
        "--key",
        join(dir, `${DEVICE}.key`),
      ];

      let broker = await startBroker(lab.dir, { api: "x509", crlPem: await crl() });
      const port = broker.port;
      const publish = (dir: string, message: string) =>
        spawnSync(
          "mosquitto_pub",
          ["-h", "localhost", "-p", String(port), ...tls(dir), "-t", topic, "-m", message, "-q", "1"],
          { encoding: "utf8", timeout: 15_000 },
        );
      // The device's service: an MQTT client that loads the identity when it starts (libmosquitto would read the files again at
      // each reconnect, so it runs on a copy, as a service that holds its key in memory does); restarting it is the hook's job.
      const received = join(out, "..", "received.log");
      const pidFile = join(out, "..", "client.pid");
      const loaded = join(out, "..", "loaded");
      await mkdir(loaded);
      const restartClient = join(out, "..", "restart-client.sh");
      await writeFile(
        restartClient,
        [
          "#!/bin/sh",
          `[ -f '${pidFile}' ] && kill "$(cat '${pidFile}')" 2>/dev/null`,
          `cp '${join(out, `${DEVICE}.crt`)}' '${join(out, `${DEVICE}.key`)}' '${loaded}/'`,
          `mosquitto_sub -h localhost -p ${port} ${tls(loaded)
            .map((a) => `'${a}'`)
            .join(" ")} -t '${topic}' -q 1 -i device-service >> '${received}' 2>&1 &`,
          `echo $! > '${pidFile}'`,
          "",
        ].join("\n"),
        { mode: 0o755 },
      );
      const stopClient = async () => spawnSync("sh", ["-c", `kill "$(cat '${pidFile}')" 2>/dev/null`]);
      /** Publishes with `dir`'s identity until the service's client has received it (it may be reconnecting), or 20 s pass. */
      const deliveredTo = async (dir: string, message: string) => {
        for (const until = Date.now() + 20_000; Date.now() < until; ) {
          if (
            publish(dir, message).status === 0 &&
            (await readFile(received, "utf8").catch(() => "")).includes(message)
          )
            return true;
          await new Promise((r) => setTimeout(r, 250));
        }
        return false;
      };
      try {
        expect(spawnSync(restartClient).status).toBe(0);
        expect(await deliveredTo(old, "before-renewal")).toBe(true);
        // The renewal window is wider than the lifetime here, so the renewal is due now (no clock moves: mosquitto reads the real one).
        const renewed = await runCli(
          [
            "enroll",
            "--non-interactive",
            "--renew-before",
            "2h",
            "--verify-broker",
            broker.url,
            "--exec",
            restartClient,
            "--json",
          ],
          { env },
        );
        expect(renewed.code, renewed.stderr).toBe(0);
        expect(renewed.stderr).toMatch(
          /verify connack: .*[\s\S]*hook --exec .* done[\s\S]*revoked the replaced certificate/,
        );
        expect(JSON.parse(renewed.stdout).previous.revoked).toBe("revoked");
        // The platform's new CRL reaches the broker, which restarts on the same port; the client reconnects with what it loaded.
        await broker.stop();
        expect((await runCli(["check", "--renew-before", "1m"], { env })).code).toBe(1);
        broker = await startBroker(lab.dir, { api: "x509", crlPem: await crl(), port });
        expect(await deliveredTo(out, "after-renewal")).toBe(true);
        const refused = publish(old, "with-the-old-identity");
        expect(refused.status).not.toBe(0);
      } finally {
        await stopClient();
        await broker.stop();
      }
      // mosquitto says only "certificate verify failed"; openssl, with the same CRL, says why.
      expect(await readFile(join(broker.dir, "log"), "utf8")).toMatch(/certificate verify failed/);
      const why = spawnSync(
        "openssl",
        [
          "verify",
          "-crl_check",
          "-CAfile",
          join(out, "IOTmidCA.crt"),
          "-CRLfile",
          join(out, "IOTmidCA.crl"),
          join(old, `${DEVICE}.crt`),
        ],
        { encoding: "utf8" },
      );
      expect(why.stdout + why.stderr).toMatch(/certificate revoked/);
    });
  },
  120_000,
);
