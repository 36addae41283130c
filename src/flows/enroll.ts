/**
 * Enrollment: decide what the stored credentials call for, then obtain new ones (a renewal or a
 * new enrollment), install them and retire what they replaced. The store is locked for the run;
 * nothing is written unless every step before `store` passed.
 */
import type { KeyTransaction } from "../keys/key-store.js";
import type { EnrollContext } from "./context.js";
import { decide, readStored, type Stored } from "./decide.js";
import { install } from "./install.js";
import { type ObtainPlan, obtain } from "./obtain.js";
import { renewalPlan } from "./renew.js";
import type { EnrollResult } from "./result.js";
import { ENROLL_STEPS } from "./result.js";
import { retire } from "./retire.js";
import { StepRunner } from "./steps.js";

/** Enrolls unless valid credentials are stored (`force`: even then); renews credentials that are due. */
export async function enroll(ctx: EnrollContext, opts: { force?: boolean } = {}): Promise<EnrollResult> {
  return withLockedStore(ctx, async (stored, tx, installed) => {
    const decision = await decide(ctx, stored, Boolean(opts.force));
    if (decision.action === "keep") {
      installed();
      return decision.result;
    }
    return replace(
      ctx,
      stored,
      tx,
      installed,
      decision.action === "renew" ? renewalPlan(stored, decision.stillGood) : {},
    );
  });
}

/** Renews the stored credentials now, whatever their renewal window says (a new key, and the renewal rules of the protocol). */
export async function renewNow(ctx: EnrollContext): Promise<EnrollResult> {
  return withLockedStore(ctx, async (stored, tx, installed) => {
    const now = ctx.now();
    const valid = stored.cert !== undefined && stored.cert.notBefore <= now && now < stored.cert.notAfter;
    return replace(
      ctx,
      stored,
      tx,
      installed,
      stored.cert && now < stored.cert.notAfter ? renewalPlan(stored, valid) : {},
    );
  });
}

/** Obtains, installs and retires: new credentials in place of what is stored. */
async function replace(
  ctx: EnrollContext,
  stored: Stored,
  tx: KeyTransaction,
  installed: () => void,
  plan: ObtainPlan,
): Promise<EnrollResult> {
  const run = new StepRunner(ENROLL_STEPS, ctx.emit, ctx.signal);
  const done = await install(ctx, run, tx, stored, await obtain(ctx, run, tx, stored, plan));
  installed();
  return retire(ctx, stored, done, run.timings);
}

/**
 * Runs `work` with the store open (its lock held, interrupted writes finished or undone) and the
 * key store's transaction begun; `installed()` says the credentials are in place. A run that fails
 * before that takes out the key it made, and what opening the store created.
 */
async function withLockedStore(
  ctx: EnrollContext,
  work: (stored: Stored, tx: KeyTransaction, installed: () => void) => Promise<EnrollResult>,
): Promise<EnrollResult> {
  const opened = await ctx.store.open();
  let succeeded = false;
  let tx: KeyTransaction | undefined;
  try {
    for (const message of opened.notes) ctx.emit({ type: "note", message });
    const stored = await readStored(ctx.store);
    tx = await ctx.keyStore.begin(ctx.store.sidecars.keyJournal, stored.inToken);
    for (const message of tx.notes) ctx.emit({ type: "note", message });
    return await work(stored, tx, () => (succeeded = true));
  } finally {
    // A failed run takes its token key out again (a killed one leaves it to the next, by the journal).
    for (const message of (await tx?.rollback()) ?? []) ctx.emit({ type: "note", message });
    await opened.close(succeeded);
  }
}
