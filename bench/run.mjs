#!/usr/bin/env node
// `npm run bench`: start-up and enrollment against the floors, side by side, in one invocation,
// against the lab platform on 127.0.0.1; then the factory line rate under dojot's login limit.
// A measurement, not a test: it asserts nothing. Rows are measured interleaved (see `plan`). Usage: node bench/run.mjs [runs=10] [devices=12]
// Then the fleet simulation (bench/fleet.mjs; FLEET_DEVICES=100 for a quicker one).
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { setDevice, startLab } from "cert-retriever-lab";
import { softwareCrypto } from "../dist/index.js";
import { planShip } from "./ship.mjs";

const RUNS = Number(process.argv[2] ?? 10);
const DEVICES = Number(process.argv[3] ?? 12);
const SOURCE = fileURLToPath(new URL("../bin/cert-retriever.mjs", import.meta.url));
const BUNDLE = fileURLToPath(new URL("../dist/cert-retriever.mjs", import.meta.url));
const PASSWORD = "bench-password";
const work = mkdtempSync(join(tmpdir(), "cr-bench-"));
let seq = 0;

/** Runs a command (argv) under /usr/bin/time; resolves wall ms and peak RSS (MB). */
function timed(argv, { input, env } = {}) {
  const rssFile = join(work, `rss-${seq++}`);
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn("/usr/bin/time", ["-f", "%M", "-o", rssFile, ...argv], {
      stdio: ["pipe", "ignore", "pipe"],
      env: { ...process.env, ...env },
    });
    let err = "";
    child.stderr.on("data", (d) => (err += d));
    child.stdin.end(input ?? "");
    child.on("close", (code) => {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      if (code !== 0) return reject(new Error(`${argv.join(" ")} exited ${code}: ${err}`));
      resolve({ ms, rssMb: Number(readFileSync(rssFile, "utf8").trim().split("\n").pop()) / 1024 });
    });
  });
}

/** Median, min, max and RSS of one row's samples. */
function summary(name, samples) {
  const ms = samples.map((s) => s.ms).sort((a, b) => a - b);
  const rss = samples.map((s) => s.rssMb).sort((a, b) => a - b);
  const median = (xs) => (xs.length % 2 ? xs[(xs.length - 1) / 2] : (xs[xs.length / 2 - 1] + xs[xs.length / 2]) / 2);
  return { name, median: median(ms), min: ms[0], max: ms.at(-1), rss: median(rss), rssMax: rss.at(-1) };
}

const lab = await startLab({
  dir: join(work, "lab"),
  host: "127.0.0.1",
  port: 0,
  crypto: softwareCrypto(),
  certProfile: "open",
  autoRegister: false,
  adminPassword: PASSWORD,
  tokenLifetime: 420,
});
const enrollArgs = (bin, id, keyType) => [
  process.execPath,
  bin,
  "enroll",
  "--platform",
  lab.url,
  "--api",
  "dojot-legacy",
  "--device-id",
  id,
  "--username",
  "admin",
  "--password-stdin",
  "--key-type",
  keyType,
  "--out",
  join(work, "out", id),
  "--non-interactive",
];
const device = async (prefix, i) => {
  const id = `${prefix}-${i}`;
  await setDevice(join(work, "lab"), id, "add");
  return id;
};

// (c) the floor for the work: openssl makes key and CSR, curl does the three calls.
writeFileSync(
  join(work, "floor.sh"),
  `set -e
cd "$1"; key="$2"; id="$3"; url="$4"
if [ "$key" = ec-p256 ]; then openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out k.pem 2>/dev/null
else openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out k.pem 2>/dev/null; fi
openssl req -new -key k.pem -subj "/CN=$id" -sha256 -outform DER -out csr.der
jwt=$(curl -sf -H 'content-type: application/json' -d "{\\"username\\":\\"admin\\",\\"passwd\\":\\"$(cat pw)\\"}" "$url/auth" | sed 's/.*"jwt":"\\([^"]*\\)".*/\\1/')
curl -sf -H "authorization: Bearer $jwt" "$url/ca/IOTmidCA" > ca.json
printf '{"passwd":"dojot","certificate":"%s"}' "$(base64 -w0 csr.der)" > body.json
curl -sf -H "authorization: Bearer $jwt" -H 'content-type: application/json' --data @body.json "$url/sign/$id/pkcs10" > crt.json
`,
);

