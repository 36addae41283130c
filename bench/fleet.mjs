#!/usr/bin/env node
// The fleet's daily renewal check, simulated: N device directories (1,000 by default), each checked
// once a simulated day for D days (30 by default) at the timer's jittered time (OnCalendar=daily,
// RandomizedDelaySec=6h), with an injected clock, against the lab (x509-identity-mgmt) behind a
// proxy that counts what the platform sees: logins, requests, bytes on the wire, the busiest second.
// A measurement, not a test: it asserts nothing. Usage: node bench/fleet.mjs [devices=1000] [days=30]
// (after `npm run build`); `npm run bench` runs it after the other measurements.
import { webcrypto } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startLab } from "cert-retriever-lab";
import { createAgent, softwareCrypto, toPem } from "../dist/index.js";
// The agent's own entry to @peculiar/x509 (it loads the Reflect polyfill first).
import * as x509 from "../dist/keys/x509.js";

const DEVICES = Number(process.argv[2] ?? 1000);
const DAYS = Number(process.argv[3] ?? 30);
const PASSWORD = "bench-password";
const DAY_MS = 86_400_000;
const JITTER_MS = 6 * 3_600_000;
const CONCURRENCY = 8;
const work = mkdtempSync(join(tmpdir(), "cr-fleet-"));

