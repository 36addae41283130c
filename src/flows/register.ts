import { CertRetrieverError } from "../errors.js";
import { normalizeFingerprint } from "../keys/fingerprint.js";
import { certificatePems, toPem } from "../keys/key-types.js";
import type { CryptoProvider } from "../keys/provider.js";
import * as x509 from "../keys/x509.js";
import type { LoginSource, ProtocolClient, Session } from "../protocols/types.js";
import { authenticate, openSession, type TokenSession } from "./authenticate.js";
import { displayName, sha256Fingerprint } from "./certificate.js";
import { type AgentEvent, StepRunner, type StepTiming } from "./steps.js";

const DAY_MS = 24 * 60 * 60 * 1000;

/** The steps of a registration, in the order they run (the chain is checked before any request). */
export const REGISTER_STEPS = ["validate", "authenticate", "fetch-ca", "register"] as const;

/** One of {@link REGISTER_STEPS}. */
export type RegisterStep = (typeof REGISTER_STEPS)[number];

/** A certificate chain from a file, checked: the device's certificate first, then its CAs. */
export interface CheckedChain {
  leaf: x509.X509Certificate;
  /** Every certificate, re-encoded as PEM (nothing else in the file is ever sent). */
  pem: string;
  count: number;
  /** The fingerprint of the self-signed root CA at the chain's end, if it ends with one. */
  rootFingerprint?: string;
  /** What is worth saying but does not stop the run. */
  notes: string[];
}

/**
 * Checks a PEM chain before anything is sent: it holds certificates, the first is the device's own
 * (not a CA) and valid now, and if it ends with a self-signed root CA, that root's fingerprint is
 * `caFingerprint` when one is given (else the platform could not tell which trusted CA to use).
 * The device id need not be in the certificate (dojot v0.7+ binds by fingerprint): only a note.
 */
export async function checkChain(
  text: string,
  where: string,
  opts: { deviceId: string; caFingerprint?: string; now: Date; crypto: CryptoProvider },
): Promise<CheckedChain> {
  const fail = failIn(where);
  const certs = readChain(text, where, fail);
  const leaf = certs[0]!;
  const notes: string[] = [];
  if (/PRIVATE KEY-----/.test(text)) notes.push(`${where} also holds a private key; only the certificates are sent`);
  checkLeaf(leaf, where, opts.now.getTime(), fail);
  await checkOrder(certs, where, opts.crypto, fail);
  const rootFingerprint = await checkRoot(certs, where, opts, fail);
  if (!namesDevice(leaf, opts.deviceId)) {
    notes.push(
      `the certificate names ${displayName(leaf.subjectName)}, not device '${opts.deviceId}'; dojot v0.7+ finds the device by the certificate's fingerprint, so VerneMQ accepts it, but a broker that checks the CN would not`,
    );
  }
  return {
    leaf,
    pem: certs.map((c) => toPem(c.rawData, "CERTIFICATE").trimEnd()).join("\n"),
    count: certs.length,
    rootFingerprint,
    notes,
  };
}

/** The error of a chain that cannot be registered, naming the file it came from. */
type Fail = (message: string, reason: "config" | "cert-invalid" | "cert-out-of-date" | "usage") => CertRetrieverError;

/** The {@link Fail} of the chain read from `where`. */
function failIn(where: string): Fail {
  return (message, reason) =>
    new CertRetrieverError(`validate failed: ${message}`, { step: "validate", reason, facts: { path: where } });
}

/** The certificates of a PEM text, in order; none, or one that is not X.509, is refused. */
function readChain(text: string, where: string, fail: Fail): x509.X509Certificate[] {
  const blocks = certificatePems(text);
  if (blocks.length === 0) throw fail(`${where} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`, "config");
  return blocks.map((block, i) => {
    try {
      return new x509.X509Certificate(block);
    } catch {
      throw fail(
        `certificate ${i + 1} of ${blocks.length} in ${where} cannot be read as an X.509 certificate`,
        "config",
      );
    }
  });
}

