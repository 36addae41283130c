import { createPublicKey, randomBytes } from "node:crypto";
import { link, open, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { type CryptoProvider, toPem } from "cert-retriever";
import * as x509 from "./x509.js";

/** The lab CA: dojot's IOTmidCA look-alike, with its key. */
export interface LabCa {
  name: string;
  cert: x509.X509Certificate;
  key: CryptoKey;
}

/** dojot's CA DN (`ejbca-docker/default.properties`). */
const LAB_CA_DN = "CN=IOTmidCA, O=EJBCA IOT, C=SE";
/** The lab CA's key and signature algorithm: RSA 2048, SHA-256. */
export const RSA_SHA256 = {
  name: "RSASSA-PKCS1-v1_5",
  hash: "SHA-256",
  publicExponent: new Uint8Array([1, 0, 1]),
  modulusLength: 2048,
};
const DAY = 86_400_000;

/**
 * Which of the lab's CAs: EJBCA-REST's `IOTmidCA`, x509-identity-mgmt's `X509 Identity CA`, or the
 * EST server's two-level PKI (a root, and the issuing CA under it that signs devices).
 */
export type LabCaKind = DojotCaKind | "est-root" | "est-issuing";

/** The dojot platforms' CAs, which revoke and publish CRLs. */
export type DojotCaKind = "legacy" | "x509";

/** The EST root's and issuing CA's names (no platform to copy: EST servers name their CAs as they like). */
const EST_ROOT_DN = "CN=Lab EST Root CA, O=cert-retriever lab";
const EST_ISSUING_DN = "CN=Lab EST Issuing CA, O=cert-retriever lab";

/** Where each CA lives in the lab directory, its name, who signs it (self-signed if no `parent`), and how it is made. */
const CA_FILES: Record<
  LabCaKind,
  { key: string; cert: string; name: string; size: CaSize; dn: () => x509.JsonName | string; parent?: LabCaKind }
> = {
  legacy: { key: "ca.key", cert: "ca.crt", name: "IOTmidCA", size: { bits: 2048, days: 650 }, dn: () => LAB_CA_DN },
  // `ejbca/bin/dojot-custom/certificate-authorities-creation.sh` at dojot v0.5.0 (and `iam/ejbca/…` at
  // v0.8.0): `ca init --dn "CN=X509 Identity CA,O=dojot IoT Platform,OU=Certificate Issuer,UID=c-0<16 hex>"`,
  // RSA 4096 (`BATCH_KEY_BIT_LENGTH`), SHA256WithRSA. The CA certificate the service returns
  // (`apidocs/api-description.apib` at v0.5.0, `caPem`) is encoded UID, CN, OU, O, lives 30 years
  // (the X509IdentitiesCA profile's `30y`) and has basicConstraints CA:TRUE, pathlen 0.
  x509: {
    key: "x509-ca.key",
    cert: "x509-ca.crt",
    name: "X509 Identity CA",
    size: { bits: 4096, days: 10_950, pathLength: 0 },
    dn: (): x509.JsonName => [
      { [UID_OID]: [`c-0${randomBytes(8).toString("hex")}`] },
      { CN: ["X509 Identity CA"] },
      { OU: ["Certificate Issuer"] },
      { O: ["dojot IoT Platform"] },
    ],
  },
  // RSA 2048 throughout: every EST client (strongSwan's `pki --est` among them) takes it.
  "est-root": {
    key: "est-root-ca.key",
    cert: "est-root-ca.crt",
    name: "Lab EST Root CA",
    size: { bits: 2048, days: 3650 },
    dn: () => EST_ROOT_DN,
  },
  "est-issuing": {
    key: "est-issuing-ca.key",
    cert: "est-issuing-ca.crt",
    name: "Lab EST Issuing CA",
    size: {
      bits: 2048,
      days: 1825,
      pathLength: 0,
      usages: x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
    },
    dn: () => EST_ISSUING_DN,
    parent: "est-root",
  },
};

/** A CA's key size, lifetime, path length and key usages (default keyCertSign, cRLSign, digitalSignature, as EJBCA sets them). */
interface CaSize {
  bits: number;
  days: number;
  pathLength?: number;
  usages?: x509.KeyUsageFlags;
}

/** The `userid` (UID) attribute. */
const UID_OID = "0.9.2342.19200300.100.1.1";

/** Loads the CA of `kind` from `dir`, or creates it there (key 0600, certificate) on first use. */
export async function loadOrCreateCa(dir: string, crypto: CryptoProvider, kind: LabCaKind = "legacy"): Promise<LabCa> {
  const files = CA_FILES[kind];
  const paths = { key: join(dir, files.key), cert: join(dir, files.cert) };
  const found = await readCa(files.name, paths, crypto);
  if (found) return found;
  const issuer = files.parent ? await loadOrCreateCa(dir, crypto, files.parent) : undefined;
  const { cert, keys } = await createCa(files.dn(), crypto, files.size, issuer);
  const made = { key: await privateKeyPem(keys.privateKey, crypto), cert: toPem(cert.rawData, "CERTIFICATE") };
  if (await publishCa(paths, made)) return { name: files.name, cert, key: keys.privateKey };
  // Another process (`lab serve` beside `lab server-cert`) made it first: use theirs.
  const theirs = await readCa(files.name, paths, crypto);
  if (!theirs) throw new Error(`${paths.key} vanished while the lab was making its CA`);
  return theirs;
}

/** How long a CA whose key is there but whose certificate is not yet (another process is linking it) is waited for. */
const CA_WAIT_MS = 10_000;

/**
 * The CA in the lab directory, or undefined when it has none. The key is linked in first (see
 * {@link publishCa}): a key without its certificate is a CA another process is finishing, waited for.
 */
async function readCa(
  name: string,
  paths: { key: string; cert: string },
  crypto: CryptoProvider,
): Promise<LabCa | undefined> {
  const since = Date.now();
  for (;;) {
    const [keyPem, certPem] = await Promise.all([readIfThere(paths.key), readIfThere(paths.cert)]);
    if (keyPem === undefined) return undefined;
    if (certPem !== undefined) {
      const key = await crypto.subtle.importKey("pkcs8", x509.PemConverter.decodeFirst(keyPem), RSA_SHA256, false, [
        "sign",
      ]);
      return { name, cert: new x509.X509Certificate(certPem), key };
    }
    if (Date.now() - since > CA_WAIT_MS)
      throw new Error(`${paths.key} has no certificate beside it (${paths.cert}): remove the key to make a new CA`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A file's text, or undefined when it does not exist. */
async function readIfThere(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/**
 * Puts a new CA in place without clobbering one another process made meanwhile: both files are
 * written whole under names of their own, then linked to theirs, the key first (link fails if the
 * name exists). False when another CA's key was there first.
 */
async function publishCa(paths: { key: string; cert: string }, pems: { key: string; cert: string }): Promise<boolean> {
  const tag = `.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  const temp = { key: paths.key + tag, cert: paths.cert + tag };
  try {
    await writeNew(temp.key, pems.key, 0o600);
    await writeNew(temp.cert, pems.cert, 0o644);
    try {
      await link(temp.key, paths.key);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
      throw err;
    }
    await link(temp.cert, paths.cert);
    return true;
  } finally {
    await Promise.all([rm(temp.key, { force: true }), rm(temp.cert, { force: true })]);
  }
}

/** The EST server's PKI from `dir` (made there on first use): the root, and the issuing CA it signed. */
export async function loadOrCreateEstCa(dir: string, crypto: CryptoProvider): Promise<{ root: LabCa; issuing: LabCa }> {
  const issuing = await loadOrCreateCa(dir, crypto, "est-issuing"); // makes the root first
  return { root: await loadOrCreateCa(dir, crypto, "est-root"), issuing };
}

/** A new EST PKI in memory with the lab's names and sizes (another key pair each): the `wrong-ca` of EST faults. */
export async function createEstPki(crypto: CryptoProvider): Promise<{ root: LabCa; issuing: LabCa }> {
  const make = async (kind: "est-root" | "est-issuing", issuer?: LabCa): Promise<LabCa> => {
    const { cert, keys } = await createCa(CA_FILES[kind].dn(), crypto, CA_FILES[kind].size, issuer);
    return { name: CA_FILES[kind].name, cert, key: keys.privateKey };
  };
  const root = await make("est-root");
  return { root, issuing: await make("est-issuing", root) };
}

/** A new RSA CA named `dn` (2048 bits, 650 days unless told), in memory: self-signed, or signed by `issuer`. */
export async function createCa(
  dn: x509.JsonName | x509.Name | string,
  crypto: CryptoProvider,
  size: CaSize = { bits: 2048, days: 650 },
  issuer?: LabCa,
): Promise<{ cert: x509.X509Certificate; keys: CryptoKeyPair }> {
  const keys = (await crypto.subtle.generateKey({ ...RSA_SHA256, modulusLength: size.bits }, true, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
  const now = Date.now();
  const usages =
    size.usages ?? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature;
  const params = {
    serialNumber: randomSerial(),
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + size.days * DAY),
    signingAlgorithm: RSA_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(true, size.pathLength, true),
      new x509.KeyUsagesExtension(usages, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ...(issuer ? [await x509.AuthorityKeyIdentifierExtension.create(issuer.cert.publicKey, false, crypto)] : []),
    ],
  };
  const cert = issuer
    ? await x509.X509CertificateGenerator.create(
        { ...params, subject: dn, issuer: issuer.cert.subjectName, publicKey: keys.publicKey, signingKey: issuer.key },
        crypto,
      )
    : await x509.X509CertificateGenerator.createSelfSigned({ ...params, name: dn, keys }, crypto);
  return { cert, keys };
}

/** What the certificate profile allows; `cfree` is dojot's CFREE, `open` also takes ECDSA keys. */
export type CertProfile = "cfree" | "open";

/** A CSR the profile refuses, with EJBCA-like wording (the exact EJBCA texts are not in dojot's sources). */
export class ProfileRefusal extends Error {}

/** Decodes a PKCS#10 request, as EJBCA does first (for its public key) before it authenticates the end entity. */
export function parseCsr(csrDer: Uint8Array): x509.Pkcs10CertificateRequest {
  try {
    return new x509.Pkcs10CertificateRequest(new Uint8Array(csrDer));
  } catch {
    throw new ProfileRefusal("Error decoding PKCS10 request: not a valid certification request.");
  }
}

/** Parses a PKCS#10 request as EJBCA does before signing; its proof of possession must verify. */
export async function parseSignedCsr(
  csrDer: Uint8Array,
  crypto: CryptoProvider,
): Promise<x509.Pkcs10CertificateRequest> {
  const csr = parseCsr(csrDer);
  let popo = false;
  try {
    popo = await csr.verify(crypto);
  } catch {
    // WebCrypto cannot verify every curve; EJBCA would refuse those requests too.
  }
  if (!popo) throw new ProfileRefusal("Verification of signature (popo) on PKCS#10 request failed.");
  return csr;
}

/** What EJBCA needs to sign one certificate under a certificate profile. */
export interface EjbcaSigning {
  ca: LabCa;
  csr: x509.Pkcs10CertificateRequest;
  subject: x509.JsonName | x509.Name;
  /** The profile's own extensions (basicConstraints, key usages, SKI, AKI, …). */
  profileExtensions: x509.Extension[];
  /**
   * The profile's "Allow Extension Override" (`allowextensionoverride`): the request's extensions
   * (SANs, key usages, …) go into the certificate, and the profile adds only those it lacks.
   */
  extensionOverride: boolean;
  notBefore: Date;
  notAfter: Date;
  /** Certifies another key than the CSR's (a fault: a certificate for the wrong key). */
  publicKey?: CryptoKey;
}

/**
 * Signs as EJBCA's X509CA.generateCertificate does: with extension override, every extension of
 * the request first, then the profile's standard extensions whose OID the request did not bring
 * (Keyfactor/ejbca-ce `X509CA.java`: "First we check if there is general extension override, and
 * add all extensions from the request"); the end is capped at the CA's own end, as EJBCA does.
 */
export async function signAsEjbca(s: EjbcaSigning, crypto: CryptoProvider): Promise<x509.X509Certificate> {
  const requested = s.extensionOverride ? s.csr.extensions : [];
  const present = new Set(requested.map((e) => e.type));
  const extensions = [...requested, ...s.profileExtensions.filter((e) => !present.has(e.type))];
  const caEnd = s.ca.cert.notAfter.getTime();
  return x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerial(),
      subject: s.subject,
      issuer: s.ca.cert.subjectName,
      notBefore: s.notBefore,
      notAfter: new Date(Math.min(s.notAfter.getTime(), caEnd)),
      publicKey: s.publicKey ?? s.csr.publicKey,
      signingKey: s.ca.key,
      signingAlgorithm: RSA_SHA256,
      extensions,
    },
    crypto,
  );
}

/** What a certificate fault changes in a certificate: its validity, the key it certifies, extra extensions. */
export interface CertOverrides {
  notBefore?: Date;
  notAfter?: Date;
  publicKey?: CryptoKey;
  extensions?: x509.Extension[];
}

/**
 * Signs a CSR as EJBCA with CFREE/EMPTY_CFREE would: proof of possession checked, key checked
 * against the profile, `subject` the end entity's DN (`CN=<username>` unless `POST /user` set
 * another; CFREE has `allowdnoverride` false), the request's extensions kept
 * (CFREE allows extension override) else the CFREE key usages, 730 days.
 */
export async function issueCertificate(
  ca: LabCa,
  csrDer: Uint8Array,
  subject: string | x509.JsonName,
  profile: CertProfile,
  crypto: CryptoProvider,
  overrides: CertOverrides = {},
  extensionOverride = true,
): Promise<x509.X509Certificate> {
  const csr = await parseSignedCsr(csrDer, crypto);
  checkKey(csr.publicKey, profile);
  const now = Date.now();
  const profileExtensions: x509.Extension[] = [
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
    ...(overrides.extensions ?? []),
  ];
  return signAsEjbca(
    {
      ca,
      csr,
      subject: typeof subject === "string" ? new x509.Name(subject) : subject,
      profileExtensions,
      extensionOverride,
      notBefore: overrides.notBefore ?? new Date(now - 60_000),
      notAfter: overrides.notAfter ?? new Date(now + 730 * DAY),
      publicKey: overrides.publicKey,
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
  if (profile === "open" && spki.asymmetricKeyType === "ec" && OPEN_EC_CURVES.includes(details.namedCurve ?? ""))
    return;
  throw new ProfileRefusal(
    `Illegal key algorithm used: ${spki.asymmetricKeyType === "ec" ? "ECDSA" : spki.asymmetricKeyType}.`,
  );
}

/** A positive 128-bit serial number without a leading zero byte. */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0]! &= 0x7f; // positive
  bytes[0]! |= 0x01; // no leading zero byte
  return bytes.toString("hex");
}

/** A private key as unencrypted PKCS#8 PEM, which openssl, mosquitto and Node's TLS read. */
async function privateKeyPem(key: CryptoKey, crypto: CryptoProvider): Promise<string> {
  return toPem(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
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
export async function issueServerCertificate(
  ca: LabCa,
  names: x509.JsonGeneralName[],
  crypto: CryptoProvider,
): Promise<{ cert: string; key: string }> {
  const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
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
