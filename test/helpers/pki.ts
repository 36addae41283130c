import { privateKeyPem, toPem } from "../../src/keys/key-types.js";
import { softwareCrypto } from "../../src/keys/provider.js";
import * as x509 from "../../src/keys/x509.js";

const crypto = softwareCrypto();
const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGN = { name: "ECDSA", hash: "SHA-256" } as const;
const DAY = 86_400_000;

/** A throwaway CA made at test time (nothing is committed). */
export interface TestCa {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
  pem: string;
}

/** A self-signed P-256 CA named `cn`. */
export async function makeCa(cn: string): Promise<TestCa> {
  const keys = (await crypto.subtle.generateKey(EC, true, ["sign", "verify"])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      name: `CN=${cn}`,
      keys,
      signingAlgorithm: SIGN,
      notBefore: new Date(Date.now() - DAY),
      notAfter: new Date(Date.now() + 30 * DAY),
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      ],
    },
    crypto,
  );
  return { cert, keys, pem: toPem(cert.rawData, "CERTIFICATE") };
}

/** A leaf certificate and key (PEM) from `ca`, for a TLS server (`names` as SANs) or a client, with `extra` extensions. */
export async function issueLeaf(
  ca: TestCa,
  cn: string,
  names: x509.JsonGeneralName[],
  usage: "server" | "client",
  extra: x509.Extension[] = [],
): Promise<{ cert: string; key: string }> {
  const keys = (await crypto.subtle.generateKey(EC, true, ["sign", "verify"])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create(
    {
      subject: `CN=${cn}`,
      issuer: ca.cert.subjectName,
      publicKey: keys.publicKey,
      signingKey: ca.keys.privateKey,
      signingAlgorithm: SIGN,
      notBefore: new Date(Date.now() - DAY),
      notAfter: new Date(Date.now() + 30 * DAY),
      extensions: [
        new x509.BasicConstraintsExtension(false),
        new x509.ExtendedKeyUsageExtension([
          usage === "server" ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth,
        ]),
        ...(names.length ? [new x509.SubjectAlternativeNameExtension(names)] : []),
        ...extra,
      ],
    },
    crypto,
  );
  return { cert: toPem(cert.rawData, "CERTIFICATE"), key: await privateKeyPem(keys.privateKey, crypto) };
}
