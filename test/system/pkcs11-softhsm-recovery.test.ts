import { execFileSync, spawn } from "node:child_process";
import { mkdir, readdir, readFile, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BIN, runCli } from "../helpers/cli.js";
import { enrollCli, listFiles, snapshot } from "../helpers/enroll.js";
import { type TestLab, tempDir } from "../helpers/lab.js";
import type { TestBroker } from "../helpers/mosquitto.js";
import { makeSoftToken, type TestToken } from "../helpers/softhsm.js";
import { Terminal } from "../helpers/terminal.js";
import { startTokenWorld, type TokenWorld } from "../helpers/token-world.js";
import { haveTool } from "../helpers/tools.js";

const ready =
  haveTool("softhsm2-util") && haveTool("pkcs11-tool") && haveTool("mosquitto") && haveTool("mosquitto_pub");

describe.skipIf(!ready)(
  "keys in a PKCS#11 token (SoftHSM2): failed and killed writes, locks, PINs at a terminal and from systemd",
  () => {
    let world: TokenWorld<TestToken>;
    let lab: TestLab;
    let token: TestToken;
    let broker: TestBroker;
    let proxy: { url: string };
    beforeAll(async () => {
      world = await startTokenWorld(() => makeSoftToken("device"));
      ({ lab, broker, token: token } = world);
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

    it("a key file replaced by a token key: a write that fails after removing the key file puts every file back, and the new token key goes", async () => {
      const id = "5a1c01";
      const out = join(await tempDir(), "certs");
      expect((await enrollCli(proxy.url, lab, id, out, ["--api", "dojot"])).code).toBe(0);
      const before = await snapshot(out);
      expect(Object.keys(before)).toContain(`${id}.key`);
      const failed = await enroll(id, out, ["--force"], {}, "store:other-kind-removed");
      expect(failed.stderr).toMatch(/the previous files are unchanged/);
      expect(failed.code).toBe(15);
      expect(await snapshot(out)).toEqual(before);
      expect(token.privateKeys(id)).toHaveLength(0);
      const switched = await enroll(id, out, ["--force"]);
      expect(switched.code, switched.stderr).toBe(0);
      expect(await listFiles(out)).toEqual(
        [`${id}.crt`, `${id}.key.uri`, `${id}.settings.json`, "IOTmidCA.crt"].sort(),
      );
    });

    it("a run killed mid-write, then a run without --key: the write is finished first, and the key stays in the token", async () => {
      const id = "5a1c02";
      const out = join(await tempDir(), "certs");
      expect((await enroll(id, out)).code).toBe(0);
      const killed = await enroll(id, out, ["--force"], {}, "kill:store:renamed-2");
      expect(killed.code).toBe(null);
      const next = await enrollCli(proxy.url, lab, id, out, ["--api", "dojot", "--force"], token.env);
      expect(next.code, next.stderr).toBe(0);
      expect(next.stderr).toMatch(/completed a write that an earlier run committed/);
      expect(next.stderr).toMatch(/generate-key: ec-p256 key generated in token 'device'/);
      expect(await listFiles(out)).toEqual(
        [`${id}.crt`, `${id}.key.uri`, `${id}.settings.json`, "IOTmidCA.crt"].sort(),
      );
      expect(token.privateKeys(id)).toHaveLength(1);
      expect((await runCli(["check", "--device-id", id, "--out", out], { env: token.env })).code).toBe(1);
    });

    it("a listed key in another token than this run's stays listed until a run with that token removes it", async () => {
      execFileSync(
        "softhsm2-util",
        ["--init-token", "--free", "--label", "other", "--pin", token.pin, "--so-pin", "87654321"],
        { env: { ...process.env, ...token.env }, stdio: "ignore" },
      );
      const id = "5a1c03";
      const out = join(await tempDir(), "certs");
      expect((await enroll(id, out, [], {}, "kill:after-generate-key")).code).toBe(null);
      const listed = (await readFile(join(out, `${id}.key.pending`), "utf8")).trim();
      const other = await enrollCli(
        proxy.url,
        lab,
        id,
        out,
        ["--api", "dojot", "--key", `pkcs11:token=other?module-path=${token.module}&pin-source=file:${token.pinFile}`],
        token.env,
      );
      expect(other.code, other.stderr).toBe(0);
      expect(other.stderr).toMatch(
        new RegExp(`the key '${id}' with id [0-9a-f]{32} in token 'device' is not in token 'other' .*, so it stays`),
      );
      expect((await readFile(join(out, `${id}.key.pending`), "utf8")).trim()).toBe(listed);
      expect(token.privateKeys(id)).toHaveLength(1);
      const back = await enroll(id, out, ["--force"]);
      expect(back.code, back.stderr).toBe(0);
      expect(back.stderr).toMatch(
        new RegExp(`removed the key '${id}' with id [0-9a-f]{32} in token 'device': an earlier run made it`),
      );
      expect(token.privateKeys(id)).toHaveLength(1); // this run's
      // The key it replaced is in token 'other': listed now, for a run with that token to remove.
      expect(back.stderr).toMatch(
        new RegExp(
          `the key '${id}' with id [0-9a-f]{32} in token 'other' is not in token 'device' .*, so it stays \\(the new key replaces it\\)`,
        ),
      );
      expect((await readFile(join(out, `${id}.key.pending`), "utf8")).trim()).toMatch(/^pkcs11:token=other;/);
    });

    it("verify leaves no PIN file, and removes one a killed check left over a minute ago (a fresh one is another run's)", async () => {
      const id = "5a1c04";
      const out = join(await tempDir(), "certs");
      expect((await enroll(id, out)).code).toBe(0);
      const runtime = await tempDir();
      const [old, fresh] = [join(runtime, "cert-retriever-pin-old"), join(runtime, "cert-retriever-pin-fresh")];
      for (const dir of [old, fresh]) {
        await mkdir(dir, { mode: 0o700 });
        await writeFile(join(dir, "pin"), "left", { mode: 0o600 });
      }
      const aMinuteAgo = new Date(Date.now() - 120_000);
      await utimes(old, aMinuteAgo, aMinuteAgo);
      const verify = await runCli(
        ["verify", "--broker", broker.url, "--device-id", id, "--out", out, "--broker-timeout", "5s"],
        { env: { ...token.env, XDG_RUNTIME_DIR: runtime } },
      );
      expect(verify.code, verify.stderr).toBe(0);
      expect((await readdir(runtime)).filter((name) => name.startsWith("cert-retriever-pin-"))).toEqual([
        "cert-retriever-pin-fresh",
      ]);
    });

    it("wrong PIN: exit 32 before the platform is asked, the PIN never shown; missing token: 31; missing module: 30; pin-value on argv: 2", async () => {
      const out = join(await tempDir(), "certs");
      const wrong = await enrollCli(
        proxy.url,
        lab,
        "bad001",
        out,
        ["--key", `pkcs11:token=device?module-path=${token.module}`],
        { ...token.env, CERT_RETRIEVER_PKCS11_PIN: "999999" },
      );
      expect(wrong.stderr).toMatch(
        /token failed: token 'device' refused the PIN from CERT_RETRIEVER_PKCS11_PIN: CKR_PIN_INCORRECT/,
      );
      expect(wrong.stderr).not.toContain("999999");
      expect(wrong.stderr).not.toMatch(/authenticate/);
      expect(wrong.code).toBe(32);
      expect(await listFiles(out)).toEqual([]);
      const missing = await enrollCli(
        proxy.url,
        lab,
        "bad002",
        out,
        ["--key", `pkcs11:token=nosuch?module-path=${token.module}`],
        { ...token.env, CERT_RETRIEVER_PKCS11_PIN: token.pin },
      );
      expect(missing.stderr).toMatch(/token failed: no token matching token=nosuch is present in/);
      expect(missing.code).toBe(31);
      const noModule = await enrollCli(
        proxy.url,
        lab,
        "bad003",
        out,
        ["--key", "pkcs11:token=device?module-path=/usr/lib/nosuch-pkcs11.so"],
        { ...token.env, CERT_RETRIEVER_PKCS11_PIN: token.pin },
      );
      expect(noModule.stderr).toMatch(/token failed: the PKCS#11 module \/usr\/lib\/nosuch-pkcs11\.so cannot be read/);
      expect(noModule.code).toBe(30);
      const onArgv = await enrollCli(
        proxy.url,
        lab,
        "bad004",
        out,
        ["--key", `pkcs11:token=device?module-path=${token.module}&pin-value=${token.pin}`],
        token.env,
      );
      expect(onArgv.stderr).toMatch(/the key URI carries pin-value=, which is refused on the command line/);
      expect(onArgv.code).toBe(2);
      const noPin = await enrollCli(
        proxy.url,
        lab,
        "bad005",
        out,
        ["--key", `pkcs11:token=device?module-path=${token.module}`, "--non-interactive"],
        token.env,
      );
      expect(noPin.stderr).toMatch(/token failed: no PIN for token 'device'/);
      expect(noPin.code).toBe(2);
    });

    it("two runs against one token are kept apart by a lock, whatever their --out: the second waits, then stops with exit 75", async () => {
      const runtime = await tempDir();
      const env = { XDG_RUNTIME_DIR: runtime };
      expect((await enroll("10c001", join(await tempDir(), "certs"), [], env)).code).toBe(0);
      const [userDir] = await readdir(runtime);
      const [tokenDir] = await readdir(join(runtime, userDir!));
      const holder = spawn(process.execPath, ["-e", "setTimeout(() => {}, 20000)"]);
      try {
        await writeFile(join(runtime, userDir!, tokenDir!, ".cert-retriever.lock"), `${holder.pid}\n`);
        const out = join(await tempDir(), "certs");
        const run = await enroll("10c002", out, [], env);
        expect(run.stderr).toMatch(
          new RegExp(`lock failed: another cert-retriever run \\(pid ${holder.pid}\\) is using token 'device'`),
        );
        expect(run.code).toBe(75);
        expect(token.privateKeys("10c002")).toHaveLength(0);
      } finally {
        holder.kill();
      }
    });

    it.skipIf(!haveTool("tmux"))(
      "at a terminal the PIN is asked for, masked, before the platform; a wrong one is asked again, and the third is exit 32",
      async () => {
        const dir = await tempDir();
        await writeFile(join(dir, "pw"), lab.password, { mode: 0o600 });
        const args = `enroll --platform '${proxy.url}' --api dojot --device-id 7e7e01 --username admin --password-file pw --out certs --key 'pkcs11:token=device?module-path=${token.module}'`;
        const env = `env -i PATH='${process.env.PATH}' HOME='${dir}' TERM=xterm-256color SOFTHSM2_CONF='${token.env.SOFTHSM2_CONF}'`;
        await writeFile(
          join(dir, "run.sh"),
          `cd '${dir}' && ${env} '${process.execPath}' '${BIN}' ${args}; echo "EXIT=$?"; ${env} '${process.execPath}' '${BIN}' ${args}; echo "EXIT=$?"; sleep 60\n`,
          { mode: 0o700 },
        );
        const term = new Terminal(join(dir, "run.sh"));
        try {
          await term.waitFor(/PIN for token 'device':/);
          expect(term.screen()).not.toMatch(/authenticate/); // the token first
          term.type(token.pin);
          // The event: the prompt has echoed every key typed (one mask character each).
          const typed = await term.waitFor(new RegExp(`PIN for token 'device': \\*{${token.pin.length}}`));
          expect(typed).not.toContain(token.pin);
          term.send("Enter");
          const done = await term.waitFor(/EXIT=\d+/);
          expect(done).toMatch(/enrolled device '7e7e01'/);
          expect(done).toMatch(/EXIT=0/);
          // The second run: a wrong PIN, three times (it is asked again twice, as the password is).
          await term.waitFor(/EXIT=0[\s\S]*PIN for token 'device':/);
          for (const attempt of [2, 3, undefined]) {
            term.type("000000");
            term.send("Enter");
            if (attempt !== undefined) await term.waitFor(new RegExp(`try again \\(${attempt} of 3\\)`));
          }
          const wrong = await term.waitFor(/EXIT=0[\s\S]*EXIT=\d+/);
          expect(wrong).toMatch(/token 'device' refused the PIN from the PIN typed: CKR_PIN_INCORRECT/);
          expect(wrong).toMatch(/EXIT=32/);
          expect(wrong).not.toContain(token.pin);
        } finally {
          term.close();
        }
      },
    );

    it("the PIN as the systemd credential 'pin'; the key and the module from --key and --pkcs11-module, or from the config file", async () => {
      const out = join(await tempDir(), "certs");
      const creds = await tempDir();
      await writeFile(join(creds, "pin"), token.pin, { mode: 0o600 });
      const run = await enrollCli(
        proxy.url,
        lab,
        "beef01",
        out,
        ["--key", "pkcs11:token=device", "--pkcs11-module", token.module],
        { ...token.env, CREDENTIALS_DIRECTORY: creds },
      );
      expect(run.code, run.stderr).toBe(0);
      expect(token.privateKeys("beef01")).toHaveLength(1);
      const config = join(creds, "config.json");
      await writeFile(config, JSON.stringify({ key: "pkcs11:token=device", pkcs11Module: token.module }), {
        mode: 0o600,
      });
      const fromConfig = await enrollCli(
        proxy.url,
        lab,
        "beef02",
        join(await tempDir(), "certs"),
        ["--config", config, "--api", "dojot"],
        { ...token.env, CREDENTIALS_DIRECTORY: creds },
      );
      expect(fromConfig.stderr).toMatch(/generate-key: ec-p256 key generated in token 'device'/);
      expect(fromConfig.code, fromConfig.stderr).toBe(0);
      expect(token.privateKeys("beef02")).toHaveLength(1);
    });
  },
);