/** The device's own certificate: not a CA, valid now, and more than a day from its end. */
function checkLeaf(leaf: x509.X509Certificate, where: string, now: number, fail: Fail): void {
  const named = `the certificate in ${where} (${displayName(leaf.subjectName)})`;
  if (leaf.getExtension(x509.BasicConstraintsExtension)?.ca) {
    throw fail(
      `the first certificate in ${where} (${displayName(leaf.subjectName)}) is a CA certificate (basicConstraints CA:TRUE); the platform registers only a device's own certificate`,
      "cert-invalid",
    );
  }
  if (leaf.notAfter.getTime() <= now)
    throw fail(`${named} expired on ${leaf.notAfter.toISOString()}`, "cert-out-of-date");
  if (leaf.notBefore.getTime() > now)
    throw fail(`${named} is not valid before ${leaf.notBefore.toISOString()}`, "cert-out-of-date");
  // x509-identity-mgmt refuses a certificate with a day or less left (`checkRemainingDays`, pkiUtils.js at v0.7.0).
  if (leaf.notAfter.getTime() - now <= DAY_MS)
    throw fail(
      `${named} expires on ${leaf.notAfter.toISOString()}, within a day, and the platform registers none that close to its end`,
      "cert-out-of-date",
    );
}

/**
 * Each certificate must be signed by the next: dojot's own check skips the device's certificate
 * (pkijs takes the last certificate it is given as the end entity), so a chain in the wrong
 * order, or of another certificate, would be registered and then refused by the broker.
 */
async function checkOrder(certs: x509.X509Certificate[], where: string, crypto: CryptoProvider, fail: Fail) {
  for (let i = 0; i + 1 < certs.length; i++) {
    const [cert, issuer] = [certs[i]!, certs[i + 1]!];
    const signed =
      cert.issuer === issuer.subject &&
      (await cert.verify({ publicKey: issuer.publicKey, signatureOnly: true }, crypto).catch(() => false));
    if (!signed) {
      throw fail(
        `certificate ${i + 1} in ${where} (${displayName(cert.subjectName)}) is not signed by certificate ${i + 2} (${displayName(issuer.subjectName)}): the chain must run from the device's certificate to its root, each signed by the next`,
        "cert-invalid",
      );
    }
  }
}

/**
 * The fingerprint of the self-signed root CA the chain ends with, which must be the one given if
 * one is; without either, the platform could not tell which trusted CA issued the chain.
 */
async function checkRoot(
  certs: x509.X509Certificate[],
  where: string,
  opts: { caFingerprint?: string; crypto: CryptoProvider },
  fail: Fail,
): Promise<string | undefined> {
  const last = certs.at(-1)!;
  const rootFingerprint =
    certs.length > 1 && (await isSelfSignedCa(last, opts.crypto)) ? sha256Fingerprint(last) : undefined;
  const pinned = opts.caFingerprint === undefined ? undefined : normalizeFingerprint(opts.caFingerprint);
  if (rootFingerprint && pinned && rootFingerprint.replace(/:/g, "") !== pinned) {
    throw fail(
      `the root CA at the end of ${where} has the fingerprint ${rootFingerprint}, not the one given (${opts.caFingerprint})`,
      "usage",
    );
  }
  if (!rootFingerprint && !pinned) {
    throw fail(
      `${where} does not end with its root CA certificate, and no root CA fingerprint was given, so the platform cannot tell which trusted CA issued it`,
      "usage",
    );
  }
  return rootFingerprint;
}

/** Whether the CN or a subjectAltName is the device id. */
function namesDevice(cert: x509.X509Certificate, deviceId: string): boolean {
  if (cert.subjectName.getField("CN").includes(deviceId)) return true;
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  return Boolean(san?.names.items.some((name) => name.value === deviceId || name.value.endsWith(`/${deviceId}`)));
}

