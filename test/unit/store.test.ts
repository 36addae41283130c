import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import {
  chmod,
  copyFile,
  lchown,
  lstat,
  mkdir,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { enrollCli, listFiles, snapshot } from "../helpers/enroll.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { haveRoot, openssl } from "../helpers/tools.js";

let lab: TestLab;
beforeAll(async () => {
  lab = await startTestLab();
});
afterAll(async () => lab.stop());

/** Enrolls `id` once so that valid credentials exist, then resets it on the platform. */
async function enrolledOnce(id: string): Promise<string> {
  await lab.addDevice(id);
  const out = join(await tempDir(), "certs");
  const run = await enrollCli(lab.url, lab, id, out);
  expect(run.code, run.stderr).toBe(0);
  await lab.resetDevice(id);
  return out;
}

describe("credentials that already exist survive any failed run", () => {
  it("a run refused by the platform (--force, a wrong end-entity password) leaves them byte for byte", async () => {
    const out = await enrolledOnce("keep-1");
    const wrong = join(await tempDir(), "entity-password");
    await writeFile(wrong, "not-the-entity-password", { mode: 0o600 });
    const before = await snapshot(out);
    const run = await enrollCli(lab.url, lab, "keep-1", out, ["--force", "--entity-password-file", wrong]);
    expect(run.code, run.stderr).toBe(13);
    expect(await snapshot(out)).toEqual(before);
  });

  for (const fault of ["store:staged", "store:renamed-1", "store:renamed-2", "store:renamed-3"]) {
    it(`a failure in the middle of the write (${fault}) puts every previous file back: exit 15`, async () => {
      const out = await enrolledOnce(`keep-${fault}`);
      const id = `keep-${fault}`;
      const before = await snapshot(out);
      const run = await enrollCli(lab.url, lab, id, out, ["--force"], {}, fault);
      expect(run.stderr).toMatch(
        /store failed: writing the credentials in .* failed: injected fault at .*; the previous files are unchanged/,
      );
      expect(run.code).toBe(15);
      expect(await snapshot(out)).toEqual(before);
      expect(openssl("verify", "-CAfile", join(out, "IOTmidCA.crt"), join(out, `${id}.crt`))).toMatch(/: OK/);
    });
  }

  it("a failure in the middle of a first write leaves no file and no directory", async () => {
    await lab.addDevice("first-fault");
    const out = join(await tempDir(), "deep", "certs");
    const run = await enrollCli(lab.url, lab, "first-fault", out, [], {}, "store:renamed-2");
    expect(run.code).toBe(15);
    expect(existsSync(join(out, ".."))).toBe(false);
  });

  it("an output directory that already exists keeps its other files", async () => {
    await lab.addDevice("shared-dir");
    const out = await tempDir();
    await writeFile(join(out, "other.txt"), "mine");
    const run = await enrollCli(lab.url, lab, "shared-dir", out, [], {}, "store:renamed-1");
    expect(run.code).toBe(15);
    expect(await listFiles(out)).toEqual(["other.txt"]);
  });
});

describe("a lock keeps two runs on one directory apart", () => {
  it("a run while another holds the lock stops with exit 75 and names the holder", async () => {
    const out = await tempDir();
    const holder = spawn(process.execPath, ["-e", "setTimeout(() => {}, 20000)"]);
    try {
      await writeFile(join(out, ".cert-retriever.lock"), `${holder.pid}\n`);
      await lab.addDevice("locked");
      const run = await enrollCli(lab.url, lab, "locked", out);
      expect(run.code).toBe(75);
      expect(run.stderr).toMatch(new RegExp(`another cert-retriever run \\(pid ${holder.pid}\\) is using`));
      expect(await readdir(out)).toEqual([".cert-retriever.lock"]);
    } finally {
      holder.kill();
    }
  });

  it("a lock left by a process that is gone is taken over, and released at the end", async () => {
    const out = await tempDir();
    const gone = spawn(process.execPath, ["-e", "0"]);
    await new Promise((resolve) => gone.on("close", resolve));
    await writeFile(join(out, ".cert-retriever.lock"), `${gone.pid}\n`);
    await lab.addDevice("stale");
    const run = await enrollCli(lab.url, lab, "stale", out);
    expect(run.code, run.stderr).toBe(0);
    expect(await listFiles(out)).toEqual(["IOTmidCA.crt", "stale.crt", "stale.key", "stale.settings.json"]);
  });

  it("a lock whose pid is alive but started at another time (the pid was reused) is stale, and so is one holding our own pid (containers: both pid 1)", async () => {
    const boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    // pid 1 is alive, but not the process that took this lock: its start time says so.
    const reused = await tempDir();
    await writeFile(join(reused, ".cert-retriever.lock"), `1 ${boot} 999999999999\n`);
    await lab.addDevice("reused-pid");
    const run = await enrollCli(lab.url, lab, "reused-pid", reused);
    expect(run.code, run.stderr).toBe(0);
    // Our own pid (in-process, as a library or a container's pid 1 would be): not another run.
    const own = await tempDir();
    await writeFile(join(own, ".cert-retriever.lock"), `${process.pid} ${boot}\n`);
    const { acquireLock } = await import("../../src/fs/lock.js");
    const release = await acquireLock(own, 0); // no wait: a lock held by a live other run would throw (exit 75)
    await release();
    expect(await readdir(own)).toEqual([]);
  });
});

/** uid and gid of `nobody`: the other user that tests play, as root, with chown. */
const NOBODY = 65534;
const asRoot = haveRoot("the tests that play another local user (chown to nobody)");

/** Gives `paths` to `nobody`, as if that user had made them. */
async function giveToNobody(...paths: string[]): Promise<void> {
  for (const p of paths) await lchown(p, NOBODY, NOBODY);
}

/** A file of root's outside every output directory, which no run may ever replace. */
async function rootsFile(): Promise<string> {
  const victim = join(await tempDir(), "cr-victim");
  await writeFile(victim, "root's own file\n", { mode: 0o600 });
  return victim;
}

/** A staging directory `name` in `dir` as a killed run leaves it: `new-<i>` files and a COMMIT mark. */
async function plantStaging(
  dir: string,
  name: string,
  mark: unknown,
  files: string[] = ["planted\n"],
): Promise<string> {
  const staging = join(dir, name);
  await mkdir(staging, { recursive: true });
  for (const [i, text] of files.entries()) await writeFile(join(staging, `new-${i}`), text);
  await writeFile(join(staging, "COMMIT"), JSON.stringify(mark));
  return staging;
}

describe("crash recovery moves only our own staged files, onto this store's own files in --out", () => {
  it.skipIf(!asRoot)(
    "an --out another user owns, with their staging directory naming a file elsewhere: exit 15 before any request, nothing moved",
    async () => {
      const victim = await rootsFile();
      const out = await tempDir();
      const staging = await plantStaging(out, ".staging-x", [victim]);
      await giveToNobody(out, staging, join(staging, "new-0"), join(staging, "COMMIT"));
      await lab.addDevice("planted");
      const run = await enrollCli(lab.url, lab, "planted", out);
      expect(run.stderr).toMatch(
        /store failed: refusing the output directory .*: it belongs to another user \(uid 65534\)/,
      );
      expect(run.code).toBe(15);
      expect(run.stderr).not.toMatch(/\[1\/8\]|completed a write/);
      expect(await readFile(victim, "utf8")).toBe("root's own file\n");
      expect((await stat(victim)).uid).toBe(0);
      expect(await listFiles(out)).toEqual([".staging-x", ".staging-x/COMMIT", ".staging-x/new-0"]);
    },
  );

  it("an --out that group or others can write is refused (exit 15), and so is a new --out made in such a directory; a sticky one like /tmp is fine", async () => {
    for (const mode of [0o777, 0o770, 0o1777]) {
      const out = await tempDir();
      await chmod(out, mode);
      await lab.addDevice("open-dir");
      const run = await enrollCli(lab.url, lab, "open-dir", out);
      expect(run.stderr).toMatch(
        new RegExp(
          `store failed: refusing the output directory ${out}: other users can write it \\(mode ${mode.toString(8)}\\)`,
        ),
      );
      expect(run.code).toBe(15);
      expect(await readdir(out)).toEqual([]);
    }
    const open = await tempDir();
    await chmod(open, 0o777);
    const refused = await enrollCli(lab.url, lab, "open-dir", join(open, "deep", "certs"));
    expect(refused.stderr).toMatch(
      new RegExp(
        `store failed: refusing to create the output directory in ${open}: other users can write it \\(mode 777\\)`,
      ),
    );
    expect(refused.code).toBe(15);
    expect(await readdir(open)).toEqual([]);
    const sticky = await tempDir();
    await chmod(sticky, 0o1777);
    const made = await enrollCli(lab.url, lab, "open-dir", join(sticky, "certs"));
    expect(made.code, made.stderr).toBe(0);
    expect((await stat(join(sticky, "certs"))).mode & 0o777).toBe(0o700);
  });

  it("a commit mark naming a file outside --out, or not one of this device's files, is refused: the staging directory is left alone", async () => {
    const victim = await rootsFile();
    const out = await tempDir();
    await plantStaging(out, ".staging-abs", [victim]);
    await plantStaging(out, ".staging-up", ["../cr-up"]);
    await plantStaging(out, ".staging-other", ["IOTmidCA.crt", "someone-else.crt"], ["ca\n", "cert\n"]);
    const before = await snapshot(out);
    await lab.addDevice("confined");
    const run = await enrollCli(lab.url, lab, "confined", out);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).not.toMatch(/completed a write/);
    expect(
      run.stderr.match(
        /left .*\.staging-(abs|up|other).* alone: its commit mark names files that are not this device's/g,
      ),
    ).toHaveLength(3);
    expect(await readFile(victim, "utf8")).toBe("root's own file\n");
    expect(existsSync(join(out, "..", "cr-up"))).toBe(false);
    const after = await snapshot(out);
    for (const name of Object.keys(before)) expect(after[name], name).toBe(before[name]);
    expect(openssl("verify", "-CAfile", join(out, "IOTmidCA.crt"), join(out, "confined.crt"))).toMatch(/: OK/);
  });

  it.skipIf(!asRoot)(
    "staging entries that are symbolic links, or that another user owns, are never followed, moved or removed",
    async () => {
      const victim = await rootsFile();
      const out = await tempDir();
      // Another user's staging directory naming this device's own certificate.
      const theirs = await plantStaging(out, ".staging-theirs", [join(out, "own.crt")]);
      await giveToNobody(theirs, join(theirs, "new-0"), join(theirs, "COMMIT"));
      // Our staging directory, but the staged file in it is another user's.
      const mixed = await plantStaging(out, ".staging-mixed", ["own.crt"]);
      await giveToNobody(join(mixed, "new-0"));
      // A link to a directory of ours elsewhere whose mark names root's file.
      const elsewhere = await plantStaging(await tempDir(), "staged", [victim]);
      await symlink(elsewhere, join(out, ".staging-link"));
      const before = await snapshot(out);
      await lab.addDevice("own");
      const run = await enrollCli(lab.url, lab, "own", out);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).not.toMatch(/completed a write|removed an unfinished write/);
      expect(run.stderr).toMatch(/ignored .*\.staging-theirs.*: it is not a staging directory of this user's/);
      expect(run.stderr).toMatch(/ignored .*\.staging-link.*: it is not a staging directory of this user's/);
      expect(run.stderr).toMatch(/left .*\.staging-mixed.* alone: it holds a file that is not this user's/);
      expect(await readFile(victim, "utf8")).toBe("root's own file\n");
      expect(await listFiles(elsewhere)).toEqual(["COMMIT", "new-0"]);
      expect((await lstat(join(out, ".staging-link"))).isSymbolicLink()).toBe(true);
      const after = await snapshot(out);
      for (const name of Object.keys(before)) expect(after[name], name).toBe(before[name]);
      expect(openssl("verify", "-CAfile", join(out, "IOTmidCA.crt"), join(out, "own.crt"))).toMatch(/: OK/);
    },
  );

  it("a commit mark written by the previous version (absolute paths) still completes when the paths are exactly this store's files", async () => {
    await lab.addDevice("legacy-mark");
    const out = join(await tempDir(), "certs");
    expect((await enrollCli(lab.url, lab, "legacy-mark", out)).code).toBe(0);
    await lab.resetDevice("legacy-mark");
    const enrolled = await snapshot(out);
    // Killed after renaming the CA: the certificate and the key are still staged.
    const staging = join(out, ".staging-old");
    await mkdir(staging, { mode: 0o700 });
    await copyFile(join(out, "legacy-mark.crt"), join(staging, "new-1"));
    await copyFile(join(out, "legacy-mark.key"), join(staging, "new-2"));
    await rm(join(out, "legacy-mark.crt"));
    await writeFile(
      join(staging, "COMMIT"),
      JSON.stringify(["IOTmidCA.crt", "legacy-mark.crt", "legacy-mark.key"].map((n) => join(out, n))),
    );
    const run = await enrollCli(lab.url, lab, "legacy-mark", out);
    expect(run.stderr).toMatch(/completed a write that an earlier run committed/);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/already has valid credentials/);
    expect(await snapshot(out)).toEqual(enrolled);
  });
});

describe("file names: each name is one file of one kind, and fits the file system", () => {
  const refused: Array<[string, string, string[], RegExp]> = [
    [
      "a device id equal to the CA name (its certificate would overwrite the CA's)",
      "IOTmidCA",
      [],
      /the device id and the CA name are both "IOTmidCA"/,
    ],
    [
      "a CA name equal to the device id",
      "dev-a",
      ["--ca-name", "dev-a"],
      /the device id and the CA name are both "dev-a"/,
    ],
    [
      "a device id that looks like an unfinished write",
      ".staging-id",
      [],
      /the device id "\.staging-id" is not usable: names starting with "\.staging-" or "\.cert-retriever\.lock" are the store's own files/,
    ],
    [
      "a CA name that looks like an unfinished write",
      "dev-b",
      ["--ca-name", ".staging-ca"],
      /the CA name "\.staging-ca" is not usable: names starting with/,
    ],
    [
      "a device id of 90 × 設 (270 bytes in UTF-8, though 90 characters), with --force",
      "設".repeat(90),
      ["--force"],
      /the device id "設+" is not usable: it must be 1 to 200 bytes/,
    ],
  ];
  for (const [what, id, extra, message] of refused) {
    it(`${what}: exit 2 before any request, nothing written`, async () => {
      await lab.addDevice(id);
      const out = join(await tempDir(), "certs");
      const run = await enrollCli(lab.url, lab, id, out, extra);
      expect(run.stderr).toMatch(message);
      expect(run.code).toBe(2);
      expect(run.stderr).not.toMatch(/\[1\/8\]/);
      expect(existsSync(out)).toBe(false);
    });
  }
});
