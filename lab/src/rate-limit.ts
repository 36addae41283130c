/** One limit: at most `limit` requests in any `windowMs`. */
export interface RateWindow {
  limit: number;
  windowMs: number;
}

const UNITS: Record<string, number> = {
  s: 1000,
  sec: 1000,
  second: 1000,
  m: 60_000,
  min: 60_000,
  minute: 60_000,
  h: 3_600_000,
  hour: 3_600_000,
  d: 86_400_000,
  day: 86_400_000,
};

/** Parses `5/min,40/h` (Kong's rate-limiting plugin as dojot configures it for /auth). */
export function parseRateLimit(text: string): RateWindow[] {
  return text.split(",").map((part) => {
    const m = /^\s*(\d+)\s*\/\s*([a-z]+)\s*$/.exec(part);
    const windowMs = m ? UNITS[m[2]!] : undefined;
    if (!m || !windowMs || Number(m[1]) < 1) throw new Error(`--auth-rate-limit '${text}' is not like 5/min,40/h`);
    return { limit: Number(m[1]), windowMs };
  });
}

/**
 * A sliding-window limiter: `take()` admits a request, or says how many seconds to wait (the
 * Retry-After Kong sends). `timeScale` > 1 runs its clock faster, for simulations.
 */
export class RateLimiter {
  private readonly admitted: number[] = [];

  constructor(
    private readonly windows: RateWindow[],
    private readonly timeScale = 1,
    private readonly clock: () => number = Date.now,
  ) {}

  /** Undefined if admitted, else the seconds (in the limiter's time) until a request would be. */
  take(): number | undefined {
    const now = this.clock() * this.timeScale;
    const longest = Math.max(...this.windows.map((w) => w.windowMs));
    while (this.admitted.length && this.admitted[0]! <= now - longest) this.admitted.shift();
    let wait = 0;
    for (const w of this.windows) {
      const inWindow = this.admitted.filter((t) => t > now - w.windowMs);
      if (inWindow.length >= w.limit) wait = Math.max(wait, inWindow[inWindow.length - w.limit]! + w.windowMs - now);
    }
    if (wait > 0) return Math.max(1, Math.ceil(wait / 1000 / this.timeScale));
    this.admitted.push(now);
    return undefined;
  }
}
