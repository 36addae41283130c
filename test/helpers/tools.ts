import { execFileSync, spawnSync } from "node:child_process";

/**
 * Whether a system tool is installed. Locally a test that needs a missing tool is skipped with a
 * loud message; under CI=true a missing tool fails the run instead.
 */
export function haveTool(name: string): boolean {
  const found = spawnSync("sh", ["-c", `command -v ${name}`]).status === 0;
  if (!found) {
    if (process.env.CI === "true")
      throw new Error(`${name} is required in CI but is not installed (.ci/run should install it)`);
    console.warn(`\n!!! SKIPPING tests that need '${name}': it is not installed here. CI installs it. !!!\n`);
  }
  return found;
}

/** Runs openssl and returns stdout; throws with stderr on failure. */
export function openssl(...args: string[]): string {
  return execFileSync("openssl", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Runs openssl and returns its exit status (for checks like -checkend). */
export function opensslStatus(...args: string[]): number {
  return spawnSync("openssl", args, { stdio: "ignore" }).status ?? -1;
}

/**
 * Whether the tests run as root, which `what` needs (mounting a tmpfs, playing another user with
 * chown). Locally those tests are skipped with a loud message; under CI=true, which runs as root,
 * a run without root fails instead.
 */
export function haveRoot(what: string): boolean {
  const root = process.getuid?.() === 0;
  if (!root) {
    if (process.env.CI === "true") throw new Error(`${what} need root, and CI runs as root`);
    console.warn(`\n!!! SKIPPING ${what}: they need root. CI runs them. !!!\n`);
  }
  return root;
}