// A SoftHSM2 token for the token-key rows (none without softhsm2-util).
const SOFTHSM = "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so";
let softToken;
try {
  const dir = join(work, "softhsm");
  execFileSync("mkdir", ["-p", join(dir, "tokens")]);
  writeFileSync(
    join(dir, "softhsm2.conf"),
    `directories.tokendir = ${join(dir, "tokens")}\nobjectstore.backend = file\n`,
  );
  writeFileSync(join(dir, "pin"), "246810\n", { mode: 0o600 });
  const env = { SOFTHSM2_CONF: join(dir, "softhsm2.conf") };
  execFileSync(
    "softhsm2-util",
    ["--init-token", "--free", "--label", "bench", "--pin", "246810", "--so-pin", "13579135"],
    { env: { ...process.env, ...env }, stdio: "ignore" },
  );
  softToken = { env, uri: `pkcs11:token=bench?module-path=${SOFTHSM}&pin-source=file:${join(dir, "pin")}` };
} catch {
  console.error("bench: no SoftHSM2 (softhsm2-util), so no token-key rows");
}

// Every Node to measure: this one, and any named in CERT_RETRIEVER_BENCH_NODES (paths, colon-separated),
// e.g. CERT_RETRIEVER_BENCH_NODES=/opt/node24/bin/node npm run bench.
const nodes = [process.execPath, ...(process.env.CERT_RETRIEVER_BENCH_NODES ?? "").split(":").filter(Boolean)];
// Every run of every row, interleaved (run i of each row, then run i+1 of each): a machine that
// slows down for a while slows every row alike, so rows compare within one invocation.
const plan = [];
const measure = (name, make) => {
  const row = { name, make, samples: [] };
  plan.push(row);
  return row;
};
const floorRows = {};
for (const keyType of ["ec-p256", "rsa-2048"]) {
  floorRows[keyType] = measure(`openssl + 3 curl, ${keyType} (work floor)`, async (i) => {
    const dir = join(work, `floor-${keyType}-${i}`);
    execFileSync("mkdir", ["-p", dir]);
    writeFileSync(join(dir, "pw"), PASSWORD);
    const id = await device(`floor-${keyType}`, i);
    return timed(["bash", join(work, "floor.sh"), dir, keyType, id, lab.url]);
  });
}
// CERT_RETRIEVER_BENCH_BEFORE=/path/to/an/older/cert-retriever.mjs adds its rows, for before/after in one run.
const BEFORE = process.env.CERT_RETRIEVER_BENCH_BEFORE;
const planned = [];
for (const [n, node] of nodes.entries()) {
  const version = execFileSync(node, ["--version"], { encoding: "utf8" }).trim();
  // The single file's code cache, one directory per Node, filled by one run of each command first.
  const cache = { CERT_RETRIEVER_CACHE_DIR: join(work, `cache-${n}`) };
  for (const args of [["--help"], ["--version"]]) await timed([node, BUNDLE, ...args], { env: cache });
  for (const keyType of ["ec-p256", "rsa-2048"])
    await timed([node, ...enrollArgs(BUNDLE, await device(`${n}-warm-${keyType}`, 0), keyType).slice(1)], {
      input: PASSWORD,
      env: cache,
    });
  const rows = [];
  rows.push(measure("node -e 0 (runtime floor)", () => timed([node, "-e", "0"])));
  rows.push(measure("--help, from source", () => timed([node, SOURCE, "--help"])));
  for (const [label, bin, env] of [
    ["single file", BUNDLE, {}],
    ["single file, code cache", BUNDLE, cache],
    ...(BEFORE ? [["single file before", BEFORE, {}]] : []),
  ]) {
    rows.push(measure(`--help, ${label}`, () => timed([node, bin, "--help"], { env })));
    rows.push(measure(`--version, ${label}`, () => timed([node, bin, "--version"], { env })));
  }
  for (const keyType of ["ec-p256", "rsa-2048"]) {
    rows.push(floorRows[keyType]);
    for (const [label, bin, env] of [
      ["from source", SOURCE, {}],
      ["single file", BUNDLE, {}],
      ["single file, code cache", BUNDLE, cache],
      ...(BEFORE ? [["single file before", BEFORE, {}]] : []),
    ]) {
      rows.push(
        measure(`enroll ${keyType}, ${label}`, async (i) =>
          timed(
            [
              node,
              ...enrollArgs(bin, await device(`${n}-${keyType}-${label.replace(/\W+/g, "-")}`, i), keyType).slice(1),
            ],
            { input: PASSWORD, env },
          ),
        ),
      );
    }
  }
  // The same enrollment with the key made in a SoftHSM2 token (--key pkcs11:), where SoftHSM2 is installed.
  if (softToken) {
    for (const keyType of ["ec-p256", "rsa-2048"]) {
      rows.push(
        measure(`enroll ${keyType}, single file, code cache, token key (SoftHSM2)`, async (i) => {
          const id = await device(`${n}-${keyType}-token`, i);
          return timed([node, ...enrollArgs(BUNDLE, id, keyType).slice(1), "--key", softToken.uri], {
            input: PASSWORD,
            env: { ...cache, ...softToken.env },
          });
        }),
      );
    }
  }
  planned.push({ version, rows });
}
// The executable and the Debian package's command (bench/ship.mjs), interleaved with the rest.
const ship = await planShip({ measure, timed, enrollArgs, device, floorRows, work, input: PASSWORD });
for (let i = 0; i < RUNS; i++) for (const row of plan) row.samples.push(await row.make(i));
const floors = Object.fromEntries(Object.entries(floorRows).map(([k, row]) => [k, summary(row.name, row.samples)]));
const results = planned.map(({ version, rows }) => ({
  version,
  rows: rows.map((row) => summary(row.name, row.samples)),
}));
await lab.close();

