// The src/ files a reader follows from one entry file: every file reachable by its imports (static and
// dynamic, relative specifiers), and their lines. usage: node scripts/reachable-files.mjs src/cli/commands/enroll.ts
import { existsSync, readFileSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";

const entry = resolve(process.argv[2]);
const seen = new Set();
const todo = [entry];
const spec = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["'](\.{1,2}\/[^"']+)["']/g;
while (todo.length) {
  const file = todo.pop();
  if (seen.has(file)) continue;
  seen.add(file);
  const text = readFileSync(file, "utf8");
  for (const m of text.matchAll(spec)) {
    const target = resolve(dirname(file), m[1]).replace(/\.js$/, ".ts");
    if (existsSync(target)) todo.push(target);
  }
}
const files = [...seen].map((f) => relative(process.cwd(), f)).sort();
console.log(files.join("\n"));
console.log(
  `${files.length} files, ${files.reduce((n, f) => n + readFileSync(f, "utf8").split("\n").length, 0)} lines`,
);
