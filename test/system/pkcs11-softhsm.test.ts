import { spawnSync } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.js";
import { enrollCli, listFiles, snapshot } from "../helpers/enroll.js";
import { type TestLab, tempDir } from "../helpers/lab.js";
import type { TestBroker } from "../helpers/mosquitto.js";
import { makeSoftToken, type TestToken } from "../helpers/softhsm.js";
import { startTokenWorld, type TokenWorld } from "../helpers/token-world.js";
import { haveTool, openssl } from "../helpers/tools.js";

const ready =
  haveTool("softhsm2-util") && haveTool("pkcs11-tool") && haveTool("mosquitto") && haveTool("mosquitto_pub");

describe.skipIf(!ready)(
  "keys in a PKCS#11 token (SoftHSM2): generated inside, CSR signed inside, never on disk",
  () => {
    let world: TokenWorld<TestToken>;
    let lab: TestLab;
    let token: TestToken;
    let broker: TestBroker;
    /** The CSRs the CLI sent, as PEM, newest last. */
    let csrs: string[];
    let proxy: { url: string };
    beforeAll(async () => {
      world = await startTokenWorld(() => makeSoftToken("device"));
      ({ lab, csrs, broker, token: token } = world);
      proxy = { url: world.url };
    });
    afterAll(async () => world?.stop());

    const keyUri = (extra = "") =>
      `pkcs11:token=${token.label}${extra}?module-path=${token.module}&pin-source=file:${token.pinFile}`;
    const enroll = (id: string, out: string, extra: string[] = [], env: Record<string, string> = {}, fault?: string) =>
      enrollCli(
        proxy.url,
        lab,
        id,
        out,
        ["--api", "dojot", "--key", keyUri(), ...extra],
        { ...token.env, ...env },
        fault,
      );

    for (const keyType of ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072"] as const) {
      it(`${keyType}: the token makes a non-extractable key, signs the CSR, and only the key's URI is stored`, async () => {
        const dir = await tempDir();
        const out = join(dir, "certs");
        const id = `f60c28${keyType.replace(/\D/g, "")}`;
        const run = await enroll(id, out, ["--key-type", keyType, "--json"]);
        expect(run.code, run.stderr).toBe(0);
        expect(run.stderr).toMatch(
          new RegExp(`generate-key.*${keyType} key generated in token 'device'.*never extractable`),
        );
        // The CSR the token signed: openssl checks its signature and key.
        const csr = csrs.at(-1)!;
        const csrFile = join(dir, "req.pem");
        await writeFile(csrFile, csr);
        expect(spawnSync("openssl", ["req", "-in", csrFile, "-noout", "-verify"], { encoding: "utf8" }).stderr).toMatch(
          /verify OK/,
        );
        // The certificate chains to the stored CA, and its key is the token's.
        expect(openssl("verify", "-CAfile", join(out, "IOTmidCA.crt"), join(out, `${id}.crt`)).trim()).toBe(
          `${join(out, `${id}.crt`)}: OK`,
        );
        const files = await listFiles(out);
        expect(files).toEqual([`${id}.crt`, `${id}.key.uri`, `${id}.settings.json`, "IOTmidCA.crt"].sort());
        const uri = (await readFile(join(out, `${id}.key.uri`), "utf8")).trim();
        expect(uri).toMatch(
          new RegExp(
            `^pkcs11:token=device;serial=[0-9a-f]+;object=${id};id=(%[0-9a-f]{2}){16};type=private\\?module-path=${token.module}&pin-source=file:`,
          ),
        );
        expect(JSON.parse(run.stdout).store.files.keyUri).toBe(join(out, `${id}.key.uri`));
        // The private key: in the token, sensitive, never extractable; nowhere on disk.
        const keys = token.privateKeys(id);
        expect(keys).toHaveLength(1);
        expect(keys[0]).toMatch(/Access:\s+sensitive, always sensitive, never extractable, local/);
        for (const name of await listFiles(dir)) {
          const text = await readFile(join(dir, name), "utf8").catch(() => "");
          expect(text).not.toMatch(/PRIVATE KEY/);
        }
        // The token's private key is the certificate's: it signs through OpenSSL's pkcs11 engine, the certificate's key verifies.
        const data = join(dir, "data");
        await writeFile(data, "proof of possession");
        const path = uri.replace(/\?.*$/, "");
        const sign = spawnSync(
          "openssl",
          [
            "dgst",
            "-sha256",
            "-engine",
            "pkcs11",
            "-keyform",
            "engine",
            "-sign",
            `${path};pin-value=${token.pin}`,
            "-out",
            join(dir, "sig"),
            data,
          ],
          { env: { ...process.env, ...token.env }, encoding: "utf8" },
        );
        expect(sign.status, sign.stderr).toBe(0);
        await writeFile(join(dir, "pub.pem"), openssl("x509", "-in", join(out, `${id}.crt`), "-noout", "-pubkey"));
        expect(
          openssl("dgst", "-sha256", "-verify", join(dir, "pub.pem"), "-signature", join(dir, "sig"), data).trim(),
        ).toBe("Verified OK");
      });
    }

    it("check reads the key's public part from the token (no PIN); verify and mosquitto_pub use the token key through OpenSSL's pkcs11 engine", async () => {
      const out = join(await tempDir(), "certs");
      expect((await enroll("a1b2c3", out, ["--key-type", "ec-p256"])).code).toBe(0);
      // check: the stored URI is enough, and it needs no PIN (public objects).
      const check = await runCli(["check", "--device-id", "a1b2c3", "--out", out], {
        env: { ...token.env, CERT_RETRIEVER_PKCS11_PIN: "wrong" },
      });
      expect(check.stderr).toMatch(/nothing to do: 'a1b2c3' has valid credentials/);
      expect(check.code).toBe(1);
      // status: the recorded URI as it is in the file, never a PIN; the token is not opened (no module or PIN given).
      const status = await runCli(["status", "--device-id", "a1b2c3", "--out", out]);
      expect([status.code, status.stderr]).toEqual([0, ""]);
      expect(status.stdout).toMatch(
        /^Key: +PKCS#11 token, pkcs11:token=[^ ]*;object=a1b2c3;[^ ]* \(recorded in .*a1b2c3\.key\.uri\)$/m,
      );
      // verify: mutual TLS with the key that never left the token.
      const verify = await runCli(
        [
          "verify",
          "--broker",
          broker.url,
          "--device-id",
          "a1b2c3",
          "--out",
          out,
          "--broker-timeout",
          "5s",
          "--topic",
          "a1b2c3/attrs",
        ],
        { env: token.env },
      );
      expect(verify.stderr).toMatch(/verify tls: TLSv1\.3/);
      expect(verify.stderr).toMatch(/verify connack: accepted/);
      expect(verify.code, verify.stderr).toBe(0);
      // mosquitto_pub with the same key through the engine (libmosquitto wants a file named like the key; the PIN from a relative pin-source).
      const uri = (await readFile(join(out, "a1b2c3.key.uri"), "utf8")).trim().replace(/\?.*$/, "");
      const cwd = token.dir;
      const engineKey = `${uri};pin-source=pin.txt`;
      await writeFile(join(cwd, "pin.txt"), token.pin, { mode: 0o600 }); // libp11 takes the file's bytes as they are: no newline
      await writeFile(join(cwd, engineKey), "");
      const pub = spawnSync(
        "mosquitto_pub",
        [
          "-h",
          "localhost",
          "-p",
          String(broker.port),
          "-t",
          "a1b2c3/attrs",
          "-m",
          "hi",
          "-q",
          "1",
          "--cafile",
          join(out, "IOTmidCA.crt"),
          "--cert",
          join(out, "a1b2c3.crt"),
          "--tls-engine",
          "pkcs11",
          "--keyform",
          "engine",
          "--key",
          engineKey,
        ],
        { cwd, env: { ...process.env, ...token.env }, encoding: "utf8" },
      );
      expect(pub.status, pub.stderr).toBe(0);
      // export: the certificate and chain, and the key's URI; the key never leaves the token (no PIN is asked).
      const copies = join(await tempDir(), "exported");
      const exported = await runCli(["export", "--device-id", "a1b2c3", "--out", out, "--to", copies, "--json"], {
        env: { ...token.env, CERT_RETRIEVER_PKCS11_PIN: "wrong" },
      });
      expect(exported.code, exported.stderr).toBe(0);
      expect(exported.stderr).toMatch(/the key stays in its PKCS#11 token \(pkcs11:token=[^ ]*;object=a1b2c3;/);
      expect(JSON.parse(exported.stdout)).toMatchObject({
        ok: true,
        command: "export",
        files: { keyUri: join(copies, "a1b2c3.key.uri") },
        keyInToken: expect.stringMatching(/^pkcs11:token=/),
      });
      expect(await listFiles(copies)).toEqual(["IOTmidCA.crt", "a1b2c3.crt", "a1b2c3.key.uri"]);
      expect(await readFile(join(copies, "a1b2c3.key.uri"), "utf8")).toBe(
        await readFile(join(out, "a1b2c3.key.uri"), "utf8"),
      );
    });

    it("a renewal makes a new key in the token, removes the one it replaced, and proves the new one at the broker (after the swap, for a token key)", async () => {
      const out = join(await tempDir(), "certs");
      expect((await enroll("b2c3d4", out, ["--key-type", "ec-p256"])).code).toBe(0);
      const before = await snapshot(out);
      const keys = () =>
        token
          .tool("--list-objects", "--type", "privkey")
          .split(/\n(?=Private Key Object)/)
          .filter((b) => /label:\s+b2c3d4\s*$/m.test(b)).length;
      expect(keys()).toBe(1);
      const renewed = await enroll("b2c3d4", out, [
        "--renew-before",
        "400d",
        "--verify-broker",
        broker.url,
        "--broker-timeout",
        "5s",
        "--topic",
        "b2c3d4/attrs",
        "--json",
      ]);
      expect(renewed.code, renewed.stderr).toBe(0);
      expect(renewed.stderr).toMatch(
        /\[8\/8\] store[\s\S]*removed the key 'b2c3d4'.*the new key replaces it[\s\S]*verify connack: accepted/,
      );
      expect(JSON.parse(renewed.stdout).verify).toBeDefined();
      expect((await snapshot(out))["b2c3d4.key.uri"]).not.toBe(before["b2c3d4.key.uri"]);
      expect(keys()).toBe(1);
    });

    it("--store-cert-in-token puts the certificate beside the key (same label and id); enrolling again replaces key and certificate", async () => {
      const out = join(await tempDir(), "certs");
      expect((await enroll("c0ffee", out, ["--store-cert-in-token"])).code).toBe(0);
      const first = (await readFile(join(out, "c0ffee.key.uri"), "utf8")).trim();
      const firstId = /id=((?:%[0-9a-f]{2})+)/.exec(first)![1]!.replace(/%/g, "");
      const certs = () =>
        token
          .tool("--list-objects", "--type", "cert")
          .split(/\n(?=Certificate Object)/)
          .filter((b) => /label:\s+c0ffee\s*$/m.test(b));
      expect(certs()).toHaveLength(1);
      expect(certs()[0]).toContain(`ID:         ${firstId}`);
      const again = await enroll("c0ffee", out, ["--store-cert-in-token", "--force"]);
      expect(again.code, again.stderr).toBe(0);
      const second = (await readFile(join(out, "c0ffee.key.uri"), "utf8")).trim();
      expect(second).not.toBe(first);
      // One key pair and one certificate: the replaced ones are gone.
      expect(token.privateKeys("c0ffee")).toHaveLength(1);
      expect(certs()).toHaveLength(1);
      expect(certs()[0]).toContain(`ID:         ${/id=((?:%[0-9a-f]{2})+)/.exec(second)![1]!.replace(/%/g, "")}`);
      expect(again.stderr).toMatch(
        /removed the key 'c0ffee' with id [0-9a-f]{32} in token 'device': the new key replaces it/,
      );
    });

    for (const point of ["after-generate-key", "after-submit-csr"]) {
      it(`killed (SIGKILL) ${point.replace("after-", "after ")}: the next run removes the orphan key and ends consistent`, async () => {
        const out = join(await tempDir(), "certs");
        const id = point === "after-generate-key" ? "dead01" : "dead02";
        const killed = await enroll(id, out, [], {}, `kill:${point}`);
        expect(killed.code).toBe(null);
        expect(token.privateKeys(id)).toHaveLength(1); // the orphan
        expect(await listFiles(out)).not.toContain(`${id}.key.uri`);
        expect((await readFile(join(out, `${id}.key.pending`), "utf8")).trim()).toMatch(
          new RegExp(`^pkcs11:token=device;serial=\\w+;object=${id};id=`),
        );
        const next = await enroll(id, out);
        expect(next.code, next.stderr).toBe(0);
        expect(next.stderr).toMatch(
          new RegExp(
            `removed the key '${id}' with id [0-9a-f]{32} in token 'device': an earlier run made it and stored no credentials with it`,
          ),
        );
        expect(token.privateKeys(id)).toHaveLength(1);
        expect(await listFiles(out)).not.toContain(`${id}.key.pending`);
        const check = await runCli(["check", "--device-id", id, "--out", out], { env: token.env });
        expect(check.code, check.stderr).toBe(1);
      });
    }

    it("only keys cert-retriever made are ever removed: not another tool's with the device's label, not another --out's; without --key the stored token is used again", async () => {
      const id = "5afe01";
      token.tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", id, "--id", "0102");
      const elsewhere = join(await tempDir(), "certs");
      expect((await enroll(id, elsewhere)).code).toBe(0);
      const out = join(await tempDir(), "certs");
      const first = await enroll(id, out);
      expect(first.code, first.stderr).toBe(0);
      expect(first.stderr).not.toMatch(/removed/);
      expect(token.privateKeys(id)).toHaveLength(3); // the other tool's, the other --out's, this one's
      // Enrolling again without --key: the next key is made in the same token, and only the replaced one goes.
      const firstUri = (await readFile(join(out, `${id}.key.uri`), "utf8")).trim();
      const again = await enrollCli(proxy.url, lab, id, out, ["--api", "dojot", "--force"], token.env);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stderr).toMatch(/generate-key: ec-p256 key generated in token 'device'/);
      expect(again.stderr).toMatch(
        new RegExp(
          `removed the key '${id}' with id ${/id=((?:%[0-9a-f]{2})+)/.exec(firstUri)![1]!.replace(/%/g, "")} in token 'device': the new key replaces it`,
        ),
      );
      expect(await listFiles(out)).toEqual(
        [`${id}.crt`, `${id}.key.uri`, `${id}.settings.json`, "IOTmidCA.crt"].sort(),
      );
      expect(token.privateKeys(id)).toHaveLength(3);
      expect(token.privateKeys(id).some((k) => /ID:\s+0102\b/.test(k))).toBe(true);
      expect((await runCli(["check", "--device-id", id, "--out", elsewhere], { env: token.env })).code).toBe(1);
    });
  },
);
