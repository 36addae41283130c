import { join } from "node:path";
import { createAgent } from "cert-retriever";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { modeOf } from "../helpers/enroll.js";
import { startTestLab, type TestLab, tempDir } from "../helpers/lab.js";
import { openssl } from "../helpers/tools.js";

// The "Use as a library" example (docs/library.md) is this test's code.
describe("use as a library: createAgent(settings).enroll() in-process", () => {
  let lab: TestLab;
  beforeAll(async () => {
    lab = await startTestLab();
    await lab.addDevice("f60c28");
  });
  afterAll(async () => lab.stop());

  it("enrolls against the lab; openssl verifies what it stored", async () => {
    const out = join(await tempDir(), "certs");
    const agent = createAgent({
      platform: { url: lab.url, protocol: "ejbca-rest" },
      device: { id: "f60c28" },
      store: { kind: "files", dir: out },
      login: { username: "admin", password: async () => lab.password },
    });
    const steps: string[] = [];
    try {
      const result = await agent.enroll({ onEvent: (event) => event.type === "step" && steps.push(event.step) });
      expect(result.status).toBe("enrolled");
      expect(result.store.files).toMatchObject({
        key: join(out, "f60c28.key"),
        certificate: join(out, "f60c28.crt"),
        ca: join(out, "IOTmidCA.crt"),
      });
      // A second run finds the credentials valid: nothing to do.
      expect((await agent.enroll()).status).toBe("already-enrolled");
    } finally {
      await agent.close();
    }
    expect(steps).toEqual([
      "authenticate",
      "fetch-ca",
      "generate-key",
      "build-csr",
      "submit-csr",
      "validate",
      "bind",
      "store",
    ]);
    expect(openssl("verify", "-CAfile", join(out, "IOTmidCA.crt"), join(out, "f60c28.crt"))).toMatch(/: OK/);
    expect(openssl("pkey", "-in", join(out, "f60c28.key"), "-pubout")).toBe(
      openssl("x509", "-in", join(out, "f60c28.crt"), "-noout", "-pubkey"),
    );
    expect(await modeOf(join(out, "f60c28.key"))).toBe(0o600);
  });
});
