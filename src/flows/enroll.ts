/**
 * Enrollment: decide what the stored credentials call for, then obtain new ones (a renewal or a
 * new enrollment), install them and retire what they replaced. The store is locked for the run;
 * nothing is written unless every step before `store` passed.
 */
import type { KeyTransaction } from "../keys/key-store.js";
import * as x509 from "../keys/x509.js";
import { displayName, sha256Fingerprint } from "./certificate.js";
import type { EnrollContext } from "./context.js";
import { decide, readStored, type Stored } from "./decide.js";
import { type Installed, install } from "./install.js";
import { type ObtainPlan, obtain, prepare } from "./obtain.js";
import { renewalPlan } from "./renew.js";
import type { EnrollResult } from "./result.js";
import { ENROLL_STEPS, type EnrollStep } from "./result.js";
import { retire } from "./retire.js";
import { StepRunner, type StepTiming } from "./steps.js";
import { clearIssueJournal, type IssuedHere, settleUnstored } from "./unstored.js";

/** Enrolls unless valid credentials are stored (`force`: even then); renews credentials that are due. */
export async function enroll(ctx: EnrollContext, opts: { force?: boolean } = {}): Promise<EnrollResult> {
  return withLockedStore(ctx, async (stored, tx, installed) => {
    const decision = await decide(ctx, stored, Boolean(opts.force));
    if (decision.action === "keep") {
      // Valid credentials in place: no certificate an earlier run may have left is wanted any more.
      await clearIssueJournal(ctx.store);
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

/** What `enroll --dry-run` found: what a run would do and request, after authenticate, fetch-ca and the pre-flight. */
export interface DryRunResult {
  status: "dry-run";
  deviceId: string;
  /** What the run would do: enroll anew, renew, or keep the stored credentials (then nothing is asked of the platform). */
  action: "enroll" | "renew" | "keep";
  /** The API that answered, in words. */
  api?: string;
  /** The CA the certificate would come from. */
  ca?: { subject: string; sha256Fingerprint: string };
  /** What would be requested: subject, names, the key and where it would be made. */
  request?: { subject: string; sans: string[]; keyType: string; keyWhy?: string; keyStore: string };
  /** Where the credentials would be stored. */
  store: { kind: string; location: string };
  /** The valid credentials kept (`action` keep): until when. */
  notAfter?: string;
  steps: StepTiming<EnrollStep>[];
}

/**
 * Runs authenticate, fetch-ca and every pre-flight check that a real run makes before its key
 * (clock, the flow's own refusals, the key type, room in the store, the lock), and says what would
 * be requested; makes no key, sends no CSR, and leaves nothing behind.
 */
export async function dryRun(ctx: EnrollContext, opts: { force?: boolean } = {}): Promise<DryRunResult> {
  const opened = await ctx.store.open();
  try {
    for (const message of opened.notes) ctx.emit({ type: "note", message });
    const stored = await readStored(ctx.store);
    const decision = await decide(ctx, stored, Boolean(opts.force));
    const base = {
      status: "dry-run" as const,
      deviceId: ctx.device.id,
      store: { kind: ctx.store.kind, location: ctx.store.location },
    };
    if (decision.action === "keep") return { ...base, action: "keep", notAfter: decision.result.notAfter, steps: [] };
    const plan = decision.action === "renew" ? renewalPlan(stored, decision.stillGood) : {};
    const run = new StepRunner(ENROLL_STEPS, ctx.emit, ctx.signal);
    const { proto, caChain, replacing, keyType } = await prepare(ctx, run, stored);
    const current = plan.current?.(proto, replacing);
    const sans = current
      ? (current.cert
          .getExtension(x509.SubjectAlternativeNameExtension)
          ?.names.items.map((n) => `${n.type}:${n.value}`) ?? [])
      : [
          ...ctx.device.sans.dns.map((d) => `dns:${d}`),
          ...ctx.device.sans.ip.map((i) => `ip:${i}`),
          ...ctx.device.sans.uri.map((u) => `url:${u}`),
        ];
    return {
      ...base,
      action: decision.action,
      api: proto.title,
      ca: { subject: displayName(caChain[0]!.subjectName), sha256Fingerprint: sha256Fingerprint(caChain[0]!) },
      request: {
        subject: current ? displayName(current.cert.subjectName) : `CN=${ctx.device.id}`,
        sans,
        keyType: keyType.type,
        ...(keyType.why ? { keyWhy: keyType.why.replace(/^ \((.*)\)$/, "$1") } : {}),
        keyStore: ctx.keyStore.location,
      },
      steps: run.timings,
    };
  } finally {
    // Nothing stays: the lock goes, and a directory this run made is removed again.
    await opened.close(false);
  }
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
  const progress: { issued?: IssuedHere } = {};
  let done: Installed;
  try {
    done = await install(ctx, run, tx, stored, await obtain(ctx, run, tx, stored, plan, progress));
  } catch (err) {
    // Issued and not stored: revoked where it can be, else the message says what the next run does.
    throw progress.issued
      ? await settleUnstored(ctx.store, progress.issued, err, Boolean(ctx.signal?.aborted), ctx.device.id)
      : err;
  }
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
