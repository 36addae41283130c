import type { AgentEvent } from "../flows/steps.js";
import type { OnWait, RetryInfo } from "../transport/http.js";
import { cliIo } from "./io.js";
import { LiveLine, openRunLine, runLine } from "./live-line.js";
import { safeText, say } from "./output.js";
import { isInteractive } from "./prompts.js";

/** The flags that shape a run's progress. */
export interface ProgressFlags {
  json?: boolean;
  quiet?: boolean;
  nonInteractive?: boolean;
}

/** Colour only on a terminal, and never when NO_COLOR is set. */
function colour(code: number, text: string): string {
  return cliIo().stderr.isTTY && !cliIo().env.NO_COLOR ? `\u001b[${code}m${text}\u001b[0m` : text;
}

/** A line on stderr, after the live line is erased. */
function write(text: string): void {
  runLine()?.clear();
  cliIo().stderr.write(`${text}\n`);
}

/**
 * The run's live line (what a slow step waits for, replaced in place): only where stderr is a
 * terminal that can move its cursor, and neither --json nor --quiet was given.
 */
function liveLine(flags: ProgressFlags): LiveLine | undefined {
  const io = cliIo();
  if (!io.stderr.isTTY || io.env.TERM === "dumb" || flags.json || flags.quiet) return undefined;
  return openRunLine((ticker) => new LiveLine(io.stderr, safeText, ticker));
}

/**
 * Renders a run's progress on stderr: a tick per step on a terminal (`ticks`), plain lines otherwise
 * (journald, CI logs); notes, broker stages and hooks as lines of their own. With --quiet only the
 * notes are left: each says something that did not stop the run but may need a person.
 */
function progress(ticks: boolean, flags: ProgressFlags): (event: AgentEvent) => void {
  const line = liveLine(flags);
  return (event) => {
    // The text is made safe before the colour codes are added.
    if (event.type === "start") {
      line?.begin(`[${event.index}/${event.total}] ${event.step}`, event.doing);
    } else if (event.type === "note") {
      write(`${ticks ? `${colour(33, "!")} ` : ""}${safeText(`note: ${event.message}`)}`);
    } else if (flags.quiet) {
      // Nothing but notes.
    } else if (event.type === "broker") {
      say(`verify ${event.stage}: ${event.detail} (${event.ms} ms)`);
    } else if (event.type === "hook") {
      say(`hook ${event.what}: done (${event.ms} ms)`);
    } else {
      line?.end();
      // The library does not know the CLI's flags: the pin's flag is named here.
      const detail =
        event.step === "fetch-ca"
          ? event.detail.replace("(not pinned)", "(not pinned: pin it with --ca-fingerprint)")
          : event.detail;
      const text = safeText(`[${event.index}/${event.total}] ${event.step}: ${detail} (${event.ms} ms)`);
      write(`${ticks ? `${colour(32, "✔")} ` : ""}${text}`);
    }
  };
}

/**
 * A run's events: rendered, then handed to what the program that runs the CLI injected. `ticks`:
 * a tick before each step's line (a person at the terminal).
 */
export function events(
  state: { inject?: { onEvent?: (event: AgentEvent) => void } },
  flags: ProgressFlags,
  ticks = isInteractive(flags),
): (event: AgentEvent) => void {
  const render = progress(ticks, flags);
  return (event) => {
    render(event);
    state.inject?.onEvent?.(event);
  };
}

/** What the network tells of a run: each retry as a line (not with --quiet), and each wait on the live line. */
export function networkProgress(flags: ProgressFlags): { onRetry: (info: RetryInfo) => void; onWait: OnWait } {
  const line = liveLine(flags);
  return {
    onRetry: (info) => {
      if (!flags.quiet)
        say(
          `retry: ${info.step} attempt ${info.attempt} of ${info.attempts} failed (${info.reason}); trying again in ${(info.waitMs / 1000).toFixed(1)} s`,
        );
      line?.waitFor(`attempt ${info.attempt + 1} of ${info.attempts}`, Date.now() + info.waitMs);
    },
    onWait: (wait) => line?.waitFor(wait.what, wait.until),
  };
}
