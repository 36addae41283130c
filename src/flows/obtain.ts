/**
 * Obtaining new credentials, step by step: authenticate, fetch the CA, make the key and the CSR,
 * have the platform sign it, validate what comes back, and bind it. Nothing is written here; each
 * step asks the protocol client for a capability, never for a protocol by name.
 */
import { profilePlatformNote } from "../broker/profiles.js";
import { CertRetrieverError, describeCause } from "../errors.js";
import { sameBytes } from "../keys/fingerprint.js";
import type { KeyHandle, KeyTransaction } from "../keys/key-store.js";
import type { KeyType } from "../keys/key-types.js";
import type * as x509 from "../keys/x509.js";
import type {
  Binding,
  Issued,
  PrepareContext,
  ProtocolClient,
  ReenrollCapability,
  Session,
  SignRequest,
} from "../protocols/types.js";
import { authenticate, type LiveSession, openSession } from "./authenticate.js";
import { buildCsr } from "./build-csr.js";
import { displayName, parseCertificate, sha256Fingerprint } from "./certificate.js";
import type { EnrollContext } from "./context.js";
import type { Stored } from "./decide.js";
import { checkPin } from "./inspect.js";
import type { EnrollStep } from "./result.js";
import type { StepRunner } from "./steps.js";
import { clearIssueJournal, type IssuedHere, readIssueJournal, writeIssueJournal } from "./unstored.js";
import {
  CLOCK_TOLERANCE_MS,
  checkClock,
  checkProfileIdentity,
  describeSkew,
  missingSans,
  validateCaChain,
  validateCertificate,
} from "./validate.js";

/** A renewal authenticated by the current credentials: the capability, and the credentials. */
interface Current {
  reenroll: ReenrollCapability;
  certificatePem: string;
  keyPem: string;
  /** The certificate renewed, whose names the new one keeps. */
  cert: x509.X509Certificate;
}

/** What a flow adds to obtaining credentials: a renewal's current credentials. */
export interface ObtainPlan {
  /** After generate-key: the current credentials to authenticate the request with, if any. */
  current?(proto: ProtocolClient, replacing: boolean): Current | undefined;
}

/** New credentials, validated and bound, not yet stored. */
export interface Obtained {
  session: Session;
  /** The protocol client that answered. */
  proto: ProtocolClient;
  /** The CA chain, the issuing CA first. */
  caChain: x509.X509Certificate[];
  key: KeyHandle;
  cert: x509.X509Certificate;
  issued: Issued;
  binding: Binding;
  /** The stored certificate is the fetched CA's: new credentials replace it on the same platform. */
  replacing: boolean;
}

/** What the steps before the key settled: the session, the CA chain, the client that answered, and the key to make. */
export interface Prepared {
  /** The session, which logs in again once when the platform says its token expired. */
  live: LiveSession;
  proto: ProtocolClient;
  /** The CA chain, the issuing CA first. */
  caChain: x509.X509Certificate[];
  /** The stored certificate is the fetched CA's. */
  replacing: boolean;
  keyType: { type: KeyType; why: string };
}

/**
 * authenticate and fetch-ca, then the pre-flight before any key is made or request sent: the
 * clock (in fetch-ca), what the platform asks of the CSR and whether it
 * takes the key type, and room in the store.
 */
export async function prepare(ctx: EnrollContext, run: StepRunner<EnrollStep>, stored: Stored): Promise<Prepared> {
  const live = await authenticate(run, "authenticate", () =>
    openSession(ctx.client, { login: ctx.login, token: ctx.token }, ctx.now()),
  );
  const { chain: caChain, proto } = await fetchCa(ctx, run, live);
  profileFits(ctx, proto, live.session.tenant);
  const replacing =
    stored.cert !== undefined &&
    sameBytes(stored.cert.issuerName.toArrayBuffer(), caChain[0]!.subjectName.toArrayBuffer());
  const keyType = await chooseKeyType(ctx, proto, live, { earlier: await readIssueJournal(ctx.store), replacing });
  await ctx.store.preflight?.();
  return { live, proto, caChain, replacing, keyType };
}

/** The profile's rules that need the platform (its tenant, its CN rule): a refusal, or a note. */
function profileFits(ctx: EnrollContext, proto: ProtocolClient, tenant: string | undefined): void {
  const { id } = ctx.device;
  const note = profilePlatformNote(
    ctx.device.profile?.name ?? "generic",
    id,
    tenant,
    proto.enroll.commonNames(id, tenant),
  );
  if (note) ctx.emit({ type: "note", message: note });
}

