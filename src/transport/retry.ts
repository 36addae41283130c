/**
 * The retry policy: which failures are tried again, how long to wait between tries, and when the
 * deadline leaves no time for another. Plain data and functions, so that a program sets it as it
 * sets any other option and a test drives it without a clock of its own.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Step } from "../errors.js";
import type { HttpReply } from "./reply.js";

/** A retry that is about to happen, for progress output and `--json`. */
export interface RetryInfo {
  step: Step;
  /** The attempt that failed, from 1. */
  attempt: number;
  attempts: number;
  reason: string;
  waitMs: number;
}

/** What a run waits for (a reply, a server's approval), for a display of progress; `until`: when the wait ends, if known (epoch ms). */
export interface WaitInfo {
  step: Step;
  what: string;
  until?: number;
}

/** Told that a wait begins; returns what to call when it ends. */
export type OnWait = (wait: WaitInfo) => (() => void) | undefined;

/** How a request that fails temporarily (network trouble, overload) is tried again. */
export interface RetryPolicy {
  /** Attempts in all for a request that fails temporarily (1 = no retry). */
  attempts: number;
  /** The run's deadline, as epoch milliseconds: no wait ends after it and no request runs past it. */
  deadline: number;
  /** Exponential backoff with full jitter: the n-th wait is random in [0, min(cap, base * 2^(n-1))]. */
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /** Told of each retry before its wait (progress output, `--json`'s `retries`). */
  onRetry?: (info: RetryInfo) => void;
}

/** A failure that a later attempt may not meet (network trouble, overload). */
export class Temporary extends Error {
  constructor(
    message: string,
    readonly retryAfterMs?: number,
    readonly reply?: HttpReply,
    /** The request certainly did not reach the server (safe to repeat even a signing request). */
    readonly notSent = false,
  ) {
    super(message);
  }
}

/**
 * The wait before `attempt` (2 is the first retry): the server's Retry-After if it gave one, else
 * the policy's backoff; undefined when the wait would end at or past the deadline.
 */
export function backoffWait(
  policy: RetryPolicy,
  attempt: number,
  retryAfterMs: number | undefined,
  now = Date.now(),
  random = Math.random,
): number | undefined {
  const base = policy.backoffBaseMs ?? 500;
  const cap = policy.backoffCapMs ?? 30_000;
  const wait = retryAfterMs ?? Math.floor(random() * Math.min(cap, base * 2 ** (attempt - 2)));
  return now + wait < policy.deadline ? wait : undefined;
}

/** Why the tries of a request end: the last failed, the deadline leaves no time, or the failure may not be repeated. */
export type GiveUp = "last" | "deadline" | "not-repeatable";

/** What the retry loop asks of its caller. */
interface RetryLoop<T> {
  step: Step;
  /** One attempt; a {@link Temporary} is worth another, anything else ends the loop as it is. */
  attempt(): Promise<T>;
  /** Whether this failure may be tried again at all (a request that is not idempotent and may have been sent may not). */
  repeatable(err: Temporary): boolean;
  /** The error that ends the tries, after `attempts` of them. */
  giveUp(err: Temporary, attempts: number, why: GiveUp): Error;
  /** Interrupts the wait between tries. */
  signal?: AbortSignal;
  /** Called when `signal` ends a wait: throws what the interrupt means. */
  interrupted(): never;
}

/** Runs `loop.attempt` until it succeeds, fails for good, or the policy's attempts or deadline run out. */
export async function withRetries<T>(policy: RetryPolicy, loop: RetryLoop<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await loop.attempt();
    } catch (err) {
      if (!(err instanceof Temporary)) throw err;
      if (!loop.repeatable(err)) throw loop.giveUp(err, attempt, "not-repeatable");
      const wait = backoffWait(policy, attempt + 1, err.retryAfterMs);
      if (attempt >= policy.attempts) throw loop.giveUp(err, attempt, "last");
      if (wait === undefined) throw loop.giveUp(err, attempt, "deadline");
      policy.onRetry?.({ step: loop.step, attempt, attempts: policy.attempts, reason: err.message, waitMs: wait });
      await sleep(wait, undefined, { signal: loop.signal }).catch(() => loop.interrupted());
    }
  }
}

/** The longest wait a Retry-After is read as (a year): longer is no different, and stays a finite number. */
const MAX_RETRY_AFTER_S = 365 * 86_400;

/** RFC 9110 §5.6.7's HTTP-date: IMF-fixdate, the obsolete RFC 850 form, or asctime's (which is in GMT too). */
const HTTP_DATE = [
  /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/,
  /^[A-Z][a-z]{5,8}, \d{2}-[A-Z][a-z]{2}-\d{2} \d{2}:\d{2}:\d{2} GMT$/,
  /^[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/,
];

/**
 * Milliseconds from a Retry-After header (RFC 9110 §10.2.3: delay-seconds or an HTTP-date; a date
 * in the past is 0), or undefined for anything else: "-1" or "5.5" are no instruction (JavaScript's
 * Date.parse reads both as days of 2001: no wait at all). At most a year.
 */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  const text = value?.trim();
  if (!text) return undefined;
  if (/^\d+$/.test(text)) return Math.min(Number(text), MAX_RETRY_AFTER_S) * 1000;
  if (!HTTP_DATE.some((form) => form.test(text))) return undefined;
  const at = Date.parse(text.endsWith("GMT") ? text : `${text} GMT`);
  return Number.isNaN(at) ? undefined : Math.min(Math.max(0, at - now), MAX_RETRY_AFTER_S * 1000);
}

/** Whether an HTTP status means "try again later": overload, gateway trouble, rate limiting. */
export function isTemporaryStatus(status: number): boolean {
  return status === 429 || status === 502 || status === 503 || status === 504;
}