console.log(
  `cert-retriever benchmark: ${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; ${RUNS} runs each; lab platform (EJBCA-REST API) in this process (node ${process.version}) on 127.0.0.1`,
);
console.log(`"code cache": CERT_RETRIEVER_CACHE_DIR set, the cache made by an earlier run of the same command`);
const verdicts = [];
for (const { version, rows } of results) {
  const floor = rows[0].median;
  const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
  console.log("");
  console.log(`node ${version}`);
  console.log("");
  console.log("| run | median ms | min | max | vs node -e 0 | vs work floor | peak RSS MB |");
  console.log("|---|---:|---:|---:|---:|---:|---:|");
  for (const r of rows) {
    const key = /(ec-p256|rsa-2048)/.exec(r.name)?.[1];
    const workRow = key && !r.name.startsWith("openssl") ? floors[key] : undefined;
    const vsFloor = r === rows[0] ? "" : `+${(r.median - floor).toFixed(0)}`;
    const vsWork = workRow
      ? `${(r.median / workRow.median).toFixed(2)}x (+${(r.median - workRow.median).toFixed(0)})`
      : "";
    console.log(
      `| ${r.name} | ${r.median.toFixed(0)} | ${r.min.toFixed(0)} | ${r.max.toFixed(0)} | ${vsFloor} | ${vsWork} | ${r.rss.toFixed(0)} (max ${r.rssMax.toFixed(0)}) |`,
    );
  }
  const over = (name) => byName[name].median - floor;
  // Each target, measured without and with the code cache.
  const both = (make) =>
    ["single file", "single file, code cache", ...(BEFORE ? ["single file before"] : [])].map(make);
  const ms = (name, limit) =>
    both((label) => [`+${over(`${name}, ${label}`).toFixed(0)} ms`, over(`${name}, ${label}`) <= limit]);
  verdicts.push(
    [version, "single-file enroll ec-p256 <= node -e 0 + 150 ms", ...ms("enroll ec-p256", 150)],
    [
      version,
      "single-file enroll rsa-2048 <= 1.2 x openssl + curl floor",
      ...both((label) => {
        const ratio = byName[`enroll rsa-2048, ${label}`].median / floors["rsa-2048"].median;
        return [`${ratio.toFixed(2)}x`, ratio <= 1.2];
      }),
    ],
    [version, "--help <= node -e 0 + 40 ms (single file)", ...ms("--help", 40)],
    [version, "--version <= node -e 0 + 40 ms (single file)", ...ms("--version", 40)],
    [
      version,
      "peak RSS of single-file enroll <= 80 MB",
      ...both((label) => {
        const rss = Math.max(
          ...rows.filter((r) => r.name.startsWith("enroll") && r.name.endsWith(`, ${label}`)).map((r) => r.rssMax),
        );
        return [`${rss.toFixed(0)} MB`, rss <= 80];
      }),
    ],
  );
}
console.log("");
console.log(`| node | target | single file | | with code cache | |${BEFORE ? " before | |" : ""}`);
console.log(`|---|---|---:|:-:|---:|:-:|${BEFORE ? "---:|:-:|" : ""}`);
for (const [version, target, ...measured] of verdicts)
  console.log(
    `| ${version} | ${target} | ${measured.map(([value, met]) => `${value} | ${met ? "✓" : "✗"}`).join(" | ")} |`,
  );
