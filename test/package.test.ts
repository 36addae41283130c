import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

describe("the agent's package carries no lab (the lab is the workspace package lab/)", () => {
  it("npm pack lists no file of the lab, and package.json names no lab bin, export or dependency", () => {
    // --ignore-scripts: `prepare` would rebuild dist/ under the other tests.
    const run = spawnSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: ROOT, encoding: "utf8" });
    expect(run.status, run.stderr).toBe(0);
    const files = (JSON.parse(run.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
    expect(files).toContain("dist/cert-retriever.mjs"); // the listing works
    expect(files.filter((f) => /(^|\/)lab(\/|\.|-)|cert-retriever-lab|fault-kinds/.test(f))).toEqual([]);
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as Record<string, Record<string, string>>;
    expect(Object.keys(pkg.bin!)).toEqual(["cert-retriever"]);
    expect(Object.keys(pkg.exports!)).toEqual([".", "./package.json"]);
    expect(Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })).not.toContain("cert-retriever-lab");
  });
});