/** Runs the steps from authenticate to bind. */
export async function obtain(
  ctx: EnrollContext,
  run: StepRunner<EnrollStep>,
  tx: KeyTransaction,
  stored: Stored,
  plan: ObtainPlan = {},
  progress: { issued?: IssuedHere } = {},
): Promise<Obtained> {
  const { live, proto, caChain, replacing, keyType } = await prepare(ctx, run, stored);
  const key = await run.run(
    "generate-key",
    () => generateKey(ctx, tx, keyType.type),
    (k) => `${k.type ?? keyType.type} key ${k.where}${k.type ? "" : keyType.why}`,
    `making the ${keyType.type} key in ${ctx.keyStore.location}`,
  );
  const current = plan.current?.(proto, replacing);
  const asked = current ? missingSans(current.cert, ctx.device.sans) : [];
  if (current && asked.length > 0) run.note(current.reenroll.keptNames(asked));
  const csr = await run.run(
    "build-csr",
    () => buildCsr(ctx.device.id, key.keys, ctx.device.sans, key.crypto, current?.cert),
    () =>
      current
        ? `CSR for ${displayName(current.cert.subjectName)}, the names of the certificate it renews`
        : `CSR for CN=${ctx.device.id}`,
  );
  const signed = await submitStep(
    ctx,
    run,
    live,
    proto,
    { csrDer: new Uint8Array(csr.rawData), key },
    current,
    progress,
  );
  progress.issued = { der: signed.issued.der, cert: signed.cert, proto, session: live.session };
  await run.run(
    "validate",
    () => validate(ctx, proto, live.session, signed.cert, caChain[0]!, key),
    () => `key, signature, validity and subject checked`,
  );
  // Only a certificate that passed validation changes anything more on the platform.
  const binding = await run.run(
    "bind",
    async () =>
      proto.bind
        ? live.use((session) => proto.bind!(session, signed.issued, ctx.device.id))
        : { bound: false, detail: `not needed: ${proto.title} ${proto.enroll.noBinding ?? ""}` },
    (b) => b.detail,
  );
  return { session: live.session, proto, caChain, key, cert: signed.cert, issued: signed.issued, binding, replacing };
}

/**
 * submit-csr, with the journal that says until the certificate is stored that one may have been
 * issued (for a platform whose next run needs to know), and `progress` told of what was issued,
 * even when it cannot be read.
 */
async function submitStep(
  ctx: EnrollContext,
  run: StepRunner<EnrollStep>,
  live: LiveSession,
  proto: ProtocolClient,
  { csrDer, key }: { csrDer: Uint8Array; key: KeyHandle },
  current: Current | undefined,
  progress: { issued?: IssuedHere },
): Promise<{ issued: Issued; cert: x509.X509Certificate }> {
  const journal = proto.enroll.unstored?.journal === true;
  if (journal) await writeIssueJournal(ctx.store, proto.name, ctx.now());
  return run.run(
    "submit-csr",
    () =>
      live
        .use((session) =>
          submit(
            proto,
            session,
            { deviceId: ctx.device.id, csrDer, key: { keys: key.keys, crypto: key.crypto } },
            current,
            (i) => {
              progress.issued = { der: i.der, proto, session };
            },
          ),
        )
        .catch(async (err: unknown) => {
          // The platform answered, and not with a certificate: none was issued.
          if (journal && err instanceof CertRetrieverError && err.facts.status !== undefined)
            await clearIssueJournal(ctx.store);
          throw err;
        }),
    ({ cert }) => `certificate ${cert.serialNumber} issued`,
  );
}

/** fetch-ca: the CA chain, checked against the pin and its own signatures before it may vouch for anything; and the client that answered. */
async function fetchCa(
  ctx: EnrollContext,
  run: StepRunner<EnrollStep>,
  live: LiveSession,
): Promise<{ chain: x509.X509Certificate[]; proto: ProtocolClient; vouchedBy?: string }> {
  return run.run(
    "fetch-ca",
    async () => {
      const fetched = await live.use((session) => ctx.client.trust.fetchCa(session));
      const chain = [fetched.der, ...(fetched.chain ?? [])].map((der, i) =>
        parseCertificate(
          der,
          i === 0 ? "the CA the platform sent" : `CA certificate ${i + 1} the platform sent`,
          "fetch-ca",
          "reply-malformed",
        ),
      );
      checkPin(chain, ctx.pin, "the CA the platform sent");
      if (chain.length > 1)
        await validateCaChain(
          chain,
          ctx.crypto,
          ctx.now(),
          "fetch-ca",
          "cert-invalid",
          "the CA chain the platform sent",
        );
      // Pre-flight: a clock the platform's says is wrong stops the run before any key or request.
      checkClock(chain[0]!, ctx.now(), ctx.clockSkewMs(), "fetch-ca");
      // Only now, checked, may the chain vouch for the platform's own TLS (EST).
      ctx.client.trust.trustChain?.(chain.map((c) => new Uint8Array(c.rawData)));
      return { chain, proto: ctx.client.effective?.() ?? ctx.client, vouchedBy: fetched.vouchedBy };
    },
    ({ chain: [c, ...up], proto, vouchedBy }) =>
      `CA ${displayName(c!.subjectName)}, SHA-256 ${sha256Fingerprint(c!)}${up.length ? `, under ${up.map((u) => displayName(u.subjectName)).join(" < ")}` : ""}${ctx.pin ? " (matches the pin)" : vouchedBy ? ` (${vouchedBy})` : " (not pinned)"}; API ${proto.title}`,
  );
}

