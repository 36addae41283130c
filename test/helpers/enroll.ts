import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { type CliRun, runCli } from "./cli.js";
import type { TestLab } from "./lab.js";

/** `cert-retriever enroll` against `platform` for `deviceId` into `out`, the password on stdin; `fault`: with a fault injected (see fault-cli.mjs). */
export function enrollCli(
  platform: string,
  lab: Pick<TestLab, "password">,
  deviceId: string,
  out: string,
  extra: string[] = [],
  env: Record<string, string> = {},
  fault?: string,
): Promise<CliRun> {
  return runCli(
    [
      "enroll",
      "--platform",
      platform,
      "--device-id",
      deviceId,
      "--username",
      "admin",
      "--password-stdin",
      "--out",
      out,
      ...extra,
    ],
    { input: `${lab.password}\n`, env, fault },
  );
}

/** Every file below `dir` (names only, dot files included), or [] if `dir` does not exist. */
export async function listFiles(dir: string): Promise<string[]> {
  return readdir(dir, { recursive: true }).then(
    (names) => names.map(String).sort(),
    () => [],
  );
}

/** The bytes of every file in `dir`, for proving that a failed run changed nothing. */
export async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of await listFiles(dir)) {
    const path = join(dir, name);
    if ((await stat(path)).isFile())
      out[name] = `${(await readFile(path)).toString("base64")}:${(await stat(path)).mode.toString(8)}`;
  }
  return out;
}

/** The permission bits of a path, e.g. 0o600. */
export async function modeOf(path: string): Promise<number> {
  return (await stat(path)).mode & 0o777;
}
