// Signing what the device sends with its stored key (airvantage, jws, raw), and checking it: the
// signatures verify with openssl and with an independent JOSE implementation (jose, in the tests
// only); altered messages, other keys, expired, untrusted and revoked certificates are refused,
// each with its own exit code.
import { createHash, X509Certificate } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { airVantageSigningInput, createAgent } from "cert-retriever";
import { compactVerify, importX509 } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli, runMain } from "../helpers/cli.js";
import { enrollCli } from "../helpers/enroll.js";
import { validate } from "../helpers/json-schema.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { openssl, opensslStatus } from "../helpers/tools.js";

const schema = JSON.parse(
  await readFile(join(import.meta.dirname, "..", "..", "docs", "cli-output.schema.json"), "utf8"),
) as Record<string, unknown>;

let lab: TestLab;
beforeAll(async () => {
  lab = await startTestLab({ api: "x509", autoRegister: true, forceCrlRenew: true });
});
afterAll(async () => lab.stop());

/** A device enrolled with the CLI (a key of `keyType`) into a directory of its own. */
async function enrolled(id: string, keyType: "ec-p256" | "ec-p384" | "rsa-2048") {
  const dir = await tempDir();
  const out = join(dir, "certs");
  const run = await enrollCli(lab.url, lab, id, out, ["--key-type", keyType, "--json"]);
  expect(run.code, run.stderr).toBe(0);
  const pub = join(dir, "pub.pem");
  await writeFile(
    pub,
    new X509Certificate(await readFile(join(out, `${id}.crt`))).publicKey.export({ type: "spki", format: "pem" }),
  );
  return { dir, out, id, pub, sha256Fingerprint: JSON.parse(run.stdout).sha256Fingerprint as string };
}

type Device = Awaited<ReturnType<typeof enrolled>>;
const READING = { "1700000000000": { "vehicle.tire.pressure": "2.2", "dongle.serial": "11111111111" } };

/** `openssl dgst -sha256 -verify` of `signature` over `data` with the device's public key: its exit status. */
async function opensslVerifies(device: Device, data: Uint8Array, signature: Uint8Array): Promise<number> {
  const [input, sig] = [join(device.dir, "input"), join(device.dir, "sig")];
  await writeFile(input, data);
  await writeFile(sig, signature);
  return opensslStatus("dgst", "-sha256", "-verify", device.pub, "-signature", sig, input);
}

let ec: Device;
let rsa: Device;
let other: Device;
beforeAll(async () => {
  [ec, rsa, other] = [
    await enrolled("519e01", "ec-p256"),
    await enrolled("519e02", "rsa-2048"),
    await enrolled("519e03", "ec-p256"),
  ];
});

const agentOf = (d: Device) => createAgent({ device: { id: d.id }, store: { kind: "files", dir: d.out } });

describe("the library: the stored key opened once signs many messages in-process", () => {
  for (const which of ["ec", "rsa"] as const) {
    it(`${which}: airvantage adds a signature datapoint per timestamp that openssl checks over the documented canonical form`, async () => {
      const device = which === "ec" ? ec : rsa;
      const signer = await agentOf(device).openSigner();
      try {
        const message = { ...READING, "1700000000500": { "vehicle.speed": 42, "a.b": [1, { z: 1, a: true }] } };
        for (let i = 0; i < 3; i++) {
          const signed = await signer.sign(JSON.stringify(message), "airvantage");
          const parsed = JSON.parse(signed.signed as string) as Record<string, Record<string, unknown>>;
          expect(Object.keys(parsed)).toEqual(Object.keys(message));
          for (const [timestamp, datapoints] of Object.entries(parsed)) {
            expect(datapoints.signature).toMatch(/^[0-9A-F]+$/);
            const { signature, ...rest } = datapoints;
            expect(rest).toEqual(message[timestamp as keyof typeof message]);
            // The canonical form, written out by hand as docs/signing.md defines it.
            const canonical =
              timestamp === "1700000000000"
                ? '{"1700000000000":{"dongle.serial":"11111111111","vehicle.tire.pressure":"2.2"}}'
                : '{"1700000000500":{"a.b":[1,{"a":true,"z":1}],"vehicle.speed":42}}';
            expect(Buffer.from(airVantageSigningInput(timestamp, datapoints)).toString()).toBe(canonical);
            expect(await opensslVerifies(device, Buffer.from(canonical), Buffer.from(String(signature), "hex"))).toBe(
              0,
            );
          }
        }
      } finally {
        await signer.close();
      }
    });
  }

  it("jws: ES256, RS256 and PS256 verify with jose against the certificate in x5c, which is the device's, followed by its CA", async () => {
    for (const [device, pss, alg] of [
      [ec, false, "ES256"],
      [rsa, false, "RS256"],
      [rsa, true, "PS256"],
    ] as const) {
      const signer = await agentOf(device).openSigner({ pss });
      const signed = await signer.sign("hello, platform", "jws");
      await signer.close();
      expect(signed.alg).toBe(alg);
      const header = JSON.parse(Buffer.from((signed.signed as string).split(".")[0]!, "base64url").toString());
      expect(Object.keys(header)).toEqual(["alg", "x5c"]);
      const stored = new X509Certificate(await readFile(join(device.out, `${device.id}.crt`)));
      expect(Buffer.from(header.x5c[0], "base64").equals(stored.raw)).toBe(true);
      expect(header.x5c).toHaveLength(2);
      const key = await importX509(`-----BEGIN CERTIFICATE-----\n${header.x5c[0]}\n-----END CERTIFICATE-----`, alg);
      const { payload, protectedHeader } = await compactVerify(signed.signed as string, key, { algorithms: [alg] });
      expect([Buffer.from(payload).toString(), protectedHeader.alg]).toEqual(["hello, platform", alg]);
    }
  });

  it("a message over 1 MiB is refused before anything is signed", async () => {
    const signer = await agentOf(ec).openSigner();
    await expect(signer.sign(new Uint8Array(1024 * 1024 + 1), "raw")).rejects.toMatchObject({
      reason: "message-malformed",
    });
    await signer.close();
  });
});

