#!/usr/bin/env node
// Wall time of one `cert-retriever enroll` (a whole process, as a factory script runs it) against
// the lab platform on 127.0.0.1: median, min and max of N runs per key type. Not a test.
// Usage: npm run build && node bench/enroll-wall.mjs [runs=10]
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { softwareCrypto, startLab, setDevice } from "../dist/index.js";

const runs = Number(process.argv[2] ?? 10);
const bin = fileURLToPath(new URL("../bin/cert-retriever.mjs", import.meta.url));
const password = "bench-password";

async function measure(keyType, certProfile) {
  const dir = mkdtempSync(join(tmpdir(), "cr-bench-"));
  const lab = await startLab({ dir, host: "127.0.0.1", port: 0, crypto: softwareCrypto(), certProfile, autoRegister: false, adminPassword: password, tokenLifetime: 420 });
  const times = [];
  try {
    for (let i = 0; i < runs; i++) {
      const id = `bench-${keyType}-${i}`;
      await setDevice(dir, id, "add");
      const start = process.hrtime.bigint();
      // The lab runs in this process, so the CLI is spawned asynchronously (spawnSync would block it).
      const code = await new Promise((resolve) => {
        const child = spawn(process.execPath, [bin, "enroll", "--platform", lab.url, "--device-id", id, "--username", "admin", "--password-stdin", "--key-type", keyType, "--out", join(dir, "out", id)], { stdio: ["pipe", "ignore", "ignore"] });
        child.stdin.end(password);
        child.on("close", resolve);
      });
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      if (code !== 0) throw new Error(`enroll ${keyType} exited ${code}`);
      times.push(ms);
    }
  } finally {
    await lab.close();
    rmSync(dir, { recursive: true, force: true });
  }
  times.sort((a, b) => a - b);
  const mid = times.length / 2;
  const median = times.length % 2 ? times[Math.floor(mid)] : (times[mid - 1] + times[mid]) / 2;
  return { keyType, certProfile, runs, median, min: times[0], max: times.at(-1) };
}

const rows = [await measure("rsa-2048", "cfree"), await measure("ec-p256", "open")];
console.log(`node ${process.version}, ${runs} runs each, lab on 127.0.0.1`);
console.log("key type   profile  median ms   min ms   max ms");
for (const r of rows) {
  console.log(`${r.keyType.padEnd(10)} ${r.certProfile.padEnd(8)} ${r.median.toFixed(0).padStart(9)} ${r.min.toFixed(0).padStart(8)} ${r.max.toFixed(0).padStart(8)}`);
}
