import type { AgentEvent } from "../flows/steps.js";
import { cliIo } from "./io.js";
import { safeText, say } from "./output.js";

/** Colour only on a terminal, and never when NO_COLOR is set. */
function colour(code: number, text: string): string {
  return cliIo().stderr.isTTY && !cliIo().env.NO_COLOR ? `\u001b[${code}m${text}\u001b[0m` : text;
}

/**
 * Renders a run's progress on stderr: a tick per step on a terminal, plain lines otherwise
 * (journald, CI logs); notes, broker stages and hooks as lines of their own.
 */
function progress(tty: boolean): (event: AgentEvent) => void {
  return (event) => {
    // The text is made safe before the colour codes are added.
    if (event.type === "note") {
      cliIo().stderr.write(`${tty ? `${colour(33, "!")} ` : ""}${safeText(`note: ${event.message}`)}\n`);
    } else if (event.type === "broker") {
      say(`verify ${event.stage}: ${event.detail} (${event.ms} ms)`);
    } else if (event.type === "hook") {
      say(`hook ${event.what}: done (${event.ms} ms)`);
    } else {
      // The library does not know the CLI's flags: the pin's flag is named here.
      const detail =
        event.step === "fetch-ca"
          ? event.detail.replace("(not pinned)", "(not pinned: pin it with --ca-fingerprint)")
          : event.detail;
      const line = safeText(`[${event.index}/${event.total}] ${event.step}: ${detail} (${event.ms} ms)`);
      cliIo().stderr.write(`${tty ? `${colour(32, "✔")} ` : ""}${line}\n`);
    }
  };
}

/** A run's events: rendered, then handed to what the program that runs the CLI injected. */
export function events(
  state: { inject?: { onEvent?: (event: AgentEvent) => void } },
  tty: boolean,
): (event: AgentEvent) => void {
  const render = progress(tty);
  return (event) => {
    render(event);
    state.inject?.onEvent?.(event);
  };
}
