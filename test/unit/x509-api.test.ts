import { existsSync, readFileSync } from "node:fs";

import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LabOptions, type RunningLab, setDevice, startLab } from "../../lab/src/server.js";
import { softwareCrypto } from "../../src/keys/provider.js";
import * as x509 from "../../src/keys/x509.js";
import { runCli, SECRETS } from "../helpers/cli.js";
import { enrollCli } from "../helpers/enroll.js";
import { labDir, startProxy, tempDir } from "../helpers/lab.js";
import { openssl } from "../helpers/tools.js";

const password = "x509-lab-password";
SECRETS.add(password);
const crypto = softwareCrypto();

/** A lab serving `api` with `rules`, in a fresh directory. */
async function lab(
  api: LabOptions["api"],
  x509Rules: LabOptions["x509Rules"] = "v0.7",
  more: Partial<LabOptions> = {},
): Promise<RunningLab & { dir: string }> {
  const dir = await labDir("cr-x509-");
  const running = await startLab({
    dir,
    host: "127.0.0.1",
    port: 0,
    crypto,
    certProfile: "cfree",
    autoRegister: false,
    adminPassword: password,
    tokenLifetime: 420,
    api,
    x509Rules,
    ...more,
  });
  return { ...running, dir };
}

async function login(url: string): Promise<string> {
  const res = await fetch(`${url}/auth`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: "admin", passwd: password }),
  });
  return ((await res.json()) as { jwt: string }).jwt;
}

