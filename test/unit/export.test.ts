// `cert-retriever export`: copies of the stored credentials from whichever store holds them, into
// --to; --out means what it means for every command (where the credentials are). The keychain and a
// token key need a real Secret Service and SoftHSM2: test/system/keychain.test.ts and pkcs11-softhsm.test.ts.
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.js";
import { enrollCli, listFiles, snapshot } from "../helpers/enroll.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { openssl } from "../helpers/tools.js";

let lab: TestLab;
beforeAll(async () => {
  lab = await startTestLab({ autoRegister: true });
});
afterAll(async () => lab.stop());

/** A device enrolled into files in a fresh --out. */
async function enrolled(id: string): Promise<string> {
  const out = join(await tempDir(), "certs");
  const run = await enrollCli(lab.url, lab, id, out);
  expect(run.code, run.stderr).toBe(0);
  return out;
}

describe("export from a files store", () => {
  it("copies the files as the store keeps them into --to (directory 0700, key 0600), the same bytes, and says so", async () => {
    const out = await enrolled("ex1");
    const to = join(await tempDir(), "copies");
    const run = await runCli(["export", "--device-id", "ex1", "--out", out, "--to", to]);
    expect([run.code, run.stdout]).toEqual([0, ""]);
    expect(run.stderr).toBe(`exported 'ex1' from ${out} (PEM): ${to}/ex1.key, ${to}/ex1.crt, ${to}/IOTmidCA.crt\n`);
    expect(await listFiles(to)).toEqual(["IOTmidCA.crt", "ex1.crt", "ex1.key"]);
    expect((await stat(to)).mode & 0o777).toBe(0o700);
    expect((await stat(join(to, "ex1.key"))).mode & 0o777).toBe(0o600);
    for (const f of ["IOTmidCA.crt", "ex1.crt", "ex1.key"])
      expect(await readFile(join(to, f), "utf8"), f).toBe(await readFile(join(out, f), "utf8"));
  });

  it("--format der: the key as PKCS#8 DER, the certificate as DER, the CA chain as PKCS#7, as openssl reads them", async () => {
    const out = await enrolled("ex2");
    const to = join(await tempDir(), "der");
    const run = await runCli(["export", "--device-id", "ex2", "--out", out, "--to", to, "--format", "der", "--json"]);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({
      ok: true,
      command: "export",
      deviceId: "ex2",
      from: { kind: "files", location: out },
      format: "der",
      files: { dir: to, ca: `${to}/IOTmidCA.p7b`, certificate: `${to}/ex2.crt.der`, key: `${to}/ex2.key.der` },
    });
    expect(await listFiles(to)).toEqual(["IOTmidCA.p7b", "ex2.crt.der", "ex2.key.der"]);
    expect((await stat(join(to, "ex2.key.der"))).mode & 0o777).toBe(0o600);
    const pem = (args: string[]) => openssl(...args).replace(/\r/g, "");
    expect(pem(["x509", "-inform", "DER", "-in", join(to, "ex2.crt.der")])).toBe(
      await readFile(join(out, "ex2.crt"), "utf8"),
    );
    expect(pem(["pkey", "-inform", "DER", "-in", join(to, "ex2.key.der"), "-pubout"])).toBe(
      pem(["x509", "-in", join(out, "ex2.crt"), "-noout", "-pubkey"]),
    );
    const chain = pem(["pkcs7", "-inform", "DER", "-in", join(to, "IOTmidCA.p7b"), "-print_certs"]);
    expect(chain.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g)!.join("\n")).toBe(
      (await readFile(join(out, "IOTmidCA.crt"), "utf8")).trim(),
    );
  });

  it("the store comes from the settings recorded in --out: a keychain device is read from the keychain, even without --store", async () => {
    const out = await enrolled("ex3");
    const record = join(out, "ex3.settings.json");
    const recorded = JSON.parse(await readFile(record, "utf8"));
    await writeFile(record, JSON.stringify({ ...recorded, settings: { ...recorded.settings, store: "keychain" } }), {
      mode: 0o600,
    });
    // Without a Secret Service (the unit tests') reading fails (15); with one, it holds nothing for ex3 (16): the keychain was asked.
    const run = await runCli(["export", "--device-id", "ex3", "--out", out, "--to", join(await tempDir(), "c")]);
    expect([15, 16], run.stderr).toContain(run.code);
    expect(run.stderr).toMatch(/^cert-retriever: .*the OS keychain/m);
  });

  it("--to where the credentials are is refused (exit 2), and nothing changes", async () => {
    const out = await enrolled("ex4");
    const before = await snapshot(out);
    const run = await runCli(["export", "--device-id", "ex4", "--out", out, "--to", `${out}/.`]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(
      /^cert-retriever: --to .* is where the credentials are stored: export writes its copies elsewhere$/m,
    );
    expect(await snapshot(out)).toEqual(before);
  });

  it("no --to: a usage error (exit 2) naming both flags, before anything is read", async () => {
    const run = await runCli(["export", "--device-id", "ex5"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^cert-retriever: export needs --to DIR/m);
    expect(run.stderr).toMatch(/hint: --out names where the device's credentials are .*, --to where the copies go/);
  });

  it("no complete credentials: exit 16 with a hint to enroll or to name the store, and nothing written in --to", async () => {
    const out = await enrolled("ex6");
    const to = join(await tempDir(), "copies");
    const none = await runCli(["export", "--device-id", "ex7", "--out", out, "--to", to]);
    expect(none.code).toBe(16);
    expect(none.stderr).toMatch(/export failed: no complete credentials for 'ex7' in /);
    expect(none.stderr).toMatch(
      /hint: enroll first, or name where the device's credentials are with --out and --store/,
    );
    expect(await stat(to).catch(() => "absent")).toBe("absent");
  });

  it("the old form, export --out DIR without --to, still copies the keychain's credentials into DIR, with a note", async () => {
    const dir = join(await tempDir(), "old");
    const run = await runCli(["export", "--device-id", "ex8", "--out", dir]);
    expect(run.stderr).toMatch(
      /^note: 'export --out DIR' is deprecated and will be removed: it copies the keychain's credentials into DIR, as before; write --store keychain --to /m,
    );
    expect([15, 16], run.stderr).toContain(run.code); // the keychain was asked (see above)
    expect(run.stderr).toMatch(/^cert-retriever: .*the OS keychain/m);
  });
});
