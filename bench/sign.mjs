#!/usr/bin/env node
// Messages signed per second by a device application that uses the library: the stored key opened
// once (agent.openSigner()), then one message after another, per key type and key store (a key file;
// a SoftHSM2 token where softhsm2-util is installed). A measurement, not a test: it asserts nothing.
// `npm run bench` runs it after bench/run.mjs; alone: node bench/sign.mjs [seconds-per-row=2]
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startLab } from "cert-retriever-lab";
import { createAgent, softwareCrypto } from "../dist/index.js";

const SECONDS = Number(process.argv[2] ?? 2);
const PASSWORD = "bench-password";
const SOFTHSM = "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so";
const work = mkdtempSync(join(tmpdir(), "cr-bench-sign-"));

/** A SoftHSM2 token of its own, or none without softhsm2-util. Its configuration is this process's (SoftHSM2 reads it at load). */
function softToken() {
  try {
    const dir = join(work, "softhsm");
    execFileSync("mkdir", ["-p", join(dir, "tokens")]);
    writeFileSync(
      join(dir, "softhsm2.conf"),
      `directories.tokendir = ${join(dir, "tokens")}\nobjectstore.backend = file\n`,
    );
    process.env.SOFTHSM2_CONF = join(dir, "softhsm2.conf");
    execFileSync(
      "softhsm2-util",
      ["--init-token", "--free", "--label", "bench", "--pin", "246810", "--so-pin", "13579135"],
      {
        stdio: "ignore",
      },
    );
    return `pkcs11:token=bench?module-path=${SOFTHSM}`;
  } catch {
    console.error("bench: no SoftHSM2 (softhsm2-util), so no token rows");
    return undefined;
  }
}

const tokenUri = softToken();
const lab = await startLab({
  dir: join(work, "lab"),
  host: "127.0.0.1",
  port: 0,
  crypto: softwareCrypto(),
  certProfile: "open",
  api: "x509",
  autoRegister: true,
  adminPassword: PASSWORD,
  tokenLifetime: 420,
});

/** An agent for a device enrolled now with a key of `keyType`, in a key file or in the token. */
async function enrolled(keyType, token) {
  // dojot v0.7+ binds certificates to hex device ids.
  const id = `${keyType.startsWith("ec") ? "ec" : "a5"}${token ? "70" : "f0"}1`;
  const agent = createAgent({
    platform: { url: lab.url, protocol: "x509-identity-mgmt" },
    device: { id, keyType },
    store: { kind: "files", dir: join(work, "out", id) },
    login: { username: "admin", password: async () => PASSWORD },
    key: token ? { uri: tokenUri, pin: () => ({ read: async () => "246810", where: "the bench" }) } : undefined,
  });
  await agent.enroll();
  return agent;
}

/** Messages signed in `format` for SECONDS, one after another, with one opened signer. */
async function rate(agent, format) {
  const signer = await agent.openSigner();
  try {
    const reading = (i) => JSON.stringify({ [String(1700000000000 + i)]: { "vehicle.tire.pressure": "2.2", seq: i } });
    await signer.sign(reading(0), format); // warm
    let n = 0;
    const start = process.hrtime.bigint();
    const end = start + BigInt(SECONDS * 1e9);
    while (process.hrtime.bigint() < end) await signer.sign(reading(++n), format);
    return n / (Number(process.hrtime.bigint() - start) / 1e9);
  } finally {
    await signer.close();
  }
}

const rows = [];
for (const keyType of ["ec-p256", "rsa-2048"]) {
  for (const store of tokenUri ? ["key file", "token (SoftHSM2)"] : ["key file"]) {
    const agent = await enrolled(keyType, store !== "key file");
    const row = [keyType, store];
    for (const format of ["airvantage", "jws", "raw"]) row.push((await rate(agent, format)).toFixed(0));
    await agent.close();
    rows.push(row);
  }
}
await lab.close();
rmSync(work, { recursive: true, force: true });

console.log("");
console.log(
  `messages signed per second, one opened signer, one message at a time, ${SECONDS} s per cell, Node ${process.version}:`,
);
console.log("| key type | key store | airvantage | jws | raw |");
console.log("|---|---|---:|---:|---:|");
for (const row of rows) console.log(`| ${row.join(" | ")} |`);
