/**
 * The one composition root: settings -> transport, key store, credential store, protocol client
 * (from the registry) -> flows. Nothing is opened until an operation needs it; `close()` ends
 * what was opened. The library never prints and never exits: progress comes as events.
 */
import { AgentParts, resolve } from "./agent-parts.js";
import type { StageReport } from "./broker/broker.js";
import { CertRetrieverError, nameSettings } from "./errors.js";
import type { EnrollContext, EnrollEvent } from "./flows/context.js";
import type { CredentialsDescription, NamedPlatform } from "./flows/describe.js";
import type { DryRunResult } from "./flows/enroll.js";
import type { ExportResult } from "./flows/export.js";
import type { CheckedChain, RegisterEvent, RegisterResult } from "./flows/register.js";
import type { EnrollResult } from "./flows/result.js";
import type { MessageSigner, SignerOptions } from "./flows/sign.js";
import type { StatusContext, StatusResult } from "./flows/status.js";
import type { BrokerEvent, NoteEvent } from "./flows/steps.js";
import type { BrokerSettings, VerifyContext } from "./flows/verify.js";
import type { SignatureCheck, SignatureRequest } from "./flows/verify-signature.js";
import type { KeyStore } from "./keys/key-store.js";
import type { KeySettings } from "./keys/open.js";
import { findProtocol } from "./protocols/registry.js";
import type { ProtocolClient, Session } from "./protocols/types.js";
import { type AgentSettings, DEFAULT_ATTEMPTS, DEFAULT_CRL_REFRESH_MS, isKeyStore } from "./settings.js";
import type { CopyFormat } from "./store/files-store.js";
import type { CredentialStore } from "./store/types.js";
import type { HttpClient } from "./transport/http.js";

/** What an agent does. Each operation opens what it needs; `close()` ends it all. */
export interface Agent {
  /** Enrolls unless valid credentials are stored (`force`: even then); renews credentials that are due. */
  enroll(opts?: { force?: boolean; onEvent?: (event: EnrollEvent) => void }): Promise<EnrollResult>;
  /** What `enroll` would do and request, after authenticate, fetch-ca and the pre-flight checks: no key is made, no CSR sent, nothing left behind. */
  dryRun(opts?: { force?: boolean; onEvent?: (event: EnrollEvent) => void }): Promise<DryRunResult>;
  /** Renews the stored credentials now (a new key), whatever their renewal window says. */
  renew(opts?: { onEvent?: (event: EnrollEvent) => void }): Promise<EnrollResult>;
  /**
   * What `check` asks: is enrollment needed? `online`: the platform may be asked about revocation and
   * its CA (within the traffic budget, `renewal.crlRefreshMs`); `contactNow`: asked now, whatever the budget says.
   */
  status(opts?: { online?: boolean; contactNow?: boolean }): Promise<StatusResult>;
  /**
   * The stored credentials described for people (what `status` shows): names, chain, dates, when
   * renewal is due, revocation as `check` last saw it, where the key is, the platform and API the
   * settings name. Reads the store and the files beside it only: asks nothing of the platform,
   * opens no token. No complete credentials: `not-enrolled`.
   */
  describe(): Promise<CredentialsDescription>;
  /** Registers a certificate the device already has (a checked chain, or PEM), bound to the device. */
  register(req: {
    chain: CheckedChain | { pem: string; where?: string };
    rootCaFingerprint?: string;
    onEvent?: (event: RegisterEvent) => void;
  }): Promise<RegisterResult>;
  /**
   * Opens the stored key (wherever it is: the store's PEM, or a PKCS#11 token it never leaves) and
   * certificate for signing messages in-process, one key session for many messages; close it after.
   */
  openSigner(opts?: SignerOptions): Promise<MessageSigner>;
  /** Checks a signed message against the certificate given, else the device's stored one (and the CRL `check` cached). */
  verifySignature(req: SignatureRequest): Promise<SignatureCheck>;
  /**
   * Copies the stored credentials into the directory `to`, for programs that need files: PEM as
   * the files store keeps them (default), or DER (the CA chain as PKCS#7). A key in a token stays
   * there: its URI is copied instead. No complete credentials: `not-enrolled`.
   */
  export(opts: { to: string; format?: CopyFormat }): Promise<ExportResult>;
  /** Connects to the broker with the stored identity and reports each stage. */
  verify(opts?: {
    broker?: BrokerSettings;
    onEvent?: (event: BrokerEvent | NoteEvent) => void;
  }): Promise<StageReport[]>;
  /** Logs in and returns the session (its token, tenant and expiry) and the user. */
  login(): Promise<{ session: Session; username: string }>;
  /** Ends what the agent opened (HTTP connections). */
  close(): Promise<void>;
}

