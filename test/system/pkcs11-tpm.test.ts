import { spawnSync } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.js";
import { enrollCli, listFiles } from "../helpers/enroll.js";
import { type TestLab, tempDir } from "../helpers/lab.js";
import type { TestBroker } from "../helpers/mosquitto.js";
import { startTokenWorld, type TokenWorld } from "../helpers/token-world.js";
import { haveTool, openssl } from "../helpers/tools.js";
import { startTpm, type TestTpm } from "../helpers/tpm.js";

const ready = ["swtpm", "tpm2-abrmd", "tpm2_dictionarylockout", "dbus-daemon", "pkcs11-tool", "mosquitto"].every(
  (tool) => haveTool(tool),
);

describe.skipIf(!ready)(
  "keys in a TPM 2.0 (swtpm through tpm2-pkcs11): the same code path as any PKCS#11 token",
  () => {
    let world: TokenWorld<TestTpm>;
    let lab: TestLab;
    let tpm: TestTpm;
    let broker: TestBroker;
    /** The CSRs the CLI sent, as PEM, newest last. */
    let csrs: string[];
    let proxy: { url: string };
    beforeAll(async () => {
      world = await startTokenWorld(() => startTpm("tpm"));
      ({ lab, csrs, broker, token: tpm } = world);
      proxy = { url: world.url };
    });
    afterAll(async () => world?.stop());

    const keyUri = () => `pkcs11:token=${tpm.label}?module-path=${tpm.module}&pin-source=file:${tpm.pinFile}`;

    for (const keyType of ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072"] as const) {
      it(`${keyType}: generated in the TPM, never extractable; the CSR the TPM signed verifies; the certificate chains; check finds the key; verify does mutual TLS with it`, async () => {
        const dir = await tempDir();
        const out = join(dir, "certs");
        const id = `7e00${["ec-p256", "ec-p384", "rsa-2048", "rsa-3072"].indexOf(keyType) + 1}0`;
        const run = await enrollCli(
          proxy.url,
          lab,
          id,
          out,
          ["--api", "dojot", "--key", keyUri(), "--key-type", keyType],
          tpm.env,
        );
        expect(run.code, run.stderr).toBe(0);
        expect(run.stderr).toMatch(
          new RegExp(`generate-key: ${keyType} key generated in token 'tpm' \\(${tpm.module}\\), never extractable`),
        );
        await writeFile(join(dir, "req.pem"), csrs.at(-1)!);
        expect(
          spawnSync("openssl", ["req", "-in", join(dir, "req.pem"), "-noout", "-verify"], { encoding: "utf8" }).stderr,
        ).toMatch(/verify OK/);
        expect(openssl("verify", "-CAfile", join(out, "IOTmidCA.crt"), join(out, `${id}.crt`)).trim()).toBe(
          `${join(out, `${id}.crt`)}: OK`,
        );
        expect(await listFiles(out)).toEqual(
          [`${id}.crt`, `${id}.key.uri`, `${id}.settings.json`, "IOTmidCA.crt"].sort(),
        );
        const keys = tpm
          .tool("--list-objects", "--type", "privkey")
          .split(/\n(?=Private Key Object)/)
          .filter((b) => new RegExp(`label:\\s+${id}\\s*$`, "m").test(b));
        expect(keys).toHaveLength(1);
        expect(keys[0]).toMatch(/Access:\s+sensitive, always sensitive, never extractable, local/);
        const check = await runCli(["check", "--device-id", id, "--out", out], { env: tpm.env });
        expect(check.stderr).toMatch(/nothing to do/);
        expect(check.code).toBe(1);
        // The CSR's key is the certificate's, and the certificate's is the TPM's (check compared it with the token's public key).
        expect(openssl("req", "-in", join(dir, "req.pem"), "-noout", "-pubkey")).toBe(
          openssl("x509", "-in", join(out, `${id}.crt`), "-noout", "-pubkey"),
        );
        expect((await readFile(join(out, `${id}.key.uri`), "utf8")).trim()).toMatch(
          /^pkcs11:token=tpm;serial=[^;]+;object=7e00\d0;id=(%[0-9a-f]{2}){16};type=private\?/,
        );
        // Mutual TLS with the TPM key, through OpenSSL's pkcs11 engine inside Node.
        const verify = await runCli(
          ["verify", "--broker", broker.url, "--device-id", id, "--out", out, "--broker-timeout", "5s"],
          { env: tpm.env },
        );
        expect(verify.stderr).toMatch(new RegExp(`verify connack: accepted as client '${id}'`));
        expect(verify.code, verify.stderr).toBe(0);
      });
    }

    it("rsa-4096, which a TPM cannot make: exit 12 naming the token's answer, nothing written, no key left", async () => {
      const out = join(await tempDir(), "certs");
      const run = await enrollCli(
        proxy.url,
        lab,
        "7e0050",
        out,
        ["--api", "dojot", "--key", keyUri(), "--key-type", "rsa-4096"],
        tpm.env,
      );
      expect(run.stderr).toMatch(
        /generate-key failed: token 'tpm' cannot make a rsa-4096 key: CKR_ATTRIBUTE_VALUE_INVALID/,
      );
      expect(run.code).toBe(12);
      expect(await listFiles(out)).toEqual([]);
      expect(tpm.tool("--list-objects")).not.toMatch(/label:\s+7e0050/);
    });

    it("wrong PIN: exit 32; once the TPM's dictionary-attack protection locks: exit 33; the PIN is never shown", async () => {
      const out = join(await tempDir(), "certs");
      const bare = `pkcs11:token=${tpm.label}?module-path=${tpm.module}`;
      const wrong = await enrollCli(proxy.url, lab, "7e0003", out, ["--api", "dojot", "--key", bare], {
        ...tpm.env,
        CERT_RETRIEVER_PKCS11_PIN: "000000",
      });
      expect(wrong.stderr).toMatch(
        /token failed: token 'tpm' refused the PIN from CERT_RETRIEVER_PKCS11_PIN: CKR_PIN_INCORRECT/,
      );
      expect(wrong.code).toBe(32);
      // Lockout after one failure, as a TPM configured strictly would be.
      tpm.tpm2(
        "tpm2_dictionarylockout",
        "--setup-parameters",
        "--max-tries=1",
        "--recovery-time=600",
        "--lockout-recovery-time=600",
      );
      try {
        await enrollCli(proxy.url, lab, "7e0003", out, ["--api", "dojot", "--key", bare], {
          ...tpm.env,
          CERT_RETRIEVER_PKCS11_PIN: "000000",
        });
        const locked = await enrollCli(proxy.url, lab, "7e0003", out, ["--api", "dojot", "--key", bare], {
          ...tpm.env,
          CERT_RETRIEVER_PKCS11_PIN: tpm.pin,
        });
        expect(locked.stderr).toMatch(/CKR_PIN_LOCKED/);
        expect(locked.code).toBe(33);
        expect(`${locked.stdout}${locked.stderr}`).not.toContain(tpm.pin);
      } finally {
        tpm.tpm2("tpm2_dictionarylockout", "--clear-lockout");
        tpm.tpm2(
          "tpm2_dictionarylockout",
          "--setup-parameters",
          "--max-tries=4294967295",
          "--recovery-time=0",
          "--lockout-recovery-time=0",
        );
      }
      expect(await listFiles(out)).toEqual([]);
    });
  },
);
