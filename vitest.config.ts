import { readdirSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

/**
 * The test pyramid: a test file's folder is its project, and so what it may do.
 *   test/unit    in-process: the library, the CLI through main() (no child process, no network beyond loopback)
 *   test/cli     the command as a process: a thin contract layer (flags, exit codes, streams, signals)
 *   test/system  real tools: SoftHSM, TPM, mosquitto, systemd-analyze, gnome-keyring, faketime,
 *                strongSwan, tmux terminals, tmpfs and root, kill -9, the single-file build
 *   lab/test     the lab platform's fidelity to the services it stands in for
 * One project: `npx vitest run --project unit`.
 */
const PROJECTS = {
  unit: "test/unit",
  cli: "test/cli",
  system: "test/system",
  lab: "lab/test",
} as const;

const root = fileURLToPath(new URL(".", import.meta.url));

/** A test file outside the four folders would run in no project: refuse it, so that it is classified, not lost. */
function unclassified(): string[] {
  const files = ["test", "lab/test"].flatMap((dir) =>
    readdirSync(new URL(`./${dir}/`, import.meta.url), { recursive: true })
      .map((name) => `${dir}/${String(name)}`)
      .filter((path) => path.endsWith(".test.ts")),
  );
  return files.filter((path) => !Object.values(PROJECTS).some((folder) => path.startsWith(`${folder}/`)));
}

const stray = unclassified();
if (stray.length > 0) {
  throw new Error(
    `test files outside the project folders (move each to test/unit, test/cli or test/system; see vitest.config.ts): ${stray.join(", ")}`,
  );
}

/** Workers: the tests in cli, system and lab mostly wait on other processes and sockets; unit keeps the cores busy. */
const cores = availableParallelism();

export default defineConfig({
  // The lab (lab/) imports the agent by its package name; in the tests that is the agent's source,
  // the same modules the agent's own tests load.
  resolve: {
    alias: [{ find: /^cert-retriever$/, replacement: fileURLToPath(new URL("./src/index.ts", import.meta.url)) }],
  },
  test: {
    // Bounds, not expectations: a test that needs the time waits for an event, never a clock.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    maxWorkers: Math.max(2, cores),
    reporters: ["default"],
    // The lab CAs (RSA-4096 among them), made once per run and copied into each lab.
    globalSetup: ["test/helpers/global-setup.ts"],
    coverage: { provider: "v8", include: ["src/**"], reporter: ["text-summary", "json-summary"] },
    projects: Object.entries(PROJECTS).map(([name, folder]) => ({
      extends: true,
      // The project tells the helpers how to run the CLI: in-process in unit, as a process elsewhere (test/helpers/cli.ts).
      test: { name, root, include: [`${folder}/**/*.test.ts`], env: { CERT_RETRIEVER_TEST_PROJECT: name } },
    })),
  },
});
