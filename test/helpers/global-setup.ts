// Made once per run, before any test file: the lab's CAs (RSA-4096 for x509-identity-mgmt's, RSA-2048
// for the others), which every lab of the run copies instead of generating its own (see lab-cas.ts).
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { loadOrCreateCa, loadOrCreateEstCa } from "../../lab/src/ca.js";
import { softwareCrypto } from "../../src/keys/provider.js";

/** Two sets: `main` for every lab, `other` for a lab that must have CAs of its own (another platform). */
const SETS = ["main", "other"] as const;

/** Every project of the run calls this; the CAs are made by the first, in this one process. */
const shared = globalThis as { crLabCas?: Promise<string>; crLabCasUsers?: number };

async function makeCas(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "cr-lab-cas-"));
  const crypto = softwareCrypto();
  await Promise.all(
    SETS.map(async (set) => {
      const into = join(dir, set);
      await mkdir(into);
      await Promise.all([
        loadOrCreateCa(into, crypto, "legacy"),
        loadOrCreateCa(into, crypto, "x509"),
        loadOrCreateEstCa(into, crypto),
      ]);
    }),
  );
  return dir;
}

export async function setup(project: TestProject): Promise<() => Promise<void>> {
  shared.crLabCasUsers = (shared.crLabCasUsers ?? 0) + 1;
  shared.crLabCas ??= makeCas();
  project.provide("labCas", await shared.crLabCas);
  return async () => {
    shared.crLabCasUsers! -= 1;
    if (shared.crLabCasUsers === 0) await rm(await shared.crLabCas!, { recursive: true, force: true });
  };
}

declare module "vitest" {
  export interface ProvidedContext {
    /** The directory of the run's lab CAs: one subdirectory per set, as a lab directory holds them. */
    labCas: string;
  }
}