/** Makes an agent from `settings`; nothing is opened yet. */
export function createAgent(settings: AgentSettings): Agent {
  return new AgentImpl(settings);
}

/** How long a change hook may run when the settings do not say. */
const DEFAULT_HOOK_TIMEOUT_MS = 60_000;

/** How long `status` may ask the platform (a condition must not hold up a boot), and how often it tries. */
const STATUS_ONLINE_MS = 30_000;
const STATUS_ATTEMPTS = 2;

class AgentImpl implements Agent {
  private readonly parts: AgentParts;

  constructor(private readonly settings: AgentSettings) {
    this.parts = new AgentParts(settings);
  }

  async enroll(opts: { force?: boolean; onEvent?: (event: EnrollEvent) => void } = {}): Promise<EnrollResult> {
    const { enroll } = await import("./flows/enroll.js");
    return this.withEnrollContext(opts.onEvent, "enroll", (ctx) => enroll(ctx, { force: opts.force }));
  }

  async dryRun(opts: { force?: boolean; onEvent?: (event: EnrollEvent) => void } = {}): Promise<DryRunResult> {
    const { dryRun } = await import("./flows/enroll.js");
    return this.withEnrollContext(opts.onEvent, "enroll", (ctx) => dryRun(ctx, { force: opts.force }));
  }

  async renew(opts: { onEvent?: (event: EnrollEvent) => void } = {}): Promise<EnrollResult> {
    const { renewNow } = await import("./flows/enroll.js");
    return this.withEnrollContext(opts.onEvent, "renew", (ctx) => renewNow(ctx));
  }

  async status(opts: { online?: boolean; contactNow?: boolean } = {}): Promise<StatusResult> {
    const { status } = await import("./flows/status.js");
    return status({ ...(await this.statusContext(Boolean(opts.online))), contactNow: opts.contactNow });
  }

  async describe(): Promise<CredentialsDescription> {
    const { describeStoredCredentials } = await import("./flows/describe.js");
    return describeStoredCredentials({
      deviceId: this.settings.device.id,
      store: await this.parts.store(),
      crypto: this.parts.crypto,
      renewBefore: this.settings.renewal?.renewBefore ?? { ms: 0 },
      platform: await this.namedPlatform(),
      now: this.parts.clock(),
    });
  }

  async register(req: Parameters<Agent["register"]>[0]): Promise<RegisterResult> {
    const { checkChain, registerExisting } = await import("./flows/register.js");
    const pin = req.rootCaFingerprint;
    const chain =
      "leaf" in req.chain
        ? req.chain
        : await checkChain(req.chain.pem, req.chain.where ?? "the chain", {
            deviceId: this.settings.device.id,
            caFingerprint: pin,
            now: this.parts.clock(),
            crypto: this.parts.crypto,
          });
    const client = await this.parts.client(await this.parts.http());
    const base = { client, deviceId: this.settings.device.id, chain, caFingerprint: pin, ...(await this.parts.who()) };
    return registerExisting({ ...base, now: this.parts.clock, signal: this.settings.network?.signal }, req.onEvent);
  }

  async openSigner(opts: SignerOptions = {}): Promise<MessageSigner> {
    const { openSigner } = await import("./flows/sign.js");
    const key = this.settings.key;
    const openKeys = async (record: string): Promise<KeyStore> => {
      if (isKeyStore(key)) return key;
      const { isKeyUri } = await import("./keys/pkcs11-uri.js");
      const { openKeyStore } = await import("./keys/open.js");
      const stored = key?.uri === undefined && isKeyUri(record);
      const uri = key?.uri ?? (stored ? record : undefined);
      return openKeyStore(key ?? {}, uri, { login: true, stored, crypto: this.parts.crypto });
    };
    return openSigner({ deviceId: this.settings.device.id, store: await this.parts.store(), openKeys }, opts);
  }

