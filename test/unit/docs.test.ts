import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

/** The user documentation: the README and one page per topic in docs/. */
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const DOCS = readdirSync(join(ROOT, "docs"))
  .filter((name) => name.endsWith(".md"))
  .map((name) => `docs/${name}`);
const PAGES = ["README.md", ...DOCS];
const read = (page: string) => readFileSync(join(ROOT, page), "utf8");

/** The text outside fenced code blocks, line by line (a `#` in a shell example is no heading). */
function prose(text: string): string[] {
  let fenced = false;
  return text.split("\n").map((line) => {
    if (line.startsWith("```")) fenced = !fenced;
    return fenced || line.startsWith("```") ? "" : line;
  });
}

/** A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces as hyphens. */
function slug(heading: string): string {
  return heading
    .replace(/`/g, "")
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/ /g, "-");
}

/** A page's headings: level and text. */
function headings(text: string): { level: number; text: string }[] {
  return prose(text).flatMap((line) => {
    const m = /^(#{1,6}) (.+)$/.exec(line);
    return m ? [{ level: m[1]!.length, text: m[2]! }] : [];
  });
}

/** The anchors a page has, with GitHub's -1, -2 for repeated ones. */
function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const h of headings(text)) {
    const base = slug(h.text);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

describe("the documentation", () => {
  it("every page of docs/ opens with its own table of contents: a link to each section and subsection, in order", () => {
    for (const page of DOCS) {
      const lines = read(page).split("\n");
      expect(lines[0], page).toMatch(/^# /);
      const toc = lines.slice(2, lines.indexOf("", 2));
      const expected = headings(read(page))
        .filter((h) => h.level === 2 || h.level === 3)
        .map((h) => `${h.level === 3 ? "  " : ""}- [${h.text.replace(/`/g, "")}](#${slug(h.text)})`);
      expect(expected.length, `${page} has sections`).toBeGreaterThanOrEqual(2);
      expect(toc, page).toEqual(expected);
    }
  });

  it("the README is short and lists every page of docs/", () => {
    const readme = read("README.md");
    expect(readme.split("\n").length).toBeLessThanOrEqual(250);
    for (const page of DOCS) expect(readme, page).toContain(`](${page})`);
  });

  it("names no part of the project's own process (issue numbers) and no path outside the repository", () => {
    for (const page of PAGES) {
      const text = read(page);
      expect(text, page).not.toMatch(/\bissues? #?\d+/i);
      expect(text, page).not.toMatch(/\.\.\/shared|\/work\//);
      // Every relative path a page names, in a link or in code, stays inside the repository.
      for (const m of text.matchAll(/(?:\]\(|`)(\.\.\/[^)`#\s]*)/g)) {
        const target = normalize(join(dirname(join(ROOT, page)), m[1]!));
        expect(relative(ROOT, target).startsWith(".."), `${page}: ${m[1]}`).toBe(false);
      }
    }
  });

  it("every link to a page of the repository leads to a file there, and to a heading it has", () => {
    let checked = 0;
    for (const page of PAGES) {
      for (const m of read(page).matchAll(/\]\(([^)\s]+)\)/g)) {
        const link = m[1]!;
        if (/^[a-z]+:/.test(link)) continue; // https:, mailto:
        const [path, anchor] = link.split("#") as [string, string | undefined];
        const target = path === "" ? join(ROOT, page) : join(dirname(join(ROOT, page)), path);
        expect(existsSync(target), `${page}: ${link}`).toBe(true);
        if (anchor !== undefined) expect(anchors(readFileSync(target, "utf8")), `${page}: ${link}`).toContain(anchor);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(30);
  });
});
