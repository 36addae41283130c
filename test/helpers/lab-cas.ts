import { copyFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { inject } from "vitest";

/** Which of the run's CA sets: `main` (every lab's), or `other` for a second platform with CAs of its own. */
export type CaSet = "main" | "other";

/**
 * Puts the run's lab CAs (made once by global-setup.ts) into the lab directory `dir`, where the lab
 * loads them instead of generating its own; outside a vitest run there are none, and the lab makes its own.
 */
export async function seedLabCas(dir: string, set: CaSet = "main"): Promise<void> {
  const from = inject("labCas");
  if (!from) return;
  const source = join(from, set);
  for (const name of await readdir(source)) await copyFile(join(source, name), join(dir, name));
}