  async verifySignature(req: SignatureRequest): Promise<SignatureCheck> {
    const { verifySignedMessage } = await import("./flows/verify-signature.js");
    const stored = async () => {
      const store = await this.parts.store();
      const { completeCredentials } = await import("./flows/stored.js");
      const { pems } = await completeCredentials(store, this.settings.device.id, "verify-signature");
      return { certificatePem: pems.certificatePem, caPem: pems.caPem, crlCache: store.sidecars.crlCache };
    };
    const device = this.settings.store === undefined ? undefined : stored;
    return verifySignedMessage(req, { now: this.parts.clock(), crypto: this.parts.crypto, stored: device });
  }

  async export(opts: { to: string; format?: CopyFormat }): Promise<ExportResult> {
    const { exportCredentials } = await import("./flows/export.js");
    return exportCredentials({
      deviceId: this.settings.device.id,
      caName: this.parts.caName(),
      store: await this.parts.store(),
      to: opts.to,
      format: opts.format ?? "pem",
      name: this.parts.name,
      observer: this.settings.observer,
    });
  }

  async verify(
    opts: { broker?: BrokerSettings; onEvent?: (event: BrokerEvent | NoteEvent) => void } = {},
  ): Promise<StageReport[]> {
    const { verifyStored } = await import("./flows/verify.js");
    return verifyStored(await this.verifyContext(opts.broker, opts.onEvent), await this.parts.store());
  }

  async login(): Promise<{ session: Session; username: string }> {
    const plugin = await this.parts.plugin();
    if (plugin.lacks?.login)
      throw new CertRetrieverError(nameSettings(plugin.lacks.login.message, this.parts.name), {
        step: "usage",
        reason: "not-supported",
      });
    const { logIn, loginOf, NO_LOGIN } = await import("./flows/authenticate.js");
    const client = await this.parts.client(await this.parts.http());
    return logIn(loginOf(client), (await this.parts.who()).login ?? NO_LOGIN);
  }

  async close(): Promise<void> {
    await this.parts.close();
  }

  /** The platform and API the settings name, for describe (null: not named). */
  private async namedPlatform(): Promise<NamedPlatform> {
    const platform = await this.parts.platform();
    const protocol = platform?.protocol;
    const url = platform?.url;
    return {
      // A URL as people write it: no slash after a bare host.
      url: url === undefined ? null : typeof url === "string" ? url : url.href.replace(/(\/\/[^/]+)\/$/, "$1"),
      api:
        protocol === undefined
          ? null
          : typeof protocol === "string"
            ? (findProtocol(protocol)?.name ?? protocol)
            : protocol.name,
    };
  }

  /** Checks the protocol's rules, opens the key store (a token's PIN is tried before any request) and runs `flow`. */
  private async withEnrollContext<T>(
    onEvent: ((event: EnrollEvent) => void) | undefined,
    purpose: "enroll" | "renew",
    flow: (ctx: EnrollContext) => Promise<T>,
  ): Promise<T> {
    const store = await this.parts.store();
    const [plugin, platform, who] = [await this.parts.plugin(), await this.parts.platform(), await this.parts.who()];
    const storedCaPem = (await store.read().catch(unlessUnsafe))?.parts.caPem;
    plugin.checkSettings?.(
      { purpose: "enroll", deviceId: this.settings.device.id, token: who.token !== undefined },
      this.parts.name,
    );
    if (purpose === "enroll")
      plugin.checkTrust?.(
        { storedCaPem, pin: this.parts.pin(), platformCa: Boolean(platform?.tls?.ca?.length) },
        this.parts.name,
      );
    const emit = onEvent ?? (() => {});
    const keyStore = await this.enrollKeyStore(store, emit);
    try {
      const http = await this.parts.http();
      const client = await this.parts.client(http, storedCaPem, keyStore);
      return await flow({ ...this.enrollContext(store, keyStore, client, http, emit), ...who });
    } finally {
      await keyStore.close();
    }
  }

  /** The key store of an enrollment: the settings', else the token the stored key is in (once an interrupted write is settled), else software. */
  private async enrollKeyStore(store: CredentialStore, emit: (event: EnrollEvent) => void): Promise<KeyStore> {
    const key = this.settings.key;
    if (isKeyStore(key)) return key;
    const { openKeyStore, tokenOfKey } = await import("./keys/open.js");
    const uri = key?.uri ?? (await tokenOfKey(await this.storedKey(store, emit)));
    return openKeyStore(key ?? {}, uri, { login: true, stored: key?.uri === undefined, crypto: this.parts.crypto });
  }

