import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, lchown, lstat, mkdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { walkPath } from "../../src/fs/trusted-path.js";
import { runCli } from "../helpers/cli.js";
import { enrollCli, listFiles, snapshot } from "../helpers/enroll.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { issueLeaf, makeCa } from "../helpers/pki.js";
import { makeSoftToken } from "../helpers/softhsm.js";
import { haveRoot, haveTool } from "../helpers/tools.js";

/** The second local user the tests play, as root, with chown: a uid no account has. */
const OTHER = 4242;
const asRoot = haveRoot("the tests that play a second local user (chown to uid 4242)");
const canCompile = asRoot && haveTool("cc");
/** SoftHSM2's module by the path Debian's package links it from (a link: its target is checked too). */
const SOFTHSM_LINK = "/usr/lib/softhsm/libsofthsm2.so";

let lab: TestLab;
beforeAll(async () => {
  lab = await startTestLab();
});
afterAll(async () => lab?.stop());

/** Gives `paths` to the second user, as if that user had made them. */
async function giveToOther(...paths: string[]): Promise<void> {
  for (const p of paths) await lchown(p, OTHER, OTHER);
}

/** A TCP server that counts the connections made to it and closes each: a platform or broker that must never be reached. */
async function countingServer(): Promise<{
  url: (scheme: string) => string;
  count: () => number;
  close(): Promise<void>;
}> {
  let count = 0;
  const server = createServer((socket) => {
    count++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: (scheme) => `${scheme}://127.0.0.1:${port}`,
    count: () => count,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/**
 * A shared library whose constructor writes `marker` when it is loaded (dlopen runs it before
 * anything asks whether it is a PKCS#11 module): the code another user would have run as root.
 */
async function plantedModule(so: string, marker: string): Promise<void> {
  const source = `${so}.c`;
  await writeFile(
    source,
    `#include <stdio.h>\n__attribute__((constructor)) static void planted(void) {\n  FILE *f = fopen(${JSON.stringify(marker)}, "w");\n  if (f) { fputs("planted code ran\\n", f); fclose(f); }\n}\n`,
  );
  execFileSync("cc", ["-shared", "-fPIC", "-o", so, source]);
}

/** Credentials for `id` as another user would copy them in: a CA, a certificate, and a `.key.uri` naming `module`. */
async function plantCredentials(out: string, id: string, module: string): Promise<string[]> {
  const ca = await makeCa("IOTmidCA");
  const leaf = await issueLeaf(ca, id, [], "client");
  const files = [join(out, "IOTmidCA.crt"), join(out, `${id}.crt`), join(out, `${id}.key.uri`)];
  await writeFile(files[0]!, ca.pem);
  await writeFile(files[1]!, leaf.cert);
  // pin-value: so that verify reads no PIN before it opens the token (the attacker chooses what is in the file).
  await writeFile(
    files[2]!,
    `pkcs11:token=device;object=${id};id=%01;type=private?module-path=${module}&pin-value=1234\n`,
  );
  return files;
}

/** The failure a --json run printed on stdout. */
function failureOf(stdout: string): { reason: string; message: string; exitCode: number } {
  return JSON.parse(stdout).error;
}

/** check, verify and enroll of `id` with `out`, each refused; returns their runs. */
async function threeCommands(id: string, out: string, platform: string, broker: string) {
  await lab.addDevice(id);
  const check = await runCli(["check", "--device-id", id, "--out", out, "--json"]);
  const verify = await runCli(["verify", "--device-id", id, "--out", out, "--broker", broker, "--json"]);
  const enroll = await enrollCli(platform, lab, id, out, ["--json"]);
  return { check, verify, enroll };
}

describe.skipIf(!canCompile)(
  "a PKCS#11 module named in a file under --out runs only if no other user could have put it there",
  () => {
    it("another user's --out, with copied certificates and a .key.uri naming their .so: check, verify and enroll refuse it (storage-unsafe) and the .so never runs", async () => {
      const base = await tempDir();
      const home = join(base, "home");
      const out = join(home, "certs");
      await mkdir(out, { recursive: true, mode: 0o755 });
      const marker = join(base, "ran-as-root");
      const so = join(home, "evil.so");
      await plantedModule(so, marker);
      const files = await plantCredentials(out, "planted-dev", so);
      await giveToOther(home, out, so, ...files);
      const broker = await countingServer();
      try {
        const runs = await threeCommands("planted-dev", out, lab.url, broker.url("mqtts"));
        for (const [command, run] of Object.entries(runs)) {
          expect(existsSync(marker), `${command} ran the other user's module: ${run.stderr}`).toBe(false);
          expect(run.stderr, command).toMatch(
            new RegExp(
              `store failed: refusing the output directory ${out} because of ${home} on its path: it belongs to another user \\(uid ${OTHER}\\)`,
            ),
          );
          expect(failureOf(run.stdout).reason, command).toBe("storage-unsafe");
          expect(run.code, command).toBe(command === "check" ? 255 : 15);
        }
        expect(runs.enroll.stderr).not.toMatch(/\[1\/8\]/);
        expect(broker.count()).toBe(0);
      } finally {
        await broker.close();
      }
    });

    it("a root-owned --out whose .key.uri names a module in another user's directory: refused (pkcs11-module-untrusted, exit 30), and it never runs", async () => {
      const base = await tempDir();
      const home = join(base, "home");
      await mkdir(home, { mode: 0o755 });
      const marker = join(base, "ran-as-root");
      const so = join(home, "evil.so");
      await plantedModule(so, marker);
      await giveToOther(home, so);
      const out = join(base, "certs");
      await mkdir(out, { mode: 0o700 });
      await plantCredentials(out, "trusted-dev", so);
      const broker = await countingServer();
      try {
        const runs = await threeCommands("trusted-dev", out, lab.url, broker.url("mqtts"));
        for (const [command, run] of Object.entries(runs)) {
          expect(existsSync(marker), `${command} ran the other user's module: ${run.stderr}`).toBe(false);
          expect(run.stderr, command).toMatch(
            new RegExp(
              `token failed: refusing to load the PKCS#11 module ${so} \\(named by the stored key URI\\) because of ${home} on its path: it belongs to another user \\(uid ${OTHER}\\)`,
            ),
          );
          expect(failureOf(run.stdout).reason, command).toBe("pkcs11-module-untrusted");
          expect(run.code, command).toBe(command === "check" ? 255 : 30);
        }
        expect(broker.count()).toBe(0);
      } finally {
        await broker.close();
      }
    });

    it("a module file that another user owns, or that group or others can write, is refused too, though its directories are root's", async () => {
      const base = await tempDir();
      const marker = join(base, "ran-as-root");
      const so = join(base, "evil.so");
      await plantedModule(so, marker);
      const out = join(base, "certs");
      await mkdir(out, { mode: 0o700 });
      await plantCredentials(out, "module-dev", so);
      await giveToOther(so);
      const owned = await runCli(["check", "--device-id", "module-dev", "--out", out]);
      expect(owned.stderr).toMatch(
        new RegExp(
          `refusing to load the PKCS#11 module ${so} \\(named by the stored key URI\\): it belongs to another user \\(uid ${OTHER}\\)`,
        ),
      );
      await lchown(so, 0, 0);
      await chmod(so, 0o775);
      const writable = await runCli(["check", "--device-id", "module-dev", "--out", out]);
      expect(writable.stderr).toMatch(/\(named by the stored key URI\): other users can write it \(mode 775\)/);
      expect(existsSync(marker)).toBe(false);
    });

    it("the control: the same module, root's in root's directory, does load (its constructor runs) and is then found not to be a PKCS#11 module", async () => {
      const base = await tempDir();
      const marker = join(base, "ran-as-root");
      const so = join(base, "plain.so");
      await plantedModule(so, marker);
      const out = join(base, "certs");
      await mkdir(out, { mode: 0o700 });
      await plantCredentials(out, "control-dev", so);
      const run = await runCli(["check", "--device-id", "control-dev", "--out", out, "--json"]);
      expect(await readFile(marker, "utf8")).toBe("planted code ran\n");
      expect(failureOf(run.stdout).reason).toBe("pkcs11-module-missing");
      expect(run.stderr).toMatch(/is not a PKCS#11 module that loads here/);
    });

    it("a credentials file that is a symbolic link, or another user's, in a trusted --out: refused (storage-unsafe) before it is read", async () => {
      const base = await tempDir();
      const marker = join(base, "ran-as-root");
      const so = join(base, "elsewhere", "evil.so");
      await mkdir(join(base, "elsewhere"), { mode: 0o755 });
      await plantedModule(so, marker);
      const theirs = join(base, "elsewhere", "key.uri");
      await writeFile(theirs, `pkcs11:token=device;object=link-dev;id=%01?module-path=${so}\n`);
      const out = join(base, "certs");
      await mkdir(out, { mode: 0o700 });
      const [, , keyUri] = await plantCredentials(out, "link-dev", so);
      await giveToOther(keyUri!);
      const foreign = await runCli(["check", "--device-id", "link-dev", "--out", out]);
      expect(foreign.stderr).toMatch(
        new RegExp(`store failed: refusing ${keyUri}: it belongs to another user \\(uid ${OTHER}\\)`),
      );
      await rm(keyUri!);
      await symlink(theirs, keyUri!);
      const linked = await runCli(["check", "--device-id", "link-dev", "--out", out, "--json"]);
      expect(linked.stderr).toMatch(new RegExp(`store failed: refusing ${keyUri}: it is a symbolic link`));
      expect(failureOf(linked.stdout).reason).toBe("storage-unsafe");
      expect(existsSync(marker)).toBe(false);
    });
  },
);

describe.skipIf(!haveTool("softhsm2-util"))("a module named in a root-trusted .key.uri still loads", () => {
  it("enroll into a token through SoftHSM2's linked path, then check and enroll again read the .key.uri and use the token", async () => {
    const token = await makeSoftToken("device");
    try {
      const out = join(await tempDir(), "certs");
      await lab.addDevice("hsm-dev");
      const key = `pkcs11:token=device?module-path=${SOFTHSM_LINK}&pin-source=file:${token.pinFile}`;
      const enrolled = await enrollCli(lab.url, lab, "hsm-dev", out, ["--key", key], token.env);
      expect(enrolled.code, enrolled.stderr).toBe(0);
      expect(await readFile(join(out, "hsm-dev.key.uri"), "utf8")).toContain(`module-path=${SOFTHSM_LINK}`);
      const check = await runCli(["check", "--device-id", "hsm-dev", "--out", out], { env: token.env });
      expect(check.stderr).toMatch(/nothing to do: 'hsm-dev' has valid credentials/);
      expect(check.code).toBe(1);
      const again = await enrollCli(lab.url, lab, "hsm-dev", out, [], token.env);
      expect(again.stderr).toMatch(/already has valid credentials/);
      expect(again.code, again.stderr).toBe(0);
    } finally {
      await token.stop();
    }
  });
});

/** A tree as the second user plants it: `base/atk` is theirs, `base/atk/out` a link of theirs to root's `base/victim`. */
async function plantedParentLink(id: string): Promise<{ base: string; atk: string; out: string; victim: string }> {
  const base = await tempDir();
  const victim = join(base, "victim");
  await mkdir(victim, { mode: 0o700 });
  await writeFile(join(victim, `${id}.crt`), "root's own certificate\n", { mode: 0o644 });
  await writeFile(join(victim, `${id}.key`), "root's own key\n", { mode: 0o600 });
  const atk = join(base, "atk");
  await mkdir(atk, { mode: 0o755 });
  const out = join(atk, "out");
  await symlink(victim, out);
  await giveToOther(atk, out);
  return { base, atk, out, victim };
}

describe.skipIf(!asRoot)("writes never follow a link another user planted on the way to --out", () => {
  it("the second user owns base/atk and links atk/out to root's base/victim: enroll --out atk/out is refused (exit 15) before any request, naming base/atk; the victim's files stay", async () => {
    const { atk, out, victim } = await plantedParentLink("victim-dev");
    const before = await snapshot(victim);
    await lab.addDevice("victim-dev");
    const run = await enrollCli(lab.url, lab, "victim-dev", out);
    expect(run.stderr).toMatch(
      new RegExp(
        `store failed: refusing the output directory ${out} because of ${atk} on its path: it belongs to another user \\(uid ${OTHER}\\)`,
      ),
    );
    expect(run.code).toBe(15);
    expect(run.stderr).not.toMatch(/\[1\/8\]/);
    expect(await snapshot(victim)).toEqual(before);
    // The platform issued nothing: the device enrolls into a directory of root's.
    const fresh = await enrollCli(lab.url, lab, "victim-dev", join(await tempDir(), "certs"));
    expect(fresh.code, fresh.stderr).toBe(0);
  });

  it("check (which keeps the CRL and the CA mark in --out) refuses the same --out", async () => {
    const { atk, out, victim } = await plantedParentLink("check-dev");
    const before = await snapshot(victim);
    const run = await runCli(["check", "--device-id", "check-dev", "--out", out, "--json"]);
    expect(run.stderr).toMatch(new RegExp(`refusing the output directory ${out} because of ${atk} on its path`));
    expect(failureOf(run.stdout).reason).toBe("storage-unsafe");
    expect(run.code).toBe(255);
    expect(await snapshot(victim)).toEqual(before);
  });

  it("the keychain store's lock directory is walked the same way", async () => {
    const { atk, out, victim } = await plantedParentLink("chain-dev");
    const before = await listFiles(victim);
    const run = await enrollCli(lab.url, lab, "chain-dev", out, ["--store", "keychain"]);
    expect(run.stderr).toMatch(new RegExp(`refusing the output directory ${out} because of ${atk} on its path`));
    expect(run.code).toBe(15);
    expect(await listFiles(victim)).toEqual(before);
  });

  it("login refuses a --token-file whose directory another user owns, before any request", async () => {
    const { atk } = await plantedParentLink("login-dev");
    const platform = await countingServer();
    try {
      const tokenFile = join(atk, "token");
      const run = await runCli(
        [
          "login",
          "--platform",
          platform.url("http"),
          "--api",
          "dojot",
          "--username",
          "admin",
          "--password-stdin",
          "--token-file",
          tokenFile,
        ],
        { input: `${lab.password}\n` },
      );
      expect(run.stderr).toMatch(
        new RegExp(`refusing the token file ${tokenFile} because of ${atk} on its path: it belongs to another user`),
      );
      expect(run.code).toBe(15);
      expect(platform.count()).toBe(0);
      expect(existsSync(tokenFile)).toBe(false);
    } finally {
      await platform.close();
    }
  });

  it("an --out in a sticky directory, inside another user's directory there: refused, naming theirs", async () => {
    const sticky = await tempDir();
    await chmod(sticky, 0o1777);
    const theirs = join(sticky, "theirs");
    await mkdir(join(theirs, "certs"), { recursive: true, mode: 0o755 });
    await giveToOther(theirs);
    await lab.addDevice("sticky-dev");
    const run = await enrollCli(lab.url, lab, "sticky-dev", join(theirs, "certs"));
    expect(run.stderr).toMatch(new RegExp(`because of ${theirs} on its path: it belongs to another user`));
    expect(run.code).toBe(15);
    expect(await listFiles(join(theirs, "certs"))).toEqual([]);
  });

  it("an --out that is a link: accepted when the link and its target pass, refused when the target does not", async () => {
    const base = await tempDir();
    const real = join(base, "real");
    await mkdir(real, { mode: 0o700 });
    await symlink(real, join(base, "good"));
    await lab.addDevice("link-ok");
    const good = await enrollCli(lab.url, lab, "link-ok", join(base, "good"));
    expect(good.code, good.stderr).toBe(0);
    expect(await listFiles(real)).toEqual(["IOTmidCA.crt", "link-ok.crt", "link-ok.key", "link-ok.settings.json"]);

    const elsewhere = join(base, "elsewhere");
    await mkdir(elsewhere, { mode: 0o755 });
    await giveToOther(elsewhere);
    await symlink(elsewhere, join(base, "bad"));
    const bad = await enrollCli(lab.url, lab, "link-ok", join(base, "bad"), ["--force"]);
    expect(bad.stderr).toMatch(
      new RegExp(
        `refusing the output directory ${join(base, "bad")} because of ${elsewhere} \\(through the link ${join(base, "bad")}\\) on its path: it belongs to another user`,
      ),
    );
    expect(bad.code).toBe(15);
    expect(await listFiles(elsewhere)).toEqual([]);
  });
});

describe("the path walk: every directory from / down must be root's or ours and writable by no one else", () => {
  it("/tmp (sticky, writable by all) as a parent is fine; as the directory itself it is not", async () => {
    const dir = await tempDir();
    expect(await walkPath(dir, { expect: "directory" })).toEqual({ real: dir, exists: true, created: [] });
    const tmp = await walkPath(tmpdir(), { expect: "directory" });
    expect(tmp.problem).toEqual({
      path: tmpdir(),
      reason: expect.stringMatching(/other users can write it \(mode 1777\)/),
    });
  });

  it("missing directories are reported missing, or made 0700 one at a time when asked", async () => {
    const dir = await tempDir();
    const deep = join(dir, "a", "b");
    expect(await walkPath(deep, { expect: "directory" })).toEqual({ real: deep, exists: false, created: [] });
    expect(await walkPath(deep, { expect: "directory", create: true })).toEqual({
      real: deep,
      exists: true,
      created: [join(dir, "a"), deep],
    });
    expect((await lstat(deep)).mode & 0o7777).toBe(0o700);
  });

  it("a directory group or others can write (not sticky) is refused, and nothing is made below it", async () => {
    const dir = await tempDir();
    await mkdir(join(dir, "open"), { mode: 0o777 });
    await chmod(join(dir, "open"), 0o775);
    const walk = await walkPath(join(dir, "open", "certs"), { expect: "directory", create: true });
    expect(walk.problem).toEqual({ path: join(dir, "open"), reason: "other users can write it (mode 775)" });
    expect(walk.created).toEqual([]);
    expect(existsSync(join(dir, "open", "certs"))).toBe(false);
  });

  it("links are followed, and their targets walked from /; a loop is refused", async () => {
    const dir = await tempDir();
    await mkdir(join(dir, "real", "sub"), { recursive: true, mode: 0o700 });
    await symlink("real/sub/../sub", join(dir, "rel"));
    expect(await walkPath(join(dir, "rel"), { expect: "directory" })).toEqual({
      real: join(dir, "real", "sub"),
      exists: true,
      created: [],
    });
    await symlink(join(dir, "loop-b"), join(dir, "loop-a"));
    await symlink(join(dir, "loop-a"), join(dir, "loop-b"));
    const loop = await walkPath(join(dir, "loop-a"), { expect: "directory" });
    expect(loop.problem?.reason).toMatch(/too many symbolic links/);
  });

  it("a file is judged as a file: a regular file of root's or ours, writable by no one else", async () => {
    const dir = await tempDir();
    const file = join(dir, "module.so");
    await writeFile(file, "", { mode: 0o644 });
    expect(await walkPath(file, { expect: "file" })).toEqual({ real: file, exists: true, created: [] });
    await chmod(file, 0o666);
    expect((await walkPath(file, { expect: "file" })).problem).toEqual({
      path: file,
      reason: "other users can write it (mode 666)",
    });
    expect((await walkPath(dir, { expect: "file" })).problem).toEqual({
      path: dir,
      reason: "it is not a regular file",
    });
  });

  it.skipIf(!asRoot)(
    "a sticky directory whose next component is another user's is refused at that component",
    async () => {
      const sticky = await tempDir();
      await chmod(sticky, 0o1777);
      await mkdir(join(sticky, "theirs", "certs"), { recursive: true, mode: 0o755 });
      await giveToOther(join(sticky, "theirs"));
      expect((await walkPath(join(sticky, "theirs", "certs"), { expect: "directory" })).problem).toEqual({
        path: join(sticky, "theirs"),
        reason: `it belongs to another user (uid ${OTHER})`,
      });
      // A link of theirs there is refused as a link, before it is followed.
      await symlink(await tempDir(), join(sticky, "link"));
      await giveToOther(join(sticky, "link"));
      expect((await walkPath(join(sticky, "link"), { expect: "directory" })).problem).toEqual({
        path: join(sticky, "link"),
        reason: `it belongs to another user (uid ${OTHER})`,
      });
    },
  );

  it.skipIf(!asRoot)("a link whose target fails names the target and the link that led there", async () => {
    const { atk, out } = await plantedParentLink("walk-dev");
    expect((await walkPath(out, { expect: "directory" })).problem).toEqual({
      path: atk,
      reason: `it belongs to another user (uid ${OTHER})`,
    });
    const base = await tempDir();
    const theirs = join(base, "theirs");
    await mkdir(theirs, { mode: 0o755 });
    await giveToOther(theirs);
    await symlink(theirs, join(base, "link"));
    expect((await walkPath(join(base, "link"), { expect: "directory" })).problem).toEqual({
      path: theirs,
      reason: `it belongs to another user (uid ${OTHER})`,
      via: join(base, "link"),
    });
  });
});
