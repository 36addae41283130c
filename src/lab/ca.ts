import { createPublicKey, randomBytes } from "node:crypto";
import { open, readFile } from "node:fs/promises";
import { join } from "node:path";
import * as x509 from "../crypto/x509.js";
import { privateKeyPem, toPem } from "../crypto/keys.js";
import type { CryptoProvider } from "../crypto/provider.js";

/** The lab CA: dojot's IOTmidCA look-alike, with its key. */
export interface LabCa {
  name: string;
  cert: x509.X509Certificate;
  key: CryptoKey;
}

/** dojot's CA DN (`ejbca-docker/default.properties`). */
export const LAB_CA_DN = "CN=IOTmidCA, O=EJBCA IOT, C=SE";
/** The lab CA's key and signature algorithm: RSA 2048, SHA-256. */
export const RSA_SHA256 = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256", publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };
const DAY = 86_400_000;

/** Loads the CA from `dir`, or creates it there (ca.key 0600, ca.crt) on first start. */
export async function loadOrCreateCa(dir: string, crypto: CryptoProvider): Promise<LabCa> {
  const keyPath = join(dir, "ca.key");
  const certPath = join(dir, "ca.crt");
  try {
    const [keyPem, certPem] = await Promise.all([readFile(keyPath, "utf8"), readFile(certPath, "utf8")]);
    const key = await crypto.subtle.importKey("pkcs8", x509.PemConverter.decodeFirst(keyPem), RSA_SHA256, false, ["sign"]);
    return { name: "IOTmidCA", cert: new x509.X509Certificate(certPem), key };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const { cert, keys } = await createCa(LAB_CA_DN, crypto);
  await writeNew(keyPath, await privateKeyPem(keys.privateKey, crypto), 0o600);
  await writeNew(certPath, toPem(cert.rawData, "CERTIFICATE"), 0o644);
  return { name: "IOTmidCA", cert, key: keys.privateKey };
}

/** A new self-signed RSA CA named `dn`, valid 650 days (in memory). */
export async function createCa(dn: string, crypto: CryptoProvider): Promise<{ cert: x509.X509Certificate; keys: CryptoKeyPair }> {
  const keys = (await crypto.subtle.generateKey(RSA_SHA256, true, ["sign", "verify"])) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerial(),
      name: dn,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 650 * DAY),
      keys,
      signingAlgorithm: RSA_SHA256,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  return { cert, keys };
}

/** What the certificate profile allows; `cfree` is dojot's CFREE, `open` also takes ECDSA and URI names. */
export type CertProfile = "cfree" | "open";

/** A CSR the profile refuses, with EJBCA-like wording (the exact EJBCA texts are not in dojot's sources). */
export class ProfileRefusal extends Error {}

/**
 * Signs a CSR as EJBCA with CFREE/EMPTY_CFREE would: proof of possession checked, key checked
 * against the profile, subject from the end entity (`CN=<username>`), DNS and IP SANs kept
 * (URI too with `open`), the CFREE key usages, 730 days.
 */
export async function issueCertificate(
  ca: LabCa,
  csrDer: Uint8Array,
  username: string,
  profile: CertProfile,
  crypto: CryptoProvider,
  overrides: { notBefore?: Date; notAfter?: Date; publicKey?: CryptoKey } = {},
): Promise<x509.X509Certificate> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(new Uint8Array(csrDer));
  } catch {
    throw new ProfileRefusal("Error decoding PKCS10 request: not a valid certification request.");
  }
  if (!(await csr.verify(crypto))) throw new ProfileRefusal("Verification of signature (popo) on PKCS#10 request failed.");
  checkKey(csr.publicKey, profile);
  const san = csr.getExtension("2.5.29.17") as x509.SubjectAlternativeNameExtension | null;
  const requested = san?.names.toJSON() ?? [];
  const kept = requested.filter((n) => n.type === "dns" || n.type === "ip" || (profile === "open" && n.type === "url"));
  const now = Date.now();
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, false),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.digitalSignature |
        x509.KeyUsageFlags.nonRepudiation |
        x509.KeyUsageFlags.keyEncipherment |
        x509.KeyUsageFlags.dataEncipherment |
        x509.KeyUsageFlags.keyAgreement,
      false,
    ),
    await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey, false, crypto),
    await x509.SubjectKeyIdentifierExtension.create(overrides.publicKey ?? csr.publicKey, false, crypto),
  ];
  if (kept.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(kept, false));
  return x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerial(),
      subject: [{ CN: [username] }],
      issuer: ca.cert.subjectName,
      notBefore: overrides.notBefore ?? new Date(now - 60_000),
      notAfter: overrides.notAfter ?? new Date(now + 730 * DAY),
      publicKey: overrides.publicKey ?? csr.publicKey,
      signingKey: ca.key,
      signingAlgorithm: RSA_SHA256,
      extensions,
    },
    crypto,
  );
}

const CFREE_RSA_BITS = [2048, 3072, 4096, 6144, 8192];
const OPEN_EC_CURVES = ["prime256v1", "secp384r1"];

function checkKey(key: x509.PublicKey, profile: CertProfile): void {
  const spki = createPublicKey({ key: Buffer.from(key.rawData), format: "der", type: "spki" });
  const details = spki.asymmetricKeyDetails ?? {};
  if (spki.asymmetricKeyType === "rsa") {
    const bits = details.modulusLength ?? 0;
    if (!CFREE_RSA_BITS.includes(bits)) {
      throw new ProfileRefusal(`Illegal key length, not authorized by certificate profile: ${bits}.`);
    }
    return;
  }
  if (profile === "open" && spki.asymmetricKeyType === "ec" && OPEN_EC_CURVES.includes(details.namedCurve ?? "")) return;
  throw new ProfileRefusal(`Illegal key algorithm used: ${spki.asymmetricKeyType === "ec" ? "ECDSA" : spki.asymmetricKeyType}.`);
}

function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0]! &= 0x7f; // positive
  bytes[0]! |= 0x01; // no leading zero byte
  return bytes.toString("hex");
}

async function writeNew(path: string, text: string, mode: number): Promise<void> {
  const handle = await open(path, "wx", mode);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A TLS server certificate and key (PEM) from the lab CA, for a broker: SANs as given, serverAuth, 365 days. */
export async function issueServerCertificate(ca: LabCa, names: x509.JsonGeneralName[], crypto: CryptoProvider): Promise<{ cert: string; key: string }> {
  const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const now = Date.now();
  const first = names[0]?.value ?? "localhost";
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerial(),
      subject: [{ CN: [first] }],
      issuer: ca.cert.subjectName,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 365 * DAY),
      publicKey: keys.publicKey,
      signingKey: ca.key,
      signingAlgorithm: RSA_SHA256,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
        new x509.SubjectAlternativeNameExtension(names, false),
        await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  return { cert: toPem(cert.rawData, "CERTIFICATE"), key: await privateKeyPem(keys.privateKey, crypto) };
}