  /** The stored key's record; a write that was interrupted is finished or undone first, so that which key is stored is known. */
  private async storedKey(store: CredentialStore, emit: (event: EnrollEvent) => void): Promise<string | undefined> {
    let read = await store.read().catch(unlessUnsafe);
    if (read?.interrupted) {
      const opened = await store.open();
      for (const message of opened.notes) emit({ type: "note", message });
      await opened.close(true);
      read = await store.read().catch(unlessUnsafe);
    }
    return read?.parts.key?.trim();
  }

  private enrollContext(
    store: CredentialStore,
    keyStore: KeyStore,
    client: ProtocolClient,
    http: HttpClient,
    emit: (event: EnrollEvent) => void,
  ): EnrollContext {
    const { settings } = this;
    return {
      device: { ...settings.device, sans: settings.device.sans ?? { dns: [], ip: [], uri: [] } },
      client,
      store,
      keyStore,
      crypto: this.parts.crypto,
      pin: settings.trust?.pin,
      renewBefore: settings.renewal?.renewBefore ?? { ms: 0 },
      ...this.cachedVerdicts(store),
      // The skew from this agent's clock (the transport measures it from the system's).
      clockSkewMs: () =>
        http.clockSkewMs === undefined ? undefined : http.clockSkewMs + Date.now() - this.parts.clock().getTime(),
      storeCertInToken: Boolean(!isKeyStore(settings.key) && settings.key?.storeCertInToken),
      revokePrevious: settings.renewal?.revokePrevious ?? true,
      beforeReplace: settings.broker && ((pems) => this.checkNewCredentials(pems, emit)),
      afterChange: this.afterChange(emit),
      remember: settings.record && this.remember(store, settings.record),
      now: this.parts.clock,
      signal: settings.network?.signal,
      emit,
      name: this.parts.name,
    };
  }

  /** Records the settings new credentials were obtained with, the API as the one that answered; a note if it cannot. */
  private remember(store: CredentialStore, record: NonNullable<AgentSettings["record"]>): EnrollContext["remember"] {
    return async (api) => {
      const { writeDeviceRecord } = await import("./store/device-record.js");
      return writeDeviceRecord(
        store.sidecars.settingsRecord,
        this.settings.device.id,
        { ...record.settings, api },
        { now: this.parts.clock(), writtenBy: record.writtenBy },
      );
    };
  }

  /** What `check` left for enroll: the cached CRL (enroll itself never waits for one) and the CA-replaced mark. */
  private cachedVerdicts(store: CredentialStore): Pick<EnrollContext, "revocation" | "caReplaced"> {
    const revocation: EnrollContext["revocation"] =
      this.settings.renewal?.revocation === "off"
        ? undefined
        : async (cert, ca) =>
            (await import("./flows/revocation.js")).revocationOf(cert, ca, {
              crypto: this.parts.crypto,
              now: this.parts.clock(),
              cachePath: store.sidecars.crlCache,
              refreshMs: Infinity,
            });
    return {
      revocation,
      caReplaced: async (ca) =>
        (await import("./flows/revocation.js")).caReplacedMark(store.sidecars.caReplacedMark, ca),
    };
  }

  /** The broker check before the swap: new credentials that fail it are not stored. */
  private async checkNewCredentials(
    pems: import("./store/types.js").CredentialPems,
    emit: (event: EnrollEvent) => void,
  ): Promise<unknown> {
    const { verifyCredentials, withWhat } = await import("./flows/verify.js");
    const id = this.settings.device.id;
    return verifyCredentials(await this.verifyContext(undefined, emit), pems, `the new credentials of '${id}'`).catch(
      (err: unknown) => {
        throw withWhat(err, "with the new credentials, which were not stored: the previous ones stay in use");
      },
    );
  }

  /** What runs after new credentials are stored: the commands, then the function. */
  private afterChange(emit: (event: EnrollEvent) => void): EnrollContext["afterChange"] {
    const hooks = this.settings.hooks;
    if (!hooks?.exec && !hooks?.reloadUnit && !hooks?.afterChange) return undefined;
    return async (result) => {
      if (hooks.exec || hooks.reloadUnit) {
        const { runChangeHooks } = await import("./flows/hooks.js");
        await runChangeHooks(
          result,
          { ...hooks, timeoutMs: hooks.timeoutMs ?? DEFAULT_HOOK_TIMEOUT_MS },
          this.parts.name,
          emit,
        );
      }
      await hooks.afterChange?.(result);
    };
  }

