import { execFileSync } from "node:child_process";
import { createPrivateKey } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import * as x509 from "../../src/keys/x509.js";
import { envelope, openEnvelope } from "../../src/protocols/scep/envelope.js";
import { readMessage, signedMessage } from "../../src/protocols/scep/signed.js";
import { tempDir } from "../helpers/lab.js";
import { openssl } from "../helpers/tools.js";

/**
 * SCEP's CMS as OpenSSL, an independent implementation, reads and writes it: the pkcsPKIEnvelope
 * the client sends opens with `openssl cms -decrypt`, its pkiMessage verifies with `openssl cms
 * -verify`, and envelopes OpenSSL makes with the ciphers servers answer with open here.
 */

/** A self-signed RSA certificate and its key, by openssl, in `dir`. */
function rsaIdentity(dir: string, name: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  openssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    `/CN=${name}`,
    "-days",
    "1",
    "-keyout",
    key,
    "-out",
    cert,
  );
  return { cert, key };
}

describe("SCEP's CMS against OpenSSL", () => {
  it("an envelope for the CA (AES-128-CBC, RSA key transport) opens with openssl cms -decrypt", async () => {
    const dir = await tempDir("cr-scep-cms-");
    const ca = rsaIdentity(dir, "ca");
    const der = envelope(
      new TextEncoder().encode("the CSR"),
      new x509.X509Certificate(await readFile(ca.cert, "utf8")),
      "aes-128-cbc",
    );
    await writeFile(join(dir, "env.der"), der);
    const out = execFileSync("openssl", [
      "cms",
      "-decrypt",
      "-inform",
      "DER",
      "-in",
      join(dir, "env.der"),
      "-recip",
      ca.cert,
      "-inkey",
      ca.key,
    ]);
    expect(out.toString()).toBe("the CSR");
  });

  it("a pkiMessage verifies with openssl cms -verify, and its SCEP attributes are signed", async () => {
    const dir = await tempDir("cr-scep-cms-");
    const me = rsaIdentity(dir, "device");
    const cert = new x509.X509Certificate(await readFile(me.cert, "utf8"));
    const key = createPrivateKey(await readFile(me.key, "utf8"));
    const msg = signedMessage(
      new TextEncoder().encode("envelope"),
      { messageType: "19", transactionID: "ABC", senderNonce: new Uint8Array(16).fill(7) },
      { cert, key, digest: "sha256" },
    );
    await writeFile(join(dir, "msg.der"), msg);
    const out = execFileSync(
      "openssl",
      ["cms", "-verify", "-noverify", "-inform", "DER", "-in", join(dir, "msg.der")],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    expect(out.toString()).toBe("envelope");
    const read = readMessage(msg, [cert]);
    expect(read.attrs).toMatchObject({ messageType: "19", transactionID: "ABC" });
    // Another signer's certificate: refused.
    const other = rsaIdentity(dir, "other");
    const otherCert = new x509.X509Certificate(await readFile(other.cert, "utf8"));
    expect(() => readMessage(msg, [otherCert])).toThrow(/signed by a certificate other than/);
  });

  it.each(["aes-256-cbc", "des-ede3-cbc"] as const)("an envelope openssl makes with %s opens here", async (cipher) => {
    const dir = await tempDir("cr-scep-cms-");
    const me = rsaIdentity(dir, "device");
    await writeFile(join(dir, "plain"), "the certificate");
    openssl(
      "cms",
      "-encrypt",
      { "aes-256-cbc": "-aes-256-cbc", "des-ede3-cbc": "-des3" }[cipher],
      "-binary",
      "-outform",
      "DER",
      "-in",
      join(dir, "plain"),
      "-out",
      join(dir, "env.der"),
      me.cert,
    );
    const opened = openEnvelope(
      new Uint8Array(await readFile(join(dir, "env.der"))),
      new x509.X509Certificate(await readFile(me.cert, "utf8")),
      createPrivateKey(await readFile(me.key, "utf8")),
    );
    expect(new TextDecoder().decode(opened.content)).toBe("the certificate");
    expect(opened.cipher).toBe(cipher);
  });
});
