/**
 * The one line on a terminal that says what a slow step waits for and for how long, rewritten in
 * place (`\r`) and erased before any other line is written, when the step ends, and at a prompt.
 */
import { cliIo } from "./io.js";

/** How the line keeps time: a clock and a repeating timer (the process's own, or a test's fake). */
export interface Ticker {
  now(): number;
  every(ms: number, tick: () => void): () => void;
}

const PROCESS_TICKER: Ticker = {
  now: () => Date.now(),
  every: (ms, tick) => {
    // The line never keeps a process alive.
    const timer = setInterval(tick, ms).unref();
    return () => clearInterval(timer);
  },
};

/** Nothing shows before a step has run this long: most steps end sooner, and a line that flashes says nothing. */
export const SHOW_AFTER_MS = 1000;
const TICK_MS = 100;
const FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏";
/** Back to the line's start, and erase to its end. */
const ERASE = "\r\u001b[K";

interface Terminal {
  write(text: string): unknown;
  columns?: number;
}

/** What the line shows: the step (`[5/8] submit-csr`) and what it waits for, from when each began. */
export class LiveLine {
  private step: { label: string; doing?: string; since: number } | undefined;
  private wait: { what: string; until?: number; since: number } | undefined;
  private stopTicks: (() => void) | undefined;
  private shown = false;
  private held = 0;
  private frame = 0;

  /** `safe`: makes text fit for a terminal (no control characters, no secret). */
  constructor(
    private readonly out: Terminal,
    private readonly safe: (text: string) => string,
    private readonly ticker: Ticker,
  ) {}

  /** A step begins (`label`: its place and name; `doing`: what it does, where known). */
  begin(label: string, doing?: string): void {
    this.clear();
    this.step = { label, doing, since: this.ticker.now() };
    this.wait = undefined;
    this.ticking();
  }

  /** The step ended: the line goes (the step's own line follows). */
  end(): void {
    this.stop();
  }

  /** A wait begins (`what`: what is waited for; `until`: when it ends, if known, as the ticker's time); returns what ends it. */
  waitFor(what: string, until?: number): () => void {
    const wait = { what, until, since: this.ticker.now() };
    this.wait = wait;
    this.ticking();
    return () => {
      if (this.wait !== wait) return;
      this.wait = undefined;
      if (!this.step) this.stop();
    };
  }

  /** Erases the line if it shows (before another line is written); it comes back on the next tick. */
  clear(): void {
    if (!this.shown) return;
    this.out.write(ERASE);
    this.shown = false;
  }

  /** Runs `body` (a prompt) with the line erased and held; the time waited counts again from its end. */
  async hold<T>(body: () => Promise<T>): Promise<T> {
    this.clear();
    this.held++;
    try {
      return await body();
    } finally {
      this.held--;
      const now = this.ticker.now();
      if (this.step) this.step.since = now;
      if (this.wait) this.wait.since = now;
    }
  }

  /** Nothing more to show: the line goes, and so does its timer. */
  stop(): void {
    this.clear();
    this.step = undefined;
    this.wait = undefined;
    this.stopTicks?.();
    this.stopTicks = undefined;
  }

  private ticking(): void {
    this.stopTicks ??= this.ticker.every(TICK_MS, () => this.render());
  }

  private render(): void {
    const since = this.step?.since ?? this.wait?.since;
    const now = this.ticker.now();
    if (this.held > 0 || since === undefined || now - since < SHOW_AFTER_MS) return;
    const waiting = this.wait
      ? `waiting for ${this.wait.what}${this.wait.until === undefined ? "" : `, next try in ${seconds(this.wait.until - now)} s`}`
      : this.step?.doing;
    const text = [this.step?.label, waiting].filter(Boolean).join(": ");
    const line = `${FRAMES[this.frame++ % FRAMES.length]} ${this.safe(text)} (${seconds(now - since, Math.floor)} s)`;
    // One row, or the erase would leave the wrapped rest behind.
    this.out.write(`\r${[...line].slice(0, (this.out.columns ?? 80) - 1).join("")}\u001b[K`);
    this.shown = true;
  }
}

function seconds(ms: number, round: (n: number) => number = Math.ceil): number {
  return Math.max(0, round(ms / 1000));
}

/** Each run's line (a run in-process has I/O of its own), and the ticker a program handed main(). */
const lines = new WeakMap<object, LiveLine>();
const tickers = new WeakMap<object, Ticker>();

/** The run's line keeps time with `ticker` instead of the process's clock and timers. */
export function useTicker(ticker: Ticker): void {
  tickers.set(cliIo(), ticker);
}

/** The line of the run this code is part of, if it shows one. */
export function runLine(): LiveLine | undefined {
  return lines.get(cliIo());
}

/** The run's line, made by `make` (with the run's ticker) the first time. */
export function openRunLine(make: (ticker: Ticker) => LiveLine): LiveLine {
  const io = cliIo();
  let line = lines.get(io);
  if (!line) {
    line = make(tickers.get(io) ?? PROCESS_TICKER);
    lines.set(io, line);
  }
  return line;
}

/** The run ends: its line goes. */
export function closeRunLine(): void {
  runLine()?.stop();
  lines.delete(cliIo());
  tickers.delete(cliIo());
}
