import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { LabFault } from "../../lab/src/faults.js";
import { runCli } from "../helpers/cli.js";
import { listFiles } from "../helpers/enroll.js";
import { certPath, chainPath, DEVICE, device, enrollEst, estLab, pemBlocks } from "../helpers/est-lab.js";
import { startBroker } from "../helpers/mosquitto.js";
import { haveTool } from "../helpers/tools.js";

/**
 * cert-retriever as an EST client (RFC 7030) against the lab's EST server, over real TLS on
 * 127.0.0.1: bootstrap by password or by a factory certificate, re-enrollment by the current
 * certificate, CSR attributes, manual approval (202), and every refusal with its exit code and
 * nothing written.
 */

describe("EST replies in the forms RFC 8951 allows", () => {
  it("base64 in 64-column CRLF lines (cacerts and the issued certificate): read as well", async () => {
    const lab = await estLab({}, [
      { route: "est-cacerts", kind: "wrapped-base64" },
      { route: "est-enroll", kind: "wrapped-base64" },
    ]);
    try {
      const { out, pw } = await device(lab);
      const run = await enrollEst(lab, out, [
        "--username",
        "admin",
        "--password-file",
        pw,
        "--ca-fingerprint",
        lab.pin,
      ]);
      expect(run.code, run.stderr).toBe(0);
      expect(await pemBlocks(chainPath(out))).toHaveLength(2);
    } finally {
      await lab.stop();
    }
  });
});

describe("EST replies that must not be trusted", () => {
  const cases: { name: string; faults: LabFault[]; code: number; step: string; reason: string }[] = [
    {
      name: "/cacerts not a PKCS#7",
      faults: [{ route: "est-cacerts", kind: "malformed-pkcs7" }],
      code: 11,
      step: "fetch-ca",
      reason: "reply-malformed",
    },
    {
      name: "/cacerts from another CA of the same names (the chain does not lead to the pinned root)",
      faults: [{ route: "est-cacerts", kind: "wrong-ca" }],
      code: 11,
      step: "fetch-ca",
      reason: "pin-mismatch",
    },
    {
      name: "the issued certificate not a PKCS#7",
      faults: [{ route: "est-enroll", kind: "malformed-pkcs7" }],
      code: 13,
      step: "submit-csr",
      reason: "reply-malformed",
    },
    {
      name: "a certificate issued by another CA of the same names",
      faults: [{ route: "est-enroll", kind: "wrong-ca" }],
      code: 14,
      step: "validate",
      reason: "cert-invalid",
    },
    {
      name: "/cacerts 200 with bytes that are not base64",
      faults: [{ route: "est-cacerts", kind: "garbage" }],
      code: 11,
      step: "fetch-ca",
      reason: "reply-malformed",
    },
    {
      name: "the server fails the enrollment (HTTP 500, plain text)",
      faults: [{ route: "est-enroll", kind: "500" }],
      code: 13,
      step: "submit-csr",
      reason: "platform-error",
    },
    {
      name: "the enrollment's reply cut off (the server may have issued)",
      faults: [{ route: "est-enroll", kind: "truncated" }],
      code: 75,
      step: "submit-csr",
      reason: "maybe-sent",
    },
  ];
  for (const c of cases) {
    it(`${c.name}: exit ${c.code}, nothing written`, async () => {
      const lab = await estLab({}, c.faults);
      try {
        const { out, pw } = await device(lab);
        const run = await enrollEst(lab, out, [
          "--username",
          "admin",
          "--password-file",
          pw,
          "--ca-fingerprint",
          lab.pin,
          "--json",
        ]);
        expect(run.code, run.stderr).toBe(c.code);
        expect(JSON.parse(run.stdout).error).toMatchObject({ step: c.step, reason: c.reason });
        expect(await listFiles(out)).toEqual([]);
      } finally {
        await lab.stop();
      }
    });
  }
});

describe.skipIf(!(haveTool("mosquitto") && haveTool("mosquitto_pub")))(
  "an EST identity at a broker (mosquitto, mutual TLS, the EST chain as its cafile)",
  () => {
    it("enroll --verify-broker passes, and mosquitto_pub takes the files as they are (the CA file holds the chain)", async () => {
      const lab = await estLab();
      const broker = await startBroker(lab.dir, { api: "est" });
      try {
        const { out, pw } = await device(lab);
        const topic = `${DEVICE}/attrs`;
        const run = await enrollEst(lab, out, [
          "--username",
          "admin",
          "--password-file",
          pw,
          "--ca-fingerprint",
          lab.pin,
          "--verify-broker",
          broker.url,
          "--topic",
          topic,
          "--broker-timeout",
          "5s",
        ]);
        expect(run.code, run.stderr).toBe(0);
        expect(run.stderr).toContain(`verify connack: accepted as client`);
        expect(run.stderr).toContain(`verify puback: published to '${topic}' with QoS 1`);
        const pub = spawnSync(
          "mosquitto_pub",
          [
            "-h",
            "localhost",
            "-p",
            String(broker.port),
            "-t",
            topic,
            "-m",
            "{}",
            "-q",
            "1",
            "--cafile",
            chainPath(out),
            "--cert",
            certPath(out),
            "--key",
            join(out, `${DEVICE}.key`),
          ],
          { encoding: "utf8", timeout: 10_000 },
        );
        expect(pub.status, pub.stderr).toBe(0);
        const verified = await runCli([
          "verify",
          "--broker",
          broker.url,
          "--device-id",
          DEVICE,
          "--out",
          out,
          "--topic",
          topic,
          "--broker-timeout",
          "5s",
        ]);
        expect(verified.code, verified.stderr).toBe(0);
      } finally {
        await broker.stop();
        await lab.stop();
      }
    });
  },
);