  private async verifyContext(
    broker: BrokerSettings | undefined,
    emit: ((event: BrokerEvent | NoteEvent) => void) | undefined,
  ): Promise<VerifyContext> {
    const chosen = broker ?? (await resolve(this.settings.broker));
    if (!chosen)
      throw new CertRetrieverError("verify failed: no broker to check", {
        step: "usage",
        reason: "usage",
        facts: { field: "broker" },
      });
    const key = isKeyStore(this.settings.key) ? {} : (this.settings.key ?? {});
    return {
      deviceId: this.settings.device.id,
      broker: chosen,
      key,
      emit: emit ?? (() => {}),
      name: this.parts.name,
      now: this.parts.clock,
    };
  }

  private async statusContext(online: boolean): Promise<StatusContext> {
    const { settings } = this;
    const mode = settings.renewal?.revocation ?? "auto";
    const store = await this.parts.store();
    const keySettings: KeySettings = isKeyStore(settings.key) ? {} : (settings.key ?? {});
    const keys = isKeyStore(settings.key) ? settings.key : undefined;
    return {
      deviceId: settings.device.id,
      store,
      crypto: this.parts.crypto,
      pin: settings.trust?.pin,
      publicKeysOf: async (record) =>
        keys ? keys.publicKeysOf(record) : (await import("./keys/open.js")).publicKeysOf(keySettings, record),
      renewBefore: settings.renewal?.renewBefore ?? { ms: 0 },
      revocation: mode,
      crlRefreshMs: settings.renewal?.crlRefreshMs ?? DEFAULT_CRL_REFRESH_MS,
      ask: online && mode === "auto" ? this.asker(store) : undefined,
      fromDistributionPoints: async (cert) => {
        const { crlDistributionUrls, fetchCrlFromDistributionPoints } = await import("./transport/crl-distribution.js");
        const urls = crlDistributionUrls(cert);
        // Through the HTTP client, bounded as the platform is asked: its proxy, trust anchors, 30 s, one retry.
        return urls.length > 0
          ? async () => fetchCrlFromDistributionPoints(urls, await this.statusHttp(), STATUS_ONLINE_MS)
          : undefined;
      },
      now: this.parts.clock(),
      name: this.parts.name,
    };
  }

  /** An HTTP client as bounded as a condition must be (it must not hold up a boot): 30 s at most, one retry. */
  private statusHttp(): Promise<HttpClient> {
    const attempts = Math.min(this.settings.network?.attempts ?? DEFAULT_ATTEMPTS, STATUS_ATTEMPTS);
    return this.parts.http({
      deadline: Math.min(this.parts.deadline(), this.parts.createdAt + STATUS_ONLINE_MS),
      attempts,
    });
  }

  /** A way to ask the platform, with a bounded client, logging in (password or token, never a prompt) only when asked. */
  private asker(store: CredentialStore): StatusContext["ask"] {
    return async (question) => {
      const who = await this.parts.who();
      const http = await this.statusHttp();
      const storedCaPem = (await store.read()).parts.caPem;
      const client = await this.parts.client(http, storedCaPem);
      const { openSession } = await import("./flows/authenticate.js");
      const { session } = await openSession(client, who, this.parts.clock());
      return question(client, session);
    };
  }
}

/**
 * A store that cannot be read is left for the flow to report when it reads it, unless another user
 * could have written it: nothing in it may be acted on (a token module it names loaded), so the run stops here.
 */
function unlessUnsafe(err: unknown): undefined {
  if (err instanceof CertRetrieverError && err.reason === "storage-unsafe") throw err;
  return undefined;
}

/** Describes the stored credentials with a new agent (see {@link Agent.describe}), and closes it. */
export async function describeCredentials(settings: AgentSettings): Promise<CredentialsDescription> {
  const agent = createAgent(settings);
  try {
    return await agent.describe();
  } finally {
    await agent.close();
  }
}

/** Enrolls once with a new agent (see {@link Agent.enroll}), and closes it. */
export async function enroll(
  settings: AgentSettings,
  opts: Parameters<Agent["enroll"]>[0] = {},
): Promise<EnrollResult> {
  const agent = createAgent(settings);
  try {
    return await agent.enroll(opts);
  } finally {
    await agent.close();
  }
}