async function isSelfSignedCa(cert: x509.X509Certificate, crypto: CryptoProvider): Promise<boolean> {
  if (!cert.getExtension(x509.BasicConstraintsExtension)?.ca || cert.subject !== cert.issuer) return false;
  return cert.verify({ publicKey: cert.publicKey, signatureOnly: true }, crypto).catch(() => false);
}

/** What a registration needs. */
export interface RegisterOptions {
  client: ProtocolClient;
  deviceId: string;
  chain: CheckedChain;
  /** The root CA's fingerprint, when the chain does not end with it. */
  caFingerprint?: string;
  login?: LoginSource;
  token?: TokenSession;
  now?: () => Date;
  signal?: AbortSignal;
}

/** The outcome of {@link registerExisting}. */
export interface RegisterResult {
  status: "registered" | "already-registered";
  deviceId: string;
  tenant?: string;
  fingerprint: string;
  rootCaFingerprint?: string;
  subject: string;
  issuer: string;
  notBefore: string;
  notAfter: string;
  steps: StepTiming<RegisterStep>[];
}

/** Progress of a registration, as enroll's: the CLI renders it. */
export type RegisterEvent = AgentEvent<RegisterStep>;

/**
 * Registers a certificate the device already has (checked with {@link checkChain}) with the
 * platform and binds it to the device: authenticate, find out which API answers (it must offer
 * registration), register. Writes nothing locally.
 */
export async function registerExisting(
  opts: RegisterOptions,
  onEvent: (e: RegisterEvent) => void = () => {},
): Promise<RegisterResult> {
  const now = opts.now ?? (() => new Date());
  const run = new StepRunner(REGISTER_STEPS, onEvent, opts.signal);
  const { chain } = opts;
  await run.run(
    "validate",
    async () => undefined,
    () =>
      `${displayName(chain.leaf.subjectName)}, issued by ${displayName(chain.leaf.issuerName)}, valid until ${chain.leaf.notAfter.toISOString()}; ${chain.count} certificate(s)`,
  );
  for (const message of chain.notes) run.note(message);
  const live = await authenticate(run, "authenticate", () => openSession(opts.client, opts, now()));
  const proto = await run.run(
    "fetch-ca",
    () => live.use((session) => registrar(opts.client, session)),
    (p) => `API ${p.title}`,
  );
  const registered = await run.run(
    "register",
    () =>
      live.use((session) =>
        proto.register(session, {
          deviceId: opts.deviceId,
          chainPem: chain.pem,
          leafDer: new Uint8Array(chain.leaf.rawData),
          caFingerprint: chain.rootFingerprint ? undefined : opts.caFingerprint,
        }),
      ),
    (r) =>
      r.already
        ? `certificate ${r.fingerprint} was registered and bound to device ${opts.deviceId} already`
        : `certificate ${r.fingerprint} registered and bound to device ${opts.deviceId}`,
  );
  return {
    status: registered.already ? "already-registered" : "registered",
    deviceId: opts.deviceId,
    tenant: live.session.tenant,
    fingerprint: registered.fingerprint,
    rootCaFingerprint: chain.rootFingerprint ?? opts.caFingerprint,
    subject: displayName(chain.leaf.subjectName),
    issuer: displayName(chain.leaf.issuerName),
    notBefore: chain.leaf.notBefore.toISOString(),
    notAfter: chain.leaf.notAfter.toISOString(),
    steps: run.timings,
  };
}

/** The client that answers (after fetching the CA, an auto-detecting client knows which), if it can register a certificate. */
async function registrar(client: ProtocolClient, session: Session) {
  await client.trust.fetchCa(session);
  const proto = client.effective?.() ?? client;
  if (!proto.register) {
    throw new CertRetrieverError(
      `fetch-ca failed: the platform speaks ${proto.title}, which cannot register a certificate it did not issue; that needs x509-identity-mgmt (dojot v0.7+)`,
      { step: "fetch-ca", reason: "not-supported" },
    );
  }
  return { title: proto.title, register: proto.register.bind(proto) };
}
