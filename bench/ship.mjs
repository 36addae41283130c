// The shipped forms in `npm run bench` (bench/run.mjs plans these rows among its own, interleaved):
// the self-contained executable (dist/cert-retriever-linux-x64, Node 26 with its start-up
// snapshot; built here if missing or older than the single file) against the openssl + curl
// floor and its own runtime's `node -e 0`, and the Debian package's command on this Node with the
// snapshot its postinst makes (its launcher, pointed at a snapshot made here). Then each target
// as a ratio to its floor, and by how much a target is missed.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const at = (p) => fileURLToPath(new URL(`../${p}`, import.meta.url));
const EXE = at("dist/cert-retriever-linux-x64");
const BUNDLE = at("dist/cert-retriever.mjs");
/** The executable's runtime alone: the same Node 26 binary, stripped, that scripts/sea.mjs builds it from. */
const NODE26 = at("node_modules/.cache/node-26.12.1/x64/node");

/** The Debian package's launcher in `work`, its snapshot made by this Node as postinst makes it. */
function debCommand(work) {
  const lib = join(work, "deb-lib");
  execFileSync("mkdir", ["-p", lib]);
  execFileSync("cp", [BUNDLE, join(lib, "cert-retriever.mjs")]);
  execFileSync(
    process.execPath,
    ["--snapshot-blob", join(lib, "snapshot.blob"), "--build-snapshot", join(lib, "cert-retriever.mjs")],
    {
      cwd: work,
      stdio: "ignore",
    },
  );
  writeFileSync(join(lib, "snapshot.node"), execFileSync("stat", ["-L", "-c", "%d %i %s %Y", process.execPath]));
  const launcher = readFileSync(at("scripts/deb/launcher.sh"), "utf8")
    .replace("lib=/usr/lib/cert-retriever", `lib=${lib}`)
    .replaceAll("/usr/bin/node", process.execPath);
  writeFileSync(join(work, "deb-cert-retriever"), launcher, { mode: 0o755 });
  return join(work, "deb-cert-retriever");
}

/** Plans the rows (through run.mjs's `measure`); returns the report to print once they are measured. */
export async function planShip({ measure, timed, enrollArgs, device, floorRows, work, input }) {
  if (process.arch !== "x64") return { report: () => console.log("\nship: the executable rows need x64") };
  if (!existsSync(EXE) || statSync(EXE).mtimeMs < statSync(BUNDLE).mtimeMs)
    execFileSync(process.execPath, [at("scripts/sea.mjs"), "x64"], { stdio: ["ignore", "ignore", "inherit"] });
  const deb = debCommand(work);
  const rows = {
    node26: measure("node 26 -e 0 (the executable's runtime)", () => timed([NODE26, "-e", "0"])),
    exeHelp: measure("--help, executable", () => timed([EXE, "--help"])),
    debHelp: measure(`--help, Debian package's command, node ${process.version}`, () => timed([deb, "--help"])),
  };
  for (const keyType of ["ec-p256", "rsa-2048"]) {
    const args = async (who, i) => enrollArgs("-", await device(`ship-${who}-${keyType}`, i), keyType).slice(2);
    rows[`exe-${keyType}`] = measure(`enroll ${keyType}, executable`, async (i) =>
      timed([EXE, ...(await args("exe", i))], { input }),
    );
    rows[`deb-${keyType}`] = measure(
      `enroll ${keyType}, Debian package's command, node ${process.version}`,
      async (i) => timed([deb, ...(await args("deb", i))], { input }),
    );
  }
  return { report: (summary) => report(rows, floorRows, summary) };
}

/** The rows, then each target: the measured ratio, ✓ or ✗, and by how much a missed one is missed. */
function report(rows, floorRows, summary) {
  const s = Object.fromEntries(
    Object.entries({ ...rows, ...floorRows }).map(([k, r]) => [k, summary(r.name, r.samples)]),
  );
  console.log("\nthe shipped forms (same invocation, interleaved with the rows above)\n");
  console.log("| run | median ms | min | max | peak RSS MB |");
  console.log("|---|---:|---:|---:|---:|");
  for (const r of Object.values(s))
    console.log(
      `| ${r.name} | ${r.median.toFixed(0)} | ${r.min.toFixed(0)} | ${r.max.toFixed(0)} | ${r.rss.toFixed(0)} (max ${r.rssMax.toFixed(0)}) |`,
    );
  const ratio = (row, floor, limit, label) => {
    const x = s[row].median / s[floor].median;
    const missed =
      x <= limit
        ? ""
        : `missed by ${(((x - limit) / limit) * 100).toFixed(0)}% (+${(s[row].median - limit * s[floor].median).toFixed(0)} ms over the target)`;
    return [
      label,
      `${x.toFixed(2)}x (${s[row].median.toFixed(0)} / ${s[floor].median.toFixed(0)} ms)`,
      x <= limit,
      missed,
    ];
  };
  const rss = Math.max(s["exe-ec-p256"].rssMax, s["exe-rsa-2048"].rssMax);
  const targets = [
    ratio("exe-ec-p256", "ec-p256", 1.25, "executable enroll ec-p256 <= 1.25 x openssl + curl"),
    ratio("exe-rsa-2048", "rsa-2048", 1.1, "executable enroll rsa-2048 <= 1.1 x openssl + curl"),
    ratio("exeHelp", "node26", 1.3, "executable --help <= 1.3 x its runtime's node -e 0"),
    ratio(
      "deb-ec-p256",
      "ec-p256",
      1.4,
      `Debian package's enroll ec-p256 (node ${process.version}, snapshot) <= 1.4 x openssl + curl`,
    ),
    [
      "peak RSS of the executable's enroll <= 60 MB",
      `${rss.toFixed(0)} MB`,
      rss <= 60,
      rss <= 60 ? "" : `missed by ${(rss - 60).toFixed(0)} MB`,
    ],
  ];
  console.log("\n| target | measured | | missed by |");
  console.log("|---|---:|:-:|---|");
  for (const [label, value, met, missed] of targets)
    console.log(`| ${label} | ${value} | ${met ? "✓" : "✗"} | ${missed} |`);
}
