import { spawn } from "node:child_process";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readEstIssued, startLab } from "../../lab/src/server.js";
import { sha256Fingerprint } from "../../src/flows/certificate.js";
import { softwareCrypto } from "../../src/keys/provider.js";
import { assertNoSecrets, commandLine, runCli } from "../helpers/cli.js";
import { listFiles } from "../helpers/enroll.js";
import { labDir, startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { haveTool, openssl } from "../helpers/tools.js";

const ready = haveTool("dbus-run-session") && haveTool("gnome-keyring-daemon");

/**
 * Runs CLI invocations inside one D-Bus session with a real gnome-keyring, unlocked, its keyring
 * files in `home` (so a later session reads what an earlier one stored). Returns each run's result.
 */
async function inKeyringSession(
  home: string,
  runs: Array<{ args: string[]; input?: string; env?: Record<string, string>; fault?: string }>,
): Promise<Array<{ code: number; stdout: string; stderr: string }>> {
  const dir = await tempDir("cr-kr-");
  const lines = [
    "set -u",
    `export HOME='${home}'`,
    `eval "$(printf 'keyring-pass' | gnome-keyring-daemon --unlock --components=secrets)"`,
    "export SSH_AUTH_SOCK=/dev/null",
  ];
  runs.forEach((run, i) => {
    if (run.input !== undefined) lines.push(`cat > '${dir}/in${i}' <<'CR_EOF'\n${run.input}\nCR_EOF`);
    const quoted = commandLine(run.args, { fault: run.fault })
      .map((a) => `'${a}'`)
      .join(" ");
    const env = Object.entries(run.env ?? {})
      .map(([k, v]) => `${k}='${v}' `)
      .join("");
    lines.push(
      `${env}'${process.execPath}' ${quoted} < ${run.input !== undefined ? `'${dir}/in${i}'` : "/dev/null"} > '${dir}/out${i}' 2> '${dir}/err${i}'; echo $? > '${dir}/code${i}'`,
    );
  });
  await mkdir(home, { recursive: true });
  await writeFile(join(dir, "session.sh"), `${lines.join("\n")}\n`);
  const child = spawn("dbus-run-session", ["--", "bash", join(dir, "session.sh")], {
    stdio: "ignore",
    env: { PATH: process.env.PATH ?? "" },
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  await new Promise((resolve) => child.on("close", resolve));
  clearTimeout(timer);
  return Promise.all(
    runs.map(async (_, i) => {
      const [code, stdout, stderr] = await Promise.all(
        ["code", "out", "err"].map((f) => readFile(join(dir, `${f}${i}`), "utf8").catch(() => "")),
      );
      assertNoSecrets(`${stdout}${stderr}`, runs[i]!.args);
      return { code: Number(code), stdout: stdout!, stderr: stderr! };
    }),
  );
}

describe.skipIf(!ready)("--store keychain against a real gnome-keyring (Secret Service)", () => {
  let lab: TestLab;
  beforeAll(async () => {
    lab = await startTestLab({ autoRegister: true });
  });
  afterAll(async () => lab.stop());

  it("enrolls into the keychain, check sees it, a second session reads it back, export writes files openssl accepts", async () => {
    const home = join(await tempDir(), "home");
    const lockDir = join(await tempDir(), "lock");
    const identity = ["--device-id", "kc-1", "--store", "keychain", "--out", lockDir];
    const [enrolled, checked, again] = await inKeyringSession(home, [
      {
        args: ["enroll", "--platform", lab.url, "--username", "admin", "--password-stdin", ...identity, "--json"],
        input: lab.password,
      },
      { args: ["check", ...identity] },
      {
        args: ["enroll", "--platform", lab.url, "--username", "admin", "--password-stdin", ...identity],
        input: lab.password,
      },
    ]);
    expect(enrolled!.code, enrolled!.stderr).toBe(0);
    expect(JSON.parse(enrolled!.stdout).store).toMatchObject({ kind: "keychain" });
    expect(checked!.code, checked!.stderr).toBe(1);
    expect(again!.stderr).toMatch(/already has valid credentials in the OS keychain/);
    // The lock came and went; no credential touched the disk there, only the settings the enrollment used.
    expect(await listFiles(lockDir)).toEqual(["kc-1.settings.json"]);

    const exported = join(await tempDir(), "exported");
    const [checkedLater, described, exportRun] = await inKeyringSession(home, [
      { args: ["check", ...identity] },
      { args: ["status", ...identity] },
      // No --store: the settings recorded in --out say the keychain holds kc-1.
      { args: ["export", "--device-id", "kc-1", "--out", lockDir, "--to", exported, "--json"] },
    ]);
    expect(checkedLater!.code, checkedLater!.stderr).toBe(1);
    expect([described!.code, described!.stderr]).toEqual([0, ""]);
    expect(described!.stdout).toMatch(/^Key: +OS keychain, service cert-retriever, account kc-1\/key$/m);
    expect(await listFiles(lockDir)).toEqual(["kc-1.settings.json"]); // status reads: no lock, no CRL, nothing written
    expect(exportRun!.code, exportRun!.stderr).toBe(0);
    expect(JSON.parse(exportRun!.stdout)).toMatchObject({ ok: true, command: "export", from: { kind: "keychain" } });
    expect(await listFiles(lockDir)).toEqual(["kc-1.settings.json"]); // the copies went to --to only
    expect(await listFiles(exported)).toEqual(["IOTmidCA.crt", "kc-1.crt", "kc-1.key"]);
    expect((await stat(exported)).mode & 0o777).toBe(0o700);
    expect((await stat(join(exported, "kc-1.key"))).mode & 0o777).toBe(0o600);
    expect(openssl("verify", "-CAfile", join(exported, "IOTmidCA.crt"), join(exported, "kc-1.crt"))).toMatch(/: OK/);
    expect(openssl("pkey", "-in", join(exported, "kc-1.key"), "-pubout")).toBe(
      openssl("x509", "-in", join(exported, "kc-1.crt"), "-noout", "-pubkey"),
    );
  });

  it("a renewal re-keys in the keychain and revokes the replaced certificate (x509-identity-mgmt)", async () => {
    const x509Lab = await startTestLab({ autoRegister: true, api: "x509" });
    try {
      const home = join(await tempDir(), "home");
      const identity = ["--device-id", "abc123", "--store", "keychain", "--out", join(await tempDir(), "lock")];
      const [first, second] = [join(await tempDir(), "first"), join(await tempDir(), "second")];
      const login = ["--platform", x509Lab.url, "--username", "admin", "--password-stdin"];
      const [enrolled, exported1, renewed, exported2] = await inKeyringSession(home, [
        { args: ["enroll", ...login, ...identity, "--json"], input: x509Lab.password },
        { args: ["export", ...identity, "--to", first] },
        // A window wider than the lifetime: due now.
        { args: ["enroll", ...login, ...identity, "--renew-before", "400d", "--json"], input: x509Lab.password },
        { args: ["export", ...identity, "--to", second] },
      ]);
      for (const run of [enrolled, exported1, renewed, exported2]) expect(run!.code, run!.stderr).toBe(0);
      expect(JSON.parse(renewed!.stdout).previous).toMatchObject({
        sha256Fingerprint: JSON.parse(enrolled!.stdout).sha256Fingerprint,
        revoked: "revoked",
      });
      expect(await readFile(join(second, "abc123.key"), "utf8")).not.toBe(
        await readFile(join(first, "abc123.key"), "utf8"),
      );
      expect(openssl("pkey", "-in", join(second, "abc123.key"), "-pubout")).toBe(
        openssl("x509", "-in", join(second, "abc123.crt"), "-noout", "-pubkey"),
      );
    } finally {
      await x509Lab.stop();
    }
  });

  it("EST: enrolls into the keychain with the CA pinned, then re-enrolls over mutual TLS with the keychain's key and no password", async () => {
    const estDir = await labDir("cr-kr-est-");
    const est = await startLab({
      dir: estDir,
      host: "127.0.0.1",
      port: 0,
      crypto: softwareCrypto(),
      certProfile: "open",
      autoRegister: false,
      adminPassword: lab.password,
      tokenLifetime: 420,
      api: "est",
    });
    try {
      const home = join(await tempDir(), "home");
      const pin = `sha256:${sha256Fingerprint(est.estCa!.root.cert)}`;
      const identity = [
        "--api",
        "est",
        "--platform",
        est.estUrl!,
        "--device-id",
        "kc-est",
        "--store",
        "keychain",
        "--out",
        join(await tempDir(), "lock"),
        "--non-interactive",
        "--json",
      ];
      const [enrolled, renewed] = await inKeyringSession(home, [
        {
          args: ["enroll", ...identity, "--username", "admin", "--password-stdin", "--ca-fingerprint", pin],
          input: lab.password,
        },
        { args: ["enroll", ...identity, "--renew-before", "400d"] },
      ]);
      expect(enrolled!.code, enrolled!.stderr).toBe(0);
      expect(renewed!.code, renewed!.stderr).toBe(0);
      const serial = JSON.parse(enrolled!.stdout).serialNumber as string;
      expect(JSON.parse(renewed!.stdout).previous).toMatchObject({ serialNumber: serial, revoked: "kept" });
      const issued = await readEstIssued(estDir);
      expect(issued.map((r) => r.auth)).toEqual(["basic:admin", `reenroll:${serial}`]);
    } finally {
      await est.close();
    }
  });

  it("a failure in the middle of the keychain write puts the previous entries back", async () => {
    const home = join(await tempDir(), "home");
    const lockDir = join(await tempDir(), "lock");
    const identity = ["--device-id", "kc-2", "--store", "keychain", "--out", lockDir];
    const exportedBefore = join(await tempDir(), "before");
    const exportedAfter = join(await tempDir(), "after");
    const enrollArgs = ["enroll", "--platform", lab.url, "--username", "admin", "--password-stdin", ...identity];
    const [first, before, , faulty, after] = await inKeyringSession(home, [
      { args: enrollArgs, input: lab.password },
      // The form before --to: --out was the destination, and the keychain the source.
      { args: ["export", "--device-id", "kc-2", "--out", exportedBefore] },
      { args: ["lab", "device", "reset", "--dir", lab.dir, "kc-2"] },
      { args: [...enrollArgs, "--force"], input: lab.password, fault: "keychain:set-2" },
      { args: ["export", ...identity, "--to", exportedAfter] },
    ]);
    expect(first!.code, first!.stderr).toBe(0);
    expect(before!.code, before!.stderr).toBe(0);
    expect(before!.stderr).toMatch(/^note: 'export --out DIR' is deprecated .*write --store keychain --to /m);
    expect(after!.code, after!.stderr).toBe(0);
    expect(faulty!.code).toBe(15);
    expect(faulty!.stderr).toMatch(
      /writing to the keychain failed: injected fault at keychain:set-2; the previous entries are unchanged/,
    );
    for (const f of ["IOTmidCA.crt", "kc-2.crt", "kc-2.key"]) {
      expect(await readFile(join(exportedAfter, f), "utf8")).toBe(await readFile(join(exportedBefore, f), "utf8"));
    }
  });

  it("export of a device the keychain does not hold is its own case (exit 16, enroll first), not a storage failure", async () => {
    const [run] = await inKeyringSession(join(await tempDir(), "home"), [
      { args: ["export", "--device-id", "kc-unknown", "--store", "keychain", "--to", join(await tempDir(), "x")] },
    ]);
    expect(run!.stderr).toMatch(/export failed: no complete credentials for 'kc-unknown' in the OS keychain/);
    expect(run!.code).toBe(16);
  });

  it("without a Secret Service the keychain is a clear error (exit 15 with a hint), never a silent fallback", async () => {
    const run = await runCli(
      [
        "enroll",
        "--platform",
        lab.url,
        "--username",
        "admin",
        "--password-stdin",
        "--device-id",
        "kc-none",
        "--store",
        "keychain",
        "--out",
        join(await tempDir(), "l"),
      ],
      { input: lab.password, env: { DBUS_SESSION_BUS_ADDRESS: "unix:path=/nonexistent" } },
    );
    expect(run.code).toBe(15);
    expect(run.stderr).toMatch(/cannot read the OS keychain/);
    expect(run.stderr).toMatch(/Secret Service .* must run on the session bus/);
  });
});
