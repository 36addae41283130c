/**
 * The secrets of a run in every form a platform could echo them back in, and their redaction from
 * what the CLI prints. A platform (or whoever answers in its place) saw the password as the run
 * sent it: as it is, JSON-escaped in a login's body, in base64 in HTTP Basic's `user:password`,
 * URL-encoded in a form; and it issued the token, which it can quote in part.
 */

/** The shortest slice of a secret redacted wherever it appears (a token's signature, part of its claims). */
const SLICE = 16;
/** The shortest run of a secret's own bytes in base64 redacted inside other base64 (shorter ones match by chance). */
const BASE64_RUN = 8;
/** The shortest form looked for: shorter secrets are not held (see {@link Redactor.add}). */
const SHORTEST = 4;
/** What a redacted part becomes. */
const MARK = "<redacted>";
/** Where a summary cut a text short: a secret cut there leaves its start. */
const CUT = /\.\.\.|\u2026/g;

/** `text`'s JSON string escaping, and with every non-ASCII character as `\uXXXX` (as Python writes JSON), in either case. */
function jsonForms(text: string): string[] {
  const json = JSON.stringify(text).slice(1, -1);
  const ascii = json.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  return [json, ascii, ascii.replace(/\\u[0-9a-f]{4}/g, (u) => `\\u${u.slice(2).toUpperCase()}`)];
}

/**
 * `text`'s UTF-8 in base64 and base64url, without padding (a server may strip it); with `runs`,
 * also the characters that encode only its own bytes at each of base64's three alignments, so
 * that it is found inside the base64 of anything that holds it (`someone:password`).
 */
function base64Forms(text: string, runs: boolean): string[] {
  const bytes = Buffer.from(text, "utf8");
  const forms = [bytes.toString("base64").replace(/=+$/, "")];
  for (let align = 0; runs && align < 3; align++) {
    const b64 = Buffer.concat([Buffer.alloc(align), bytes]).toString("base64");
    const run = b64.slice(4 * Math.ceil(align / 3), 4 * Math.floor((align + bytes.length) / 3));
    if (run.length >= BASE64_RUN) forms.push(run);
  }
  return forms.flatMap((f) => [f, f.replace(/\+/g, "-").replace(/\//g, "_")]);
}

/** Every form `secret` can have taken on the wire or in a reply's summary, as `users`' password or alone. */
function formsOf(secret: string, users: Iterable<string>): string[] {
  const flat = secret.replace(/\s+/g, " ");
  return [
    secret,
    ...jsonForms(secret),
    encodeURIComponent(secret),
    new URLSearchParams({ s: secret }).toString().slice(2),
    flat,
    flat.trim(),
    ...base64Forms(secret, true),
    ...[...users].flatMap((user) => base64Forms(`${user}:${secret}`, false)),
  ];
}

/** The secrets a run holds, and the redaction of every form of them from text and from values to print. */
export class Redactor {
  private readonly secrets = new Set<string>();
  private readonly users = new Set<string>();
  /** Every form of every secret (overlapping finds are merged, so no order is needed). */
  private readonly forms = new Set<string>();
  /** Every slice of SLICE characters of every secret. */
  private readonly slices = new Set<string>();

  /** Holds `secret` (shorter than four characters: too common to redact), and the user whose password it is. */
  add(secret: string, user?: string): void {
    const newUser = user !== undefined && user !== "" && !this.users.has(user);
    if (newUser) this.users.add(user);
    if (secret.length >= SHORTEST && !this.secrets.has(secret)) {
      this.secrets.add(secret);
      this.keep(formsOf(secret, this.users));
      for (let i = 0; i + SLICE <= secret.length; i++) this.slices.add(secret.slice(i, i + SLICE));
    }
    if (newUser) this.keep([...this.secrets].flatMap((s) => base64Forms(`${user}:${s}`, false)));
  }

  private keep(forms: string[]): void {
    for (const form of forms) if (form.length >= SHORTEST) this.forms.add(form);
  }

  /** `text` with every form of every secret held, any slice of 16 characters of one, and one's start cut short by a summary, replaced. */
  text(text: string): string {
    if (this.forms.size === 0) return text;
    return replaceRanges(text, [...this.whole(text), ...this.sliced(text), ...this.cutShort(text)]);
  }

  /**
   * `value` as JSON, each string (and key) redacted before it is escaped: escaping changes a secret
   * that holds a quote, a backslash or a control character, and would hide it from {@link text}.
   */
  json(value: unknown, indent?: number): string {
    return JSON.stringify(
      value,
      (_key, v: unknown) => {
        if (typeof v === "string") return this.text(v);
        if (v === null || typeof v !== "object" || Array.isArray(v)) return v;
        const entries = Object.entries(v);
        return entries.some(([k]) => this.text(k) !== k)
          ? Object.fromEntries(entries.map(([k, x]) => [this.text(k), x]))
          : v;
      },
      indent,
    );
  }

  private *whole(text: string): Generator<[number, number]> {
    for (const form of this.forms)
      for (let at = text.indexOf(form); at >= 0; at = text.indexOf(form, at + 1)) yield [at, at + form.length];
  }

  private *sliced(text: string): Generator<[number, number]> {
    for (let at = 0; this.slices.size > 0 && at + SLICE <= text.length; at++)
      if (this.slices.has(text.slice(at, at + SLICE))) yield [at, at + SLICE];
  }

  /** The start of a form (four characters or more) that ends where a summary cut the text short. */
  private *cutShort(text: string): Generator<[number, number]> {
    for (const { index: at } of text.matchAll(CUT)) {
      for (const form of this.forms) {
        for (let n = Math.min(form.length - 1, at); n >= SHORTEST; n--) {
          if (text.startsWith(form.slice(0, n), at - n)) {
            yield [at - n, at];
            break;
          }
        }
      }
    }
  }
}

/** `text` with each range (overlapping or touching ones as one) replaced by the mark. */
function replaceRanges(text: string, ranges: Array<[number, number]>): string {
  if (ranges.length === 0) return text;
  ranges.sort((a, b) => a[0] - b[0]);
  let out = "";
  let done = 0;
  let [start, end] = ranges[0]!;
  for (const [from, to] of ranges.slice(1)) {
    if (from <= end) end = Math.max(end, to);
    else {
      out += text.slice(done, start) + MARK;
      done = end;
      [start, end] = [from, to];
    }
  }
  return out + text.slice(done, start) + MARK + text.slice(end);
}