/** A reverse proxy in front of `target` that counts requests, logins and bytes (both ways, headers included). */
async function countingProxy(target) {
  const counts = { requests: 0, logins: 0, bytes: 0, notModified: 0 };
  const open = new Set();
  const server = createServer((req, res) => {
    counts.requests++;
    if (req.method === "POST" && req.url === "/auth") counts.logins++;
    const up = request(new URL(req.url, target), { method: req.method, headers: req.headers }, (upRes) => {
      if (upRes.statusCode === 304) counts.notModified++;
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    req.pipe(up);
  });
  server.on("connection", (socket) => {
    open.add(socket);
    socket.on("close", () => {
      counts.bytes += socket.bytesRead + socket.bytesWritten;
      open.delete(socket);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    counts,
    /** Resolves once every connection the clients opened has closed (its bytes counted). */
    async settled() {
      while (open.size > 0) await new Promise((resolve) => setTimeout(resolve, 5));
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** A deterministic pseudo-random number in [0, 1) from two integers (the timer's RandomizedDelaySec draw). */
function draw(a, b) {
  let x = (Math.imul(a + 1, 0x9e3779b1) ^ Math.imul(b + 1, 0x85ebca6b)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d) >>> 0;
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b) >>> 0;
  return ((x ^ (x >>> 16)) >>> 0) / 2 ** 32;
}

/**
 * Each device's credentials, signed by the lab's x509-identity-mgmt CA as it signs them (CN = the
 * device id, 365 days), written as `enroll` writes them: cheaper than N enrollments, and `check`
 * reads nothing else. One device is enrolled for real first, to prove the files are the same kind.
 */
async function makeDevices(labDir, crypto) {
  const alg = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
  const caPem = readFileSync(join(labDir, "x509-ca.crt"), "utf8");
  const ca = new x509.X509Certificate(caPem);
  const caKey = await crypto.subtle.importKey(
    "pkcs8",
    x509.PemConverter.decodeFirst(readFileSync(join(labDir, "x509-ca.key"), "utf8")),
    alg,
    false,
    ["sign"],
  );
  const ids = [];
  for (let i = 0; i < DEVICES; i++) {
    const id = `f${i.toString(16).padStart(9, "0")}`;
    const dir = join(work, "devices", id);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const keys = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.create(
      {
        serialNumber: `01${webcrypto.getRandomValues(new Uint8Array(15)).reduce((s, b) => s + b.toString(16).padStart(2, "0"), "")}`,
        subject: `CN=${id}`,
        issuer: ca.subjectName,
        notBefore: new Date(now - 60_000),
        notAfter: new Date(now + 365 * DAY_MS),
        publicKey: keys.publicKey,
        signingKey: caKey,
        signingAlgorithm: alg,
        extensions: [new x509.BasicConstraintsExtension(false, undefined, true)],
      },
      crypto,
    );
    const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
    writeFileSync(join(dir, `${id}.key`), toPem(pkcs8, "PRIVATE KEY"), { mode: 0o600 });
    writeFileSync(join(dir, `${id}.crt`), toPem(cert.rawData, "CERTIFICATE"), { mode: 0o644 });
    writeFileSync(join(dir, "IOTmidCA.crt"), caPem, { mode: 0o644 });
    ids.push(id);
  }
  return ids;
}

/** One device's `check` (the library's status, as the CLI runs it) at simulated time `at`; resolves the requests it sent. */
async function check(id, platform, at) {
  let sent = 0;
  const agent = createAgent({
    network: {
      onWait: (wait) => {
        if (wait.what.includes(" to answer ")) sent++;
        return () => {};
      },
    },
    device: { id },
    store: { kind: "files", dir: join(work, "devices", id) },
    platform: { url: platform, protocol: "x509-identity-mgmt" },
    login: { username: "admin", password: async () => PASSWORD },
    renewal: { renewBefore: { fraction: 0.33 } },
    clock: () => at,
  });
  try {
    const result = await agent.status({ online: true });
    if (result.needed) throw new Error(`${id}: ${result.reason}`);
  } finally {
    await agent.close();
  }
  return sent;
}

const crypto = softwareCrypto();
const labDir = join(work, "lab");
// A CRL made anew at every request: each contact finds a CRL newer than the device's, as weekly
// contacts do with a CA that issues a CRL a day (the CA's certificate, unchanged, is answered 304).
const lab = await startLab({
  dir: labDir,
  host: "127.0.0.1",
  port: 0,
  crypto,
  certProfile: "cfree",
  autoRegister: true,
  adminPassword: PASSWORD,
  tokenLifetime: 420,
  api: "x509",
  forceCrlRenew: true,
});
const proxy = await countingProxy(lab.url);
const started = Date.now();
const ids = await makeDevices(labDir, crypto);
const madeMs = Date.now() - started;
const start = Date.now() + 60_000;
const days = [];
for (let day = 0; day < DAYS; day++) {
  const before = { ...proxy.counts };
  const perSecond = new Map();
  const runs = ids.map((id, i) => ({ id, at: start + day * DAY_MS + Math.floor(draw(i, day) * JITTER_MS) }));
  runs.sort((a, b) => a.at - b.at);
  // A few checks at once, in time order, so that one's file and socket waits overlap another's work;
  // each is counted at its own simulated second, by the requests its own agent sent.
  let next = 0;
  const worker = async () => {
    while (next < runs.length) {
      const { id, at } = runs[next++];
      const sent = await check(id, proxy.url, new Date(at));
      const second = Math.floor(at / 1000);
      perSecond.set(second, (perSecond.get(second) ?? 0) + sent);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  await proxy.settled();
  const delta = Object.fromEntries(Object.entries(proxy.counts).map(([k, v]) => [k, v - before[k]]));
  days.push({ ...delta, peak: Math.max(0, ...perSecond.values()) });
}
const wallS = (Date.now() - started - madeMs) / 1000;
await proxy.close();
await lab.close();

const sum = (rows, key) => rows.reduce((s, r) => s + r[key], 0);
const steady = days.slice(1);
const per = (rows, key) => sum(rows, key) / rows.length / DEVICES;
console.log("");
console.log(
  `fleet: ${DEVICES} devices, ${DAYS} simulated days, one check a device a day at a time drawn from the timer's 6 h window; defaults (--crl-refresh 7d); a new CRL at every request (the CA answered 304).`,
);
console.log(
  `credentials made in ${(madeMs / 1000).toFixed(1)} s; the ${DAYS * DEVICES} checks took ${wallS.toFixed(0)} s.`,
);
console.log(
  "| days | logins per device per day | requests per device per day | bytes per device per day | 304 replies per device per day | busiest second (requests) |",
);
console.log("|---|---:|---:|---:|---:|---:|");
const row = (name, rows) =>
  console.log(
    `| ${name} | ${per(rows, "logins").toFixed(3)} | ${per(rows, "requests").toFixed(3)} | ${per(rows, "bytes").toFixed(0)} | ${per(rows, "notModified").toFixed(3)} | ${Math.max(...rows.map((r) => r.peak))} |`,
  );
row("day 1 (every device's first check)", days.slice(0, 1));
if (steady.length > 0) row(`days 2-${DAYS}`, steady);
row(`all ${DAYS}`, days);
const bytesPerContact = sum(steady, "bytes") / Math.max(1, sum(steady, "logins"));
console.log(`per contact (days 2-${DAYS}): ${bytesPerContact.toFixed(0)} bytes on the wire, both ways.`);
rmSync(work, { recursive: true, force: true });
