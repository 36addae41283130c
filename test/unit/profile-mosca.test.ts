import { access } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { profilePlatformNote } from "../../src/broker/profiles.js";
import { CertRetrieverError } from "../../src/errors.js";
import { enrollCli } from "../helpers/enroll.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";

// iotagent-mosca takes only a client id matching /^(\w+):(\w+)$/ (v0.4.3 index.js, v0.5.2
// src/mosca.js, parseClientIdOrTopic); v0.4.3 wants CN = device id, v0.5.2 CN = <tenant>:<device>.
describe("the dojot-mosca profile keeps to iotagent-mosca's rules", () => {
  let ejbca: TestLab;
  let x509: TestLab;
  beforeAll(async () => {
    [ejbca, x509] = await Promise.all([
      startTestLab({ api: "legacy", certProfile: "open", autoRegister: true }),
      startTestLab({ api: "x509", autoRegister: true }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([ejbca?.stop(), x509?.stop()]);
  });

  it("a device id Mosca cannot parse (dev-1): refused before any request, in one sentence, exit 2, nothing written", async () => {
    const out = join(await tempDir(), "certs");
    const run = await enrollCli(ejbca.url, ejbca, "dev-1", out, ["--profile", "dojot-mosca"]);
    expect(run.stderr).toMatch(
      /the device id 'dev-1' cannot be used with the dojot-mosca profile: iotagent-mosca takes only a client id '<tenant>:<device>' of letters, digits and '_' only\n/,
    );
    expect(run.stderr).toMatch(/or another --profile/);
    expect(run.stderr).not.toMatch(/authenticate|fetch-ca/);
    expect(run.code).toBe(2);
    await expect(access(out)).rejects.toThrow();
    // The same id is fine for a profile whose broker takes it.
    const generic = await enrollCli(ejbca.url, ejbca, "dev-1", out);
    expect(generic.code, generic.stderr).toBe(0);
  });

  it("with EJBCA-REST (CN = device id) a note says iotagent-mosca v0.5 would refuse the CN; with x509-identity-mgmt none", async () => {
    const legacy = await enrollCli(ejbca.url, ejbca, "m0sca1", join(await tempDir(), "certs"), [
      "--profile",
      "dojot-mosca",
    ]);
    expect(legacy.code, legacy.stderr).toBe(0);
    expect(legacy.stderr).toContain(
      "note: this platform issues the certificate with CN 'm0sca1', which iotagent-mosca v0.4 accepts but v0.5 refuses (it wants CN 'admin:m0sca1'): against a dojot v0.5 broker, enroll through its x509-identity-mgmt API",
    );
    const v05 = await enrollCli(x509.url, x509, "ab12cd", join(await tempDir(), "certs"), ["--profile", "dojot-mosca"]);
    expect(v05.code, v05.stderr).toBe(0);
    expect(v05.stderr).not.toMatch(/iotagent-mosca/);
    const vernemq = await enrollCli(ejbca.url, ejbca, "v3rne", join(await tempDir(), "certs"), [
      "--profile",
      "dojot-vernemq",
    ]);
    expect([vernemq.code, vernemq.stderr]).toEqual([0, expect.not.stringMatching(/iotagent-mosca/)]);
  });

  it("a tenant Mosca cannot parse is refused, after login and before any key is made", () => {
    const refused = (() => {
      try {
        return profilePlatformNote("dojot-mosca", "ab12cd", "my-tenant", ["my-tenant:ab12cd"]);
      } catch (err) {
        return err;
      }
    })();
    expect(refused).toBeInstanceOf(CertRetrieverError);
    expect(refused).toMatchObject({
      reason: "usage",
      message: expect.stringMatching(/^the tenant 'my-tenant' cannot be used with the dojot-mosca profile/),
    });
    expect(profilePlatformNote("dojot-mosca", "ab12cd", "tenant_1", ["ab12cd", "tenant_1:ab12cd"])).toBeUndefined();
    expect(profilePlatformNote("dojot-vernemq", "ab12cd", "my-tenant", ["ab12cd"])).toBeUndefined();
  });
});