describe("sign: the command", () => {
  it("raw: the detached signature is what openssl dgst -verify and openssl pkeyutl accept (EC: DER)", async () => {
    for (const device of [ec, rsa]) {
      const [message, sig] = [join(device.dir, "reading.json"), join(device.dir, "reading.sig")];
      await writeFile(message, JSON.stringify(READING));
      const run = await runCli([
        "sign",
        "--device-id",
        device.id,
        "--out",
        device.out,
        "--format",
        "raw",
        "--in",
        message,
        "--to",
        sig,
      ]);
      expect([run.code, run.stdout], run.stderr).toEqual([0, ""]);
      expect(run.stderr).toMatch(/signed \d+ bytes as raw/);
      expect(openssl("dgst", "-sha256", "-verify", device.pub, "-signature", sig, message).trim()).toBe("Verified OK");
      const digest = join(device.dir, "digest");
      await writeFile(
        digest,
        createHash("sha256")
          .update(await readFile(message))
          .digest(),
      );
      expect(
        openssl(
          "pkeyutl",
          "-verify",
          "-pubin",
          "-inkey",
          device.pub,
          "-sigfile",
          sig,
          "-in",
          digest,
          "-pkeyopt",
          "digest:sha256",
        ).trim(),
      ).toBe("Signature Verified Successfully");
      if (device === ec)
        expect(openssl("asn1parse", "-inform", "DER", "-in", sig)).toMatch(/SEQUENCE[\s\S]*INTEGER[\s\S]*INTEGER/);
    }
  });

  it("airvantage from stdin to stdout, then verify-signature takes it from stdin (exit 0, --json in the house shape)", async () => {
    const run = await runCli(["sign", "--device-id", ec.id, "--out", ec.out], { input: JSON.stringify(READING) });
    expect(run.code, run.stderr).toBe(0);
    const signed = JSON.parse(run.stdout);
    expect(signed["1700000000000"].signature).toMatch(/^[0-9A-F]+$/);
    const check = await runCli(["verify-signature", "--device-id", ec.id, "--out", ec.out, "--json"], {
      input: run.stdout,
    });
    expect(check.code, check.stderr).toBe(0);
    expect(validate(schema, JSON.parse(check.stdout))).toEqual([]);
    expect(JSON.parse(check.stdout)).toMatchObject({
      ok: true,
      command: "verify-signature",
      format: "airvantage",
      alg: "ecdsa-with-SHA256",
      signatures: 1,
      signer: { subject: expect.stringContaining(ec.id) },
    });
    expect(check.stderr).toMatch(/signature good \(airvantage, ecdsa-with-SHA256\): signed by/);
  });

  it("--json: the signed message (raw: the signature in base64) in the house JSON shape", async () => {
    for (const format of ["airvantage", "jws", "raw"]) {
      const run = await runCli(["sign", "--device-id", rsa.id, "--out", rsa.out, "--format", format, "--json"], {
        input: JSON.stringify(READING),
      });
      expect(run.code, run.stderr).toBe(0);
      const json = JSON.parse(run.stdout);
      expect(validate(schema, json)).toEqual([]);
      expect(json).toMatchObject({ ok: true, command: "sign", deviceId: rsa.id, format });
      expect(json.signed ?? json.signature).toBeTruthy();
    }
    const failed = await runCli(["sign", "--device-id", rsa.id, "--out", rsa.out, "--json"], { input: "[" });
    expect(failed.code).toBe(45);
    expect(validate(schema, JSON.parse(failed.stdout))).toEqual([]);
  });

  it("a message over 1 MiB on stdin: exit 45, nothing on stdout", async () => {
    const run = await runCli(["sign", "--device-id", ec.id, "--out", ec.out, "--format", "raw"], {
      input: "x".repeat(1024 * 1024 + 1),
    });
    expect([run.code, run.stdout]).toEqual([45, ""]);
    expect(run.stderr).toMatch(/sign failed: the message on standard input is larger than 1048576 bytes \(1 MiB\)/);
  });

  it("not an AirVantage message, or one signed already: exit 45 with a hint", async () => {
    for (const [input, why] of [
      ["not json", /not JSON/],
      ['["a"]', /not an AirVantage message/],
      ['{"1":{"signature":"00"}}', /have a 'signature' already/],
      // JSON.parse keeps the last of two names, other parsers the first: the platform could read other data.
      ['{"1":{"a":"2.2","b":"x","\\u0061":"9.9"}}', /names 'a' twice in one object/],
    ] as const) {
      const run = await runCli(["sign", "--device-id", ec.id, "--out", ec.out], { input });
      expect([run.code, run.stdout]).toEqual([45, ""]);
      expect(run.stderr).toMatch(why);
      expect(run.stderr).toMatch(/hint: check --format/);
    }
  });

  it("a device with no stored credentials: exit 16", async () => {
    const run = await runCli(["sign", "--device-id", "519e99", "--out", await tempDir()], { input: "{}" });
    expect(run.code).toBe(16);
  });
});

