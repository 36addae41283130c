import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { haveTool } from "../helpers/tools.js";

/** What a start that only prints help must not load: crypto, HTTP, prompts, MQTT, the keychain, the flows, stores and protocol clients. */
const HEAVY =
  /node_modules\/(undici|@peculiar|reflect-metadata|tsyringe|@inquirer|mqtt|@napi-rs)|dist\/(flows|lab|store)\/|dist\/(agent|settings)\.js|dist\/transport\/(?!loopback\.js|package\.json)|dist\/keys\/(?!key-types\.js|package\.json)|dist\/broker\/(?!profiles\.js|package\.json)|dist\/protocols\/[^/]+\/(?!index\.js|name\.js|hints\.js|settings\.js|rules\.js|url\.js|package\.json)/;

const SOURCE_BIN = fileURLToPath(new URL("../../bin/cert-retriever.mjs", import.meta.url));
const hasStrace = haveTool("strace");

/** The files a run of the CLI (from source), or of `node ARGS` when `bare`, opens, as strace sees them. */
function filesOpened(args: string[], bare = false): string[] {
  const log = join(mkdtempSync(join(tmpdir(), "cr-strace-")), "trace");
  const run = spawnSync(
    "strace",
    ["-f", "-qq", "-e", "trace=openat", "-o", log, process.execPath, ...(bare ? [] : [SOURCE_BIN]), ...args],
    { encoding: "utf8", cwd: join(SOURCE_BIN, "..", "..") },
  );
  expect(run.status, run.stderr).toBe(0);
  return readFileSync(log, "utf8")
    .split("\n")
    .map((l) => /openat\([^"]*"([^"]+)"/.exec(l)?.[1] ?? "")
    .filter(Boolean);
}

describe.skipIf(!hasStrace)("start-up loads only what the command needs", () => {
  for (const args of [["--help"], ["--version"], ["enroll", "--help"]]) {
    it(`${args.join(" ")} loads no crypto, HTTP, prompt, MQTT or keychain module`, () => {
      const opened = filesOpened(args);
      expect(opened.some((f) => f.includes("node_modules/commander"))).toBe(true); // the trace works
      // dist/keys/key-types.js is only the table of key types (for --key-type's choices), the protocols' index files are
      // their names, settings and hints (for --api and the hints), broker/profiles.js the profiles' names: none imports more.
      const heavy = opened.filter((f) => HEAVY.test(f));
      expect(heavy).toEqual([]);
    });
  }
});

describe.skipIf(!hasStrace)("the library's entry carries no lab platform", () => {
  it("import('cert-retriever') opens nothing of the lab; the lab is its own package, 'cert-retriever-lab'", () => {
    const opened = filesOpened(
      [
        "--input-type=module",
        "-e",
        "const m = await import('cert-retriever'); if (typeof m.enroll !== 'function' || 'startLab' in m) process.exit(1);",
      ],
      true,
    );
    expect(opened.some((f) => f.endsWith("dist/index.js"))).toBe(true); // the trace works
    const root = join(SOURCE_BIN, "..", "..");
    expect(
      opened.filter(
        (f) =>
          /dist\/lab\//.test(f) ||
          f.startsWith(join(root, "lab", "/")) ||
          f.includes("node_modules/cert-retriever-lab"),
      ),
    ).toEqual([]);
    const gone = spawnSync(process.execPath, ["--input-type=module", "-e", "await import('cert-retriever/lab')"], {
      cwd: root,
      encoding: "utf8",
    });
    expect(gone.stderr).toMatch(/ERR_PACKAGE_PATH_NOT_EXPORTED/);
    const lab = spawnSync(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        "const m = await import('cert-retriever-lab'); process.exit(typeof m.startLab === 'function' ? 0 : 1);",
      ],
      { cwd: root },
    );
    expect(lab.status).toBe(0);
  });
});

describe("an enrollment without a proxy compiles no WebAssembly", () => {
  it("neither undici (ours or Node's own) nor any WebAssembly module is loaded: V8 would hold the exit until its parser is optimised", async () => {
    const { startTestLab, tempDir } = await import("../helpers/lab.js");
    const { BIN } = await import("../helpers/cli.js");
    const lab = await startTestLab({ autoRegister: true });
    try {
      const dir = await tempDir();
      const hook = join(dir, "hook.mjs");
      writeFileSync(
        hook,
        [
          `let wasm = 0;`,
          `for (const name of ["Module", "compile", "instantiate", "compileStreaming", "instantiateStreaming"]) {`,
          `  const real = WebAssembly[name];`,
          `  WebAssembly[name] = name === "Module" ? new Proxy(real, { construct: (t, a) => (wasm++, Reflect.construct(t, a)) }) : (...a) => (wasm++, real.apply(WebAssembly, a));`,
          `}`,
          `process.on("exit", () => process.stderr.write("node's undici: [" + process.moduleLoadList.filter((m) => /undici/.test(m)).join(",") + "] wasm: " + wasm + "\\n"));`,
        ].join("\n"),
      );
      // Asynchronously: the lab answers from this process.
      // Under strace where there is one: the build from source would open our undici's files.
      const trace = join(dir, "trace");
      const tracer = hasStrace ? ["strace", "-f", "-qq", "-e", "trace=openat", "-o", trace] : [];
      const child = spawn(
        tracer[0] ?? process.execPath,
        [
          ...tracer.slice(1),
          ...(hasStrace ? [process.execPath] : []),
          "--import",
          hook,
          BIN,
          "enroll",
          "--platform",
          lab.url,
          "--device-id",
          "one-undici",
          "--username",
          "admin",
          "--password-stdin",
          "--out",
          join(dir, "o"),
          "--non-interactive",
        ],
        {
          env: { PATH: process.env.PATH ?? "", NO_COLOR: "1" },
          stdio: ["pipe", "ignore", "pipe"],
        },
      );
      let stderr = "";
      child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      child.stdin.end(`${lab.password}\n`);
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      const status = await new Promise<number | null>((resolve) => child.on("close", resolve));
      clearTimeout(timer);
      const run = { status, stderr };
      expect(run.status, run.stderr).toBe(0);
      expect(run.stderr).toMatch(/^node's undici: \[\] wasm: 0$/m);
      if (hasStrace) {
        const opened = readFileSync(trace, "utf8");
        expect(opened).toMatch(/node_modules\/@peculiar|cert-retriever\.mjs/); // the trace works
        expect(opened).not.toMatch(/node_modules\/undici\//);
      }
    } finally {
      await lab.stop();
    }
  });
});