describe("enroll --api auto, unchanged, against each API the lab serves", () => {
  const modes = [
    {
      name: "EJBCA-REST (dojot <= v0.4)",
      api: "legacy",
      rules: "v0.7",
      detected: /API EJBCA-REST/,
      key: /Private-Key: \(2048 bit/,
      subject: (id: string) => `subject=CN = ${id}`,
      bind: /\[7\/8\] bind: not needed: EJBCA-REST/,
    },
    {
      name: "x509-identity-mgmt, v0.5 rules",
      api: "x509",
      rules: "v0.5",
      detected: /API x509-identity-mgmt/,
      key: /NIST CURVE: P-256/,
      subject: (id: string) => `subject=O = dojot IoT Platform, CN = admin:${id}`,
      bind: /\[7\/8\] bind: not needed: dojot v0\.5-v0\.6 identify the device by its CN/,
    },
    {
      name: "x509-identity-mgmt, v0.7 rules",
      api: "x509",
      rules: "v0.7",
      detected: /API x509-identity-mgmt/,
      key: /NIST CURVE: P-256/,
      subject: (id: string) => `subject=O = dojot IoT Platform, CN = ${id}`,
      bind: /\[7\/8\] bind: certificate bound to device f60c28 \(dojot v0\.7\+ rules\)/,
    },
    {
      name: "both APIs (the newer is chosen)",
      api: "both",
      rules: "v0.7",
      detected: /API x509-identity-mgmt/,
      key: /NIST CURVE: P-256/,
      subject: (id: string) => `subject=O = dojot IoT Platform, CN = ${id}`,
      bind: /\[7\/8\] bind: certificate bound to device/,
    },
  ] as const;
  for (const mode of modes) {
    it(`${mode.name}: detected, the API's preferred key, files openssl verifies`, async () => {
      const platform = await lab(mode.api, mode.rules);
      try {
        const id = "f60c28";
        await setDevice(platform.dir, id, "add");
        const out = join(await tempDir(), "certs");
        const run = await enrollCli(platform.url, { password }, id, out, ["--json"]);
        expect(run.code, run.stderr).toBe(0);
        expect(run.stderr).toMatch(mode.detected);
        const crt = join(out, `${id}.crt`);
        expect(openssl("verify", "-CAfile", join(out, "IOTmidCA.crt"), crt).trim()).toBe(`${crt}: OK`);
        expect(openssl("pkey", "-in", join(out, `${id}.key`), "-noout", "-text")).toMatch(mode.key);
        expect(openssl("pkey", "-in", join(out, `${id}.key`), "-pubout")).toBe(
          openssl("x509", "-in", crt, "-noout", "-pubkey"),
        );
        expect(openssl("x509", "-in", crt, "-noout", "-subject").trim()).toBe(mode.subject(id));
        expect(run.stderr).toMatch(mode.bind);
        if (mode.api !== "legacy") {
          // v0.7+: bound, as VerneMQ finds the owner by fingerprint; v0.5-v0.6: left alone (the CN names the device).
          const fp = JSON.parse(run.stdout).sha256Fingerprint as string;
          const record = await fetch(`${platform.url}/x509/v1/certificates/${fp}`, {
            headers: { authorization: `Bearer ${await login(platform.url)}` },
          });
          expect(((await record.json()) as { belongsTo: unknown }).belongsTo).toEqual(
            mode.rules === "v0.7" ? { device: id } : {},
          );
        }
      } finally {
        await platform.close();
      }
    });
  }
});

describe("x509-identity-mgmt errors reach the user as one sentence with the step's code", () => {
  let v05: RunningLab & { dir: string };
  let v07: RunningLab & { dir: string };
  beforeAll(async () => {
    [v05, v07] = await Promise.all([lab("x509", "v0.5"), lab("x509", "v0.7")]);
  });
  afterAll(async () => Promise.all([v05.close(), v07.close()]));

  it("a device id no release can use is refused before any request (--api dojot); one the answering release cannot use, before any key", async () => {
    const explicit = await runCli(
      [
        "enroll",
        "--platform",
        v05.url,
        "--api",
        "dojot",
        "--device-id",
        "dev_1",
        "--username",
        "admin",
        "--password-stdin",
        "--out",
        join(await tempDir(), "c"),
      ],
      { input: password },
    );
    expect(explicit.code).toBe(2);
    expect(explicit.stderr).toMatch(
      /the device id 'dev_1' suits no x509-identity-mgmt release \(dojot v0\.5-v0\.6 take a CN of letters, digits and spaces; v0\.7\+ bind 5-36 hex digits or '-'\)/,
    );
    expect(explicit.stderr).not.toMatch(/authenticate/);
    // v0.5 takes 'dev1' as CN only if it is letters and digits: 'dev-1' is hex-and-dash, fine for v0.7, not for v0.5.
    const out = join(await tempDir(), "c");
    const v05run = await enrollCli(v05.url, { password }, "dead-1", out);
    expect(v05run.stderr).toMatch(
      /the device id 'dead-1' cannot be the CN dojot v0\.5-v0\.6 accept \(letters, digits and spaces only\)/,
    );
    expect(v05run.code).toBe(2);
    expect(v05run.stderr).not.toMatch(/generate-key/);
    const v07run = await enrollCli(v07.url, { password }, "sensor7", out);
    expect(v07run.stderr).toMatch(
      /the device id 'sensor7' cannot be bound to its certificate on dojot v0\.7\+ \(5-36 hex digits or '-'\)/,
    );
    expect(v07run.code).toBe(2);
    expect(existsSync(out)).toBe(false);
  });

  it("v0.7: a device the tenant does not have is refused before any key is made (exit 13), and the platform issues nothing", async () => {
    const out = join(await tempDir(), "c");
    const before = Object.keys(JSON.parse(readFileSync(join(v07.dir, "state.json"), "utf8")).x509Certificates ?? {});
    const run = await enrollCli(v07.url, { password }, "abcdef", out);
    expect(run.stderr).toMatch(
      /bind failed: the platform has no device 'abcdef' for this user's tenant \(HTTP 400: Device identifier 'abcdef' was not found for tenant 'admin'\.\); no key was made and no certificate issued/,
    );
    expect(run.stderr).toMatch(/hint: create the device on the platform for this user's tenant, then run again/);
    expect(run.stderr).not.toMatch(/generate-key/);
    expect(run.code).toBe(13);
    expect(existsSync(out)).toBe(false);
    expect(Object.keys(JSON.parse(readFileSync(join(v07.dir, "state.json"), "utf8")).x509Certificates ?? {})).toEqual(
      before,
    );
  });

  it("v0.7: an upper-case device id is sent as given and names no device; the hint says dojot's ids are lower-case hex", async () => {
    await setDevice(v07.dir, "cafe0a", "add");
    const out = join(await tempDir(), "c");
    const run = await enrollCli(v07.url, { password }, "CAFE0A", out);
    expect(run.stderr).toMatch(/bind failed: the platform has no device 'CAFE0A' for this user's tenant/);
    expect(run.stderr).toMatch(
      /hint: create the device on the platform for this user's tenant, then run again; dojot's device ids are lower-case hex: if this is one, pass --device-id cafe0a$/m,
    );
    expect(run.stderr).not.toMatch(/lab/);
    expect(run.code).toBe(13);
    const lower = await enrollCli(v07.url, { password }, "cafe0a", out);
    expect(lower.code, lower.stderr).toBe(0);
  });

  it("a binding refused after issuance is reported with the certificate's fingerprint and what to do with it (here: the gateway denies the PATCH, exit 10)", async () => {
    await setDevice(v07.dir, "cafe03", "add");
    let caFp = "";
    const proxy = await startProxy(v07.url, (path, up) => {
      if (path === "/x509/v1/ca")
        caFp = (JSON.parse(up.body) as { certificateFingerprint: string }).certificateFingerprint;
      return path.startsWith("/x509/v1/certificates/") && path !== `/x509/v1/certificates/${caFp}`
        ? { status: 403, body: "" }
        : undefined;
    });
    try {
      const out = join(await tempDir(), "c");
      const run = await enrollCli(proxy.url, { password }, "cafe03", out);
      expect(run.stderr).toMatch(/\[6\/8\] validate: key, signature, validity and subject checked/);
      expect(run.stderr).toMatch(
        /bind failed: the platform issued certificate (?:[0-9A-F]{2}:){31}[0-9A-F]{2} but did not bind it to device 'cafe03': HTTP 403: an empty body; nothing was written, and the unbound certificate stays on the platform until removed/,
      );
      expect(run.stderr).toMatch(
        /hint: the user may issue certificates but not change their owner .*remove the unbound certificate with DELETE \/x509\/v1\/certificates\/(?:[0-9A-F]{2}:){31}[0-9A-F]{2}/,
      );
      expect(run.code).toBe(10);
      expect(existsSync(out)).toBe(false);
    } finally {
      await proxy.close();
    }
  });

  it("a release the first look cannot tell (the gateway denies it) is learnt from the binding's answer: a v0.5 platform is not bound, and the run succeeds", async () => {
    let caFp = "";
    const proxy = await startProxy(v05.url, (path, up) => {
      if (path === "/x509/v1/ca")
        caFp = (JSON.parse(up.body) as { certificateFingerprint: string }).certificateFingerprint;
      return path === `/x509/v1/certificates/${caFp}` ? { status: 403, body: "" } : undefined;
    });
    try {
      const out = join(await tempDir(), "c");
      const run = await enrollCli(proxy.url, { password }, "f60c29", out);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toMatch(
        /\[7\/8\] bind: not needed: the platform answers as dojot v0\.5-v0\.6, which identify the device by its CN/,
      );
    } finally {
      await proxy.close();
    }
  });

  it("a certificate that fails validation is never bound: --profile amqtt on a platform that drops the CSR's SANs is exit 14, nothing written, no binding", async () => {
    const strict = await lab("x509", "v0.7", { extensionOverride: false });
    try {
      await setDevice(strict.dir, "cafe02", "add");
      const out = join(await tempDir(), "c");
      const run = await enrollCli(strict.url, { password }, "cafe02", out, [
        "--profile",
        "amqtt",
        "--uri-domain",
        "example.com",
      ]);
      expect(run.stderr).toMatch(
        /validate failed: the certificate lacks the URI SAN spiffe:\/\/example\.com\/device\/cafe02 that the amqtt broker identifies the device by \(it has no URI SAN\); nothing was written/,
      );
      expect(run.stderr).toMatch(
        /hint: the platform dropped the CSR's subject alternative names: its certificate profile must keep them \(EJBCA: enable 'Allow Extension Override'/,
      );
      expect(run.stderr).not.toMatch(/\] bind:/);
      // Issued and not stored: this run revoked it (DELETE /x509/v1/certificates/<fingerprint>) before it exited.
      expect(run.stderr).toMatch(
        /; certificate [0-9a-f]+ was issued to this run and not stored, so it was revoked on the platform; the next run enrolls anew/,
      );
      expect(run.code).toBe(14);
      expect(existsSync(out)).toBe(false);
      const state = JSON.parse(readFileSync(join(strict.dir, "state.json"), "utf8")) as {
        x509Certificates: Record<string, { belongsTo: unknown }>;
      };
      // Never bound, and gone: x509-identity-mgmt's DELETE removes the record it revokes.
      expect(Object.values(state.x509Certificates)).toEqual([]);
      // The same device against a platform that keeps the CSR's extensions (EJBCA's default for this profile): enrolled.
      const kept = await lab("x509", "v0.7", { autoRegister: true });
      try {
        const ok = await enrollCli(kept.url, { password }, "cafe02", out, [
          "--profile",
          "amqtt",
          "--uri-domain",
          "example.com",
        ]);
        expect(ok.code, ok.stderr).toBe(0);
        expect(openssl("x509", "-in", join(out, "cafe02.crt"), "-noout", "-ext", "subjectAltName")).toMatch(
          /URI:spiffe:\/\/example\.com\/device\/cafe02/,
        );
      } finally {
        await kept.close();
      }
    } finally {
      await strict.close();
    }
  });

  it("schema errors of both generations are shown as one sentence (exit 13)", async () => {
    const bodies = [
      {
        schema$id: "http://www.dojot.com.br/schemas/reg-or-gen-cert",
        schemaErrors: [{ keyword: "pattern", dataPath: ".csr", message: "should match pattern" }],
      },
      {
        error: "Input data schema validation failure.",
        detail: {
          schemaId: "x",
          schemaErrors: [
            { instancePath: "/csr", message: "must match pattern" },
            { instancePath: "/x", message: "y" },
          ],
        },
      },
    ];
    const expected = [
      /HTTP 400: Input data schema validation failure: \.csr should match pattern/,
      /HTTP 400: Input data schema validation failure\.: \/csr must match pattern \(and 1 more\)/,
    ];
    for (const [i, body] of bodies.entries()) {
      const proxy = await startProxy(v07.url, (path) =>
        path === "/x509/v1/certificates" ? { status: 400, body: JSON.stringify(body) } : undefined,
      );
      try {
        await setDevice(v07.dir, "cafe01", "add");
        const run = await enrollCli(proxy.url, { password }, "cafe01", join(await tempDir(), "c"));
        expect(run.stderr).toMatch(expected[i]!);
        expect(run.code).toBe(13);
        expect(
          run.stderr
            .trim()
            .split("\n")
            .filter((l) => l.startsWith("cert-retriever:")),
        ).toHaveLength(1);
      } finally {
        await proxy.close();
      }
    }
  });

  it("a CA whose content does not match the fingerprint the platform gives is refused (exit 11)", async () => {
    const proxy = await startProxy(v07.url, (path, up) =>
      path === "/x509/v1/ca"
        ? {
            status: 200,
            body: up.body.replace(
              /"certificateFingerprint":"([0-9A-F])/,
              (_m, d: string) => `"certificateFingerprint":"${d === "0" ? "1" : "0"}`,
            ),
          }
        : undefined,
    );
    try {
      const run = await enrollCli(proxy.url, { password }, "beef01", join(await tempDir(), "c"));
      expect(run.stderr).toMatch(
        /fetch-ca failed: the CA certificate does not match the fingerprint the platform gave for it/,
      );
      expect(run.code).toBe(11);
    } finally {
      await proxy.close();
    }
  });

  it("the lab applies section 5.2: weak keys, v0.5 subjects and v0.5's trailing newline are refused with dojot's texts", async () => {
    const auth = { authorization: `Bearer ${await login(v05.url)}`, "content-type": "application/json" };
    const csr = async (alg: RsaHashedKeyGenParams | EcKeyGenParams, name: string) => {
      const keys = (await crypto.subtle.generateKey(alg, false, ["sign", "verify"])) as CryptoKeyPair;
      const sig = alg.name === "ECDSA" ? { name: "ECDSA", hash: "SHA-256" } : alg;
      return (
        await x509.Pkcs10CertificateRequestGenerator.create({ name, keys, signingAlgorithm: sig }, crypto)
      ).toString("pem");
    };
    const post = async (pem: string) => {
      const res = await fetch(`${v05.url}/x509/v1/certificates`, {
        method: "POST",
        headers: auth,
        body: JSON.stringify({ csr: pem }),
      });
      return [res.status, await res.text()] as const;
    };
    const rsa1024 = await csr(
      { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256", publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 1024 },
      "CN=abc",
    );
    expect(await post(rsa1024.trimEnd())).toEqual([
      400,
      '{"message":"The RSA public key length less than 2048 bits is not supported."}',
    ]);
    const withOu = await csr({ name: "ECDSA", namedCurve: "P-256" }, "CN=abc, OU=Line 4");
    expect(await post(withOu.trimEnd())).toEqual([
      400,
      '{"message":"Error checking SubjectDN allowed attributes in CSR. Allowed: [CN] Found: [O,CN,OU]"}',
    ]);
    const ok = await csr({ name: "ECDSA", namedCurve: "P-256" }, "CN=abc");
    expect((await post(`${ok.trimEnd()}\n`))[0]).toBe(400); // v0.5: no line break after END
    expect((await post(ok.trimEnd()))[0]).toBe(201);
  });
});
