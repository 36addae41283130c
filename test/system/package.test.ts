import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

describe("the agent's package carries no lab (the lab is the workspace package lab/)", () => {
  it("npm pack lists no file of the lab, and package.json names no lab bin, export or dependency", () => {
    // --ignore-scripts: `prepare` would rebuild dist/ under the other tests.
    const run = spawnSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: ROOT, encoding: "utf8" });
    expect(run.status, run.stderr).toBe(0);
    const files = (JSON.parse(run.stdout) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
    expect(files).toContain("dist/cert-retriever.mjs"); // the listing works
    expect(files.filter((f) => /(^|\/)lab(\/|\.|-)|cert-retriever-lab|fault-kinds/.test(f))).toEqual([]);
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as Record<
      string,
      Record<string, string>
    >;
    expect(Object.keys(pkg.bin!)).toEqual(["cert-retriever"]);
    expect(Object.keys(pkg.exports!)).toEqual([".", "./exit-codes", "./exit-rules", "./package.json"]);
    expect(Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })).not.toContain("cert-retriever-lab");
  });
});

describe("the library's entry imports nothing of the CLI; the CLI's numbers are subpath exports", () => {
  it("'cert-retriever' has no exit code; 'cert-retriever/exit-codes' and 'cert-retriever/exit-rules' give the CLI's numbers", () => {
    // The built package, resolved by its own name (its exports map), as a program that installed it would.
    const script = `
      const lib = await import("cert-retriever");
      const { ExitCode, EXIT_CODE_MEANINGS } = await import("cert-retriever/exit-codes");
      const { exitCodeOf } = await import("cert-retriever/exit-rules");
      const err = new lib.CertRetrieverError("x", { step: "authenticate", reason: "auth-refused" });
      console.log(JSON.stringify({ lib: ["ExitCode", "EXIT_RULES", "exitCodeOf"].filter((k) => k in lib), ok: ExitCode.OK, meanings: EXIT_CODE_MEANINGS.length > 0, auth: exitCodeOf(err) === ExitCode.AUTH }));`;
    const run = spawnSync(process.execPath, ["--input-type=module", "-e", script], { cwd: ROOT, encoding: "utf8" });
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ lib: [], ok: 0, meanings: true, auth: true });
  });
});
