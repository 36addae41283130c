import { execFileSync } from "node:child_process";

/** A real terminal: a tmux server of our own, a session running `script`. */
export class Terminal {
  private readonly socket = `cr-test-${process.pid}-${Math.random().toString(36).slice(2)}`;

  constructor(script: string) {
    this.tmux("new-session", "-d", "-s", "t", "-x", "160", "-y", "40", script);
  }

  send(...keys: string[]): void {
    this.tmux("send-keys", "-t", "t", ...keys);
  }

  /** Types text literally (no key names). */
  type(text: string): void {
    this.tmux("send-keys", "-t", "t", "-l", text);
  }

  screen(): string {
    return this.tmux("capture-pane", "-p", "-t", "t", "-S", "-200");
  }

  async waitFor(pattern: RegExp, ms = 20_000): Promise<string> {
    const until = Date.now() + ms;
    for (;;) {
      const text = this.screen();
      if (pattern.test(text)) return text;
      if (Date.now() > until) throw new Error(`the terminal never showed ${pattern}:\n${text}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  close(): void {
    try {
      this.tmux("kill-server");
    } catch {
      // already gone
    }
  }

  private tmux(...args: string[]): string {
    return execFileSync("tmux", ["-L", this.socket, "-f", "/dev/null", ...args], { encoding: "utf8" });
  }
}