/** The key to make: the one asked for, else the one the platform's CSR attributes ask for, else the protocol's; and why, for the step's line. */
async function chooseKeyType(
  ctx: EnrollContext,
  proto: ProtocolClient,
  live: LiveSession,
  context: PrepareContext,
): Promise<{ type: KeyType; why: string }> {
  const asked = (await live.use(async (session) => proto.enroll.prepare?.(session, ctx.device.id, context))) ?? {
    notes: [],
  };
  for (const message of asked.notes) ctx.emit({ type: "note", message });
  const wanted = ctx.device.keyType;
  if (wanted && asked.keyType && asked.keyType !== wanted) {
    ctx.emit({
      type: "note",
      message: `the platform asks for a ${asked.keyType} key; the ${wanted} key asked for here is made as given, and the platform may refuse it`,
    });
  }
  const chosen = wanted
    ? { type: wanted, why: "" }
    : asked.keyType
      ? { type: asked.keyType, why: " (as the platform's CSR attributes ask)" }
      : { type: proto.enroll.defaultKeyType, why: " (the API's preferred key)" };
  const refused = asked.refuseKeyType?.(chosen.type);
  if (refused) throw refused;
  return chosen;
}

/** generate-key, through the run's key transaction; a failure of the provider is `keygen-failed`. */
async function generateKey(ctx: EnrollContext, tx: KeyTransaction, type: KeyType): Promise<KeyHandle> {
  try {
    return await tx.generate(type, ctx.device.id);
  } catch (err) {
    if (err instanceof CertRetrieverError) throw err;
    throw new CertRetrieverError(`generate-key failed: ${describeCause(err)}`, {
      step: "generate-key",
      reason: "keygen-failed",
      cause: err,
    });
  }
}

/** submit-csr: a renewal by the current credentials where there are some, else an enrollment. */
async function submit(
  proto: ProtocolClient,
  session: Session,
  req: SignRequest,
  current: Current | undefined,
  onIssued: (issued: Issued) => void,
): Promise<{ issued: Issued; cert: x509.X509Certificate }> {
  const issued = current
    ? await current.reenroll.submit(session, {
        ...req,
        current: { certificatePem: current.certificatePem, keyPem: current.keyPem },
      })
    : await proto.enroll.submit(session, req);
  // Issued, whether or not what came back can be read.
  onIssued(issued);
  return {
    issued,
    cert: parseCertificate(issued.der, "the certificate the platform sent", "validate", "cert-invalid"),
  };
}

/** validate: key, signature, validity, names and the profile's identity; notes for a skewed clock and dropped names. */
async function validate(
  ctx: EnrollContext,
  proto: ProtocolClient,
  session: Session,
  cert: x509.X509Certificate,
  ca: x509.X509Certificate,
  key: KeyHandle,
): Promise<void> {
  const clockSkewMs = ctx.clockSkewMs();
  await validateCertificate(
    {
      cert,
      ca,
      publicKeySpki: await key.spki(),
      deviceId: ctx.device.id,
      commonNames: proto.enroll.commonNames(ctx.device.id, session.tenant),
      now: ctx.now(),
      clockSkewMs,
    },
    ctx.crypto,
  );
  if (clockSkewMs !== undefined && Math.abs(clockSkewMs) > CLOCK_TOLERANCE_MS) {
    ctx.emit({
      type: "note",
      message: `this device's clock is ${describeSkew(clockSkewMs)} the platform's; TLS connections may fail until it is synchronised`,
    });
  }
  checkProfileIdentity(cert, ctx.device.profile?.name ?? "generic", ctx.device.sans);
  const missing = missingSans(cert, ctx.device.sans);
  if (missing.length > 0)
    ctx.emit({ type: "note", message: `the platform left out requested names: ${missing.join(", ")}` });
}
