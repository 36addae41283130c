/**
 * No core dump of a run: one would hold the platform password, the token PIN and a software key in
 * clear. Node can neither lower its own RLIMIT_CORE nor make itself non-dumpable (no setrlimit, no
 * prctl), but Linux lets a process of the same user set another's limits: util-linux's prlimit,
 * run on this process, does it. Reading the limit costs some 30 µs; prlimit runs only when the
 * limit is not already 0 (under the systemd units, LimitCORE=0; Debian's default soft limit).
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";

/** Where util-linux puts prlimit: absolute, so that a PATH cannot choose what runs here. */
const PRLIMIT = ["/usr/bin/prlimit", "/bin/prlimit"];

/** This process's core file size limits (soft, hard: "0", "unlimited" or bytes), or undefined without /proc. */
function coreLimits(): [soft: string, hard: string] | undefined {
  try {
    const m = /^Max core file size\s+(\S+)\s+(\S+)/m.exec(readFileSync("/proc/self/limits", "utf8"));
    return m ? [m[1]!, m[2]!] : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Lowers this process's core limit to 0 (soft and hard, so that nothing it starts raises it)
 * unless it is 0 already. Runs before any setting or secret is read; never fails the run: without
 * /proc or prlimit, or where prlimit is refused (a seccomp filter), the limit stays as it was.
 */
export function refuseCoreDumps(): void {
  if (process.platform !== "linux" || coreLimits()?.[0] === "0") return;
  const prlimit = PRLIMIT.find((path) => existsSync(path));
  if (!prlimit) return;
  try {
    execFileSync(prlimit, [`--pid=${process.pid}`, "--core=0:0"], { stdio: "ignore", timeout: 5000 });
  } catch {
    // the limit stays as it was: docs/security.md says how to start the CLI with ulimit -c 0 instead
  }
}
