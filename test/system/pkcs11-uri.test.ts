import { describe, expect, it } from "vitest";
import { formatPkcs11Uri, parsePkcs11Uri } from "../../src/keys/pkcs11-uri.js";
import { runCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/lab.js";

describe("--key: PKCS#11 URIs (RFC 7512)", () => {
  it("reads RFC 7512's own examples: %-escapes, ids as bytes, path and query attributes", () => {
    expect(
      parsePkcs11Uri(
        "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=",
      ),
    ).toEqual({
      token: "The Software PKCS#11 Softtoken",
      manufacturer: "Snake Oil, Inc.",
      model: "1.0",
      object: "my-certificate",
      type: "cert",
      id: new Uint8Array([0x69, 0x95, 0x3e, 0x5c, 0xf4, 0xbd, 0xec, 0x91]),
      serial: "",
    });
    expect(
      parsePkcs11Uri("pkcs11:object=my-sign-key;type=private?module-name=mypkcs11&pin-source=file:/etc/token_pin"),
    ).toEqual({
      object: "my-sign-key",
      type: "private",
      moduleName: "mypkcs11",
      pinSource: "file:/etc/token_pin",
    });
    expect(parsePkcs11Uri("pkcs11:slot-id=3;library-description=x;x-vendor=y")).toEqual({ slotId: 3 });
  });

  it("writes what it reads: the URI recorded with the certificate names the same key", () => {
    const uri = {
      token: "dev ice",
      object: "f60c28",
      id: new Uint8Array([0, 0xab, 0xff]),
      type: "private",
      modulePath: "/usr/lib/softhsm/libsofthsm2.so",
      pinSource: "file:/etc/pin",
    };
    const text = formatPkcs11Uri(uri);
    expect(text).toBe(
      "pkcs11:token=dev%20ice;object=f60c28;id=%00%ab%ff;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/pin",
    );
    expect(parsePkcs11Uri(text)).toEqual(uri);
  });

  it("a URI that cannot be used is refused in one sentence, exit 2, and a pin-value is never echoed", async () => {
    const out = await tempDir();
    for (const [key, message] of [
      ["pkcs11:token=a;token=b", /'token' is given twice/],
      ["pkcs11:tokn=a", /'tokn' is not an attribute of the path/],
      ["pkcs11:token=a%2", /the value of 'token' has a broken %-escape/],
      ["pkcs11:object=k;type=secret-key", /type=secret-key names no key/],
      ["pkcs11:token=a?pin-value=314159&bogus=1", /'bogus' is not an attribute of the query/],
    ] as const) {
      const run = await runCli(["check", "--device-id", "f60c28", "--out", out, "--key", key]);
      expect(run.stderr, key).toMatch(message);
      expect(run.stderr).not.toContain("314159");
      expect(run.code, key).toBe(255); // check's error code
    }
    const enroll = await runCli([
      "enroll",
      "--platform",
      "http://127.0.0.1:9",
      "--device-id",
      "f60c28",
      "--out",
      out,
      "--key",
      "pkcs11:token=a;tokn=b",
      "--token-file",
      "/nonexistent",
      "--non-interactive",
    ]);
    expect(enroll.stderr).toMatch(
      /the key URI 'pkcs11:token=a;tokn=b' is not a usable PKCS#11 URI: 'tokn' is not an attribute of the path/,
    );
    expect(enroll.code).toBe(2);
  });
});
