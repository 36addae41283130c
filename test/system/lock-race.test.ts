// The lock between processes: eight of them race for it, from the build (dist/), as runs do.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { tempDir } from "../helpers/lab.js";

describe("the lock", () => {
  it("the lock is never held by two runs at once (8 processes racing)", async () => {
    const dir = await tempDir();
    const log = join(dir, "log");
    const lockModule = fileURLToPath(new URL("../../dist/fs/lock.js", import.meta.url));
    const script = `import { acquireLock } from ${JSON.stringify(lockModule)}; import { appendFileSync } from "node:fs";
      for (let i = 0; i < 15; i++) { const release = await acquireLock(${JSON.stringify(dir)}, 60000);
        appendFileSync(${JSON.stringify(log)}, "+\\n"); await new Promise((r) => setTimeout(r, 3)); appendFileSync(${JSON.stringify(log)}, "-\\n"); await release(); }`;
    const codes = await Promise.all(
      Array.from(
        { length: 8 },
        () =>
          new Promise<number | null>((resolve) =>
            spawn(process.execPath, ["--input-type=module", "-e", script]).on("close", resolve),
          ),
      ),
    );
    expect(codes).toEqual(Array(8).fill(0));
    let held = 0;
    let most = 0;
    for (const line of readFileSync(log, "utf8").trim().split("\n")) {
      held += line === "+" ? 1 : -1;
      most = Math.max(most, held);
    }
    expect(most).toBe(1);
    expect(readFileSync(log, "utf8").trim().split("\n")).toHaveLength(8 * 15 * 2); // every run took it 15 times
  });
});