ship.report(summary);

// The factory line: N devices through one gateway that allows 5 logins a minute and 40 an hour.
const SCALE = 10;
const limited = await startLab({
  dir: join(work, "lab"),
  host: "127.0.0.1",
  port: 0,
  crypto: softwareCrypto(),
  certProfile: "open",
  autoRegister: true,
  adminPassword: PASSWORD,
  tokenLifetime: 420,
  authRateLimit: [
    { limit: 5, windowMs: 60_000 },
    { limit: 40, windowMs: 3_600_000 },
  ],
  rateLimitTimeScale: SCALE,
});
const line = async (label, perDevice) => {
  const start = process.hrtime.bigint();
  for (let i = 0; i < DEVICES; i++) await perDevice(`${label}-${i}`);
  return Number(process.hrtime.bigint() - start) / 1e6;
};
const run = (argv, input) => timed([process.execPath, BUNDLE, ...argv], { input });
const lineArgs = (id) => [
  "enroll",
  "--platform",
  limited.url,
  "--api",
  "dojot-legacy",
  "--device-id",
  id,
  "--key-type",
  "ec-p256",
  "--out",
  join(work, "line", id),
  "--non-interactive",
  "--retries",
  "50",
  "--deadline",
  "30m",
];
const perLoginMs = await line("login-each", (id) =>
  run([...lineArgs(id), "--username", "admin", "--password-stdin"], PASSWORD),
);
const token = join(work, "station.token");
const tokenMs = await line("token", async (id) => {
  if (id.endsWith("-0"))
    await run(
      ["login", "--platform", limited.url, "--username", "admin", "--password-stdin", "--token-file", token],
      PASSWORD,
    );
  return run([...lineArgs(id), "--token-file", token]);
});
await limited.close();
const perLoginRate = DEVICES / ((perLoginMs * SCALE) / 60_000); // in the gateway's minutes: the limiter bounds it
const tokenRate = DEVICES / (tokenMs / 60_000); // in real minutes: it never meets the limiter
console.log("");
console.log(`factory line, ${DEVICES} devices, ec-p256, single file, one gateway limiting /auth to 5/min and 40/h.`);
console.log(
  `The gateway's limiter runs on a clock ${SCALE}x faster than real time (a minute of its limit passes in ${60 / SCALE} s), so the login-per-device path, which the limiter bounds, is reported in the gateway's minutes; the token path logs in once and never meets the limiter, so it is reported in real minutes.`,
);
console.log(`| path | devices | elapsed s (real) | devices per minute |`);
console.log(`|---|---:|---:|---:|`);
console.log(
  `| login per device | ${DEVICES} | ${(perLoginMs / 1000).toFixed(1)} | ${perLoginRate.toFixed(1)} (limit: 5/min, then 40/h = 0.67/min) |`,
);
console.log(`| one login, token reused | ${DEVICES} | ${(tokenMs / 1000).toFixed(1)} | ${tokenRate.toFixed(1)} |`);
console.log(
  `token path / login path: ${(tokenRate / perLoginRate).toFixed(1)}x in the first minute; past 40 devices an hour the login path falls to 0.67/min, so ${(tokenRate / (40 / 60)).toFixed(0)}x.`,
);
rmSync(work, { recursive: true, force: true });

// Messages signed per second, per key type and key store: bench/sign.mjs, in a process of its own.
execFileSync(process.execPath, [fileURLToPath(new URL("./sign.mjs", import.meta.url))], { stdio: "inherit" });
// The fleet's daily renewal check: what the platform sees of N devices over 30 simulated days (bench/fleet.mjs).
execFileSync(
  process.execPath,
  [fileURLToPath(new URL("./fleet.mjs", import.meta.url)), process.env.FLEET_DEVICES ?? "1000"],
  {
    stdio: "inherit",
  },
);