describe("verify-signature: each refusal has its own exit code", () => {
  /** A message `device` signed in `format` with the CLI. */
  async function signedBy(
    device: Device,
    format: "airvantage" | "jws",
    input = JSON.stringify(READING),
  ): Promise<string> {
    const run = await runCli(["sign", "--device-id", device.id, "--out", device.out, "--format", format], { input });
    expect(run.code, run.stderr).toBe(0);
    return run.stdout;
  }
  const verify = (device: Device, input: string, extra: string[] = [], clock?: () => Date) =>
    runMain(["verify-signature", "--device-id", device.id, "--out", device.out, "--json", ...extra], { input, clock });

  it("a datapoint changed after signing, a JWS payload changed: bad signature (40)", async () => {
    const av = JSON.parse(await signedBy(ec, "airvantage"));
    av["1700000000000"]["vehicle.tire.pressure"] = "9.9";
    const run = await verify(ec, JSON.stringify(av));
    expect(run.code).toBe(40);
    expect(JSON.parse(run.stdout).error).toMatchObject({ reason: "signature-invalid", exitCode: 40 });
    const [h, , s] = (await signedBy(rsa, "jws")).split(".");
    const jws = await verify(rsa, `${h}.${Buffer.from("forged").toString("base64url")}.${s}`, ["--format", "jws"]);
    expect(jws.code).toBe(40);
  });

  it("another device's message: a JWS whose x5c is another certificate is the wrong key (41); airvantage cannot tell, so it is a bad signature (40)", async () => {
    const jws = await verify(ec, await signedBy(other, "jws"), ["--format", "jws"]);
    expect(jws.code, jws.stderr).toBe(41);
    expect(jws.stderr).toMatch(/was signed by '.*519e03.*', not by the key of '.*519e01/);
    expect(jws.stderr).toMatch(/hint: another key signed it/);
    const rsaJws = await verify(ec, await signedBy(rsa, "jws"), ["--format", "jws"]);
    expect([rsaJws.code, rsaJws.stderr]).toEqual([
      41,
      expect.stringMatching(/signed with RS256, which needs an RSA key/),
    ]);
    const av = await verify(ec, await signedBy(other, "airvantage"));
    expect(av.code).toBe(40);
  });

  it("--cert of another device (its CA given with --ca): 40; a CA that did not issue it: untrusted (44)", async () => {
    const signed = await signedBy(ec, "airvantage");
    const [cert, ca] = [join(other.out, `${other.id}.crt`), join(other.out, "IOTmidCA.crt")];
    const wrong = await runCli(["verify-signature", "--cert", cert, "--ca", ca], { input: signed });
    expect(wrong.code).toBe(40);
    const mine = join(ec.out, `${ec.id}.crt`);
    const good = await runCli(["verify-signature", "--cert", mine, "--ca", ca], { input: signed });
    expect(good.code, good.stderr).toBe(0);
    const untrusted = await runCli(["verify-signature", "--cert", mine, "--ca", mine], { input: signed });
    expect([untrusted.code, untrusted.stderr]).toEqual([44, expect.stringMatching(/is not issued by/)]);
    const none = await runCli(["verify-signature", "--cert", mine], { input: signed });
    expect([none.code, none.stderr]).toEqual([44, expect.stringMatching(/comes with no CA chain/)]);
  });

  it("a JWS checked by its own x5c certificate against --ca alone: good from the CA that issued it, untrusted (44) from another", async () => {
    const signed = await signedBy(ec, "jws");
    const ca = join(ec.out, "IOTmidCA.crt");
    const good = await runCli(["verify-signature", "--format", "jws", "--ca", ca, "--json"], { input: signed });
    expect(good.code, good.stderr).toBe(0);
    expect(JSON.parse(good.stdout)).toMatchObject({ signer: { subject: expect.stringContaining(ec.id) } });
    const mine = join(ec.out, `${ec.id}.crt`);
    const other = await runCli(["verify-signature", "--format", "jws", "--ca", mine], { input: signed });
    expect(other.code).toBe(44);
  });

  it("a certificate expired by the checker's clock (injected): 42, the dates in the message", async () => {
    const signed = await signedBy(ec, "jws");
    const run = await verify(ec, signed, ["--format", "jws"], () => new Date(Date.now() + 5 * 365 * 86_400_000));
    expect(run.code).toBe(42);
    expect(JSON.parse(run.stdout).error.message).toMatch(/is valid from .* to .*, which does not include now/);
  });

  it("a certificate the CA's CRL (cached by check) lists as revoked: 43", async () => {
    const device = await enrolled("519e04", "ec-p256");
    const signed = await signedBy(device, "airvantage");
    const env = { CERT_RETRIEVER_USERNAME: "admin", CERT_RETRIEVER_PASSWORD: lab.password };
    const check = [
      "check",
      "--device-id",
      device.id,
      "--out",
      device.out,
      "--platform",
      lab.url,
      "--crl-refresh",
      "0s",
    ];
    expect((await runCli(check, { env })).code).toBe(1);
    const good = await verify(device, signed);
    expect([good.code, JSON.parse(good.stdout).revocation]).toEqual([0, "good"]);
    const auth = await fetch(`${lab.url}/auth`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username: "admin", passwd: lab.password }),
    });
    const { jwt } = (await auth.json()) as { jwt: string };
    const revoke = await fetch(`${lab.url}/x509/v1/certificates/${device.sha256Fingerprint}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${jwt}` },
    });
    expect(revoke.status).toBe(204);
    expect((await runCli(check, { env })).code).toBe(0);
    const run = await verify(device, signed);
    expect([run.code, JSON.parse(run.stdout).error.reason]).toEqual([43, "signer-revoked"]);
  });

  it("malformed: not JSON, no signature datapoint, not a compact JWS, a JWS with alg none, raw without --signature: 45", async () => {
    for (const [input, extra] of [
      ["{", []],
      [JSON.stringify(READING), []],
      ["a.b", ["--format", "jws"]],
      [`${Buffer.from('{"alg":"none"}').toString("base64url")}.e30.`, ["--format", "jws"]],
      ["hello", ["--format", "raw"]],
    ] as const) {
      const run = await verify(ec, input, [...extra]);
      expect(run.code, `${input}: ${run.stderr}`).toBe(45);
      expect(JSON.parse(run.stdout).error.reason).toBe("message-malformed");
    }
  });

  it("raw: the message with --signature", async () => {
    const [message, sig] = [join(rsa.dir, "m"), join(rsa.dir, "m.sig")];
    await writeFile(message, "temperature=21.5");
    expect(
      (await runCli(["sign", "--device-id", rsa.id, "--out", rsa.out, "--format", "raw", "--in", message, "--to", sig]))
        .code,
    ).toBe(0);
    const args = ["verify-signature", "--device-id", rsa.id, "--out", rsa.out, "--format", "raw"];
    const good = await runCli([...args, "--in", message, "--signature", sig]);
    expect(good.code, good.stderr).toBe(0);
    await writeFile(message, "temperature=99.5");
    const bad = await runCli([...args, "--in", message, "--signature", sig]);
    expect(bad.code).toBe(40);
  });
});
