/**
 * The one composition root: settings -> transport, key store, credential store, protocol client
 * (from the registry) -> flows. Nothing is opened until an operation needs it; `close()` ends
 * what was opened. The library never prints and never exits: progress comes as events.
 */
import type { StageReport } from "./broker/broker.js";
import { CertRetrieverError, nameSettings, ownNames, usageError } from "./errors.js";
import type { EnrollContext, EnrollEvent } from "./flows/context.js";
import type { ChangeHooks } from "./flows/hooks.js";
import type { CheckedChain, RegisterEvent, RegisterResult } from "./flows/register.js";
import type { EnrollResult } from "./flows/result.js";
import type { StatusContext, StatusResult } from "./flows/status.js";
import type { BrokerEvent } from "./flows/steps.js";
import type { BrokerSettings, VerifyContext } from "./flows/verify.js";
import type { KeyStore } from "./keys/key-store.js";
import type { KeySettings } from "./keys/open.js";
import { normalizeFingerprint } from "./keys/fingerprint.js";
import { softwareCrypto } from "./keys/provider.js";
import { protocolNamed } from "./protocols/registry.js";
import type { LoginSource, ProtocolClient, ProtocolPlugin, Session } from "./protocols/types.js";
import type { TokenSession } from "./flows/authenticate.js";
import {
  DEFAULT_ATTEMPTS,
  DEFAULT_CA_NAME,
  DEFAULT_CRL_REFRESH_MS,
  DEFAULT_DEADLINE_MS,
  isCredentialStore,
  isKeyStore,
  type AgentSettings,
  type Later,
  type LoginSettings,
  type PlatformSettings,
} from "./settings.js";
import type { CredentialStore } from "./store/types.js";
import { HttpClient, type HttpSettings } from "./transport/http.js";

/** What an agent does. Each operation opens what it needs; `close()` ends it all. */
export interface Agent {
  /** Enrolls unless valid credentials are stored (`force`: even then); renews credentials that are due. */
  enroll(opts?: { force?: boolean; onEvent?: (event: EnrollEvent) => void }): Promise<EnrollResult>;
  /** Renews the stored credentials now (a new key), whatever their renewal window says. */
  renew(opts?: { onEvent?: (event: EnrollEvent) => void }): Promise<EnrollResult>;
  /** What `check` asks: is enrollment needed? `online`: the platform may be asked about revocation and its CA. */
  status(opts?: { online?: boolean }): Promise<StatusResult>;
  /** Registers a certificate the device already has (a checked chain, or PEM), bound to the device. */
  register(req: { chain: CheckedChain | { pem: string; where?: string }; rootCaFingerprint?: string; onEvent?: (event: RegisterEvent) => void }): Promise<RegisterResult>;
  /** Connects to the broker with the stored identity and reports each stage. */
  verify(opts?: { broker?: BrokerSettings; onEvent?: (event: BrokerEvent) => void }): Promise<StageReport[]>;
  /** Logs in and returns the session (its token, tenant and expiry) and the user. */
  login(): Promise<{ session: Session; username: string }>;
  /** Ends what the agent opened (HTTP connections). */
  close(): Promise<void>;
}

/** Makes an agent from `settings`; nothing is opened yet. */
export function createAgent(settings: AgentSettings): Agent {
  return new AgentImpl(settings);
}

/** How long `status` may ask the platform (a condition must not hold up a boot), and how often it tries. */
const STATUS_ONLINE_MS = 30_000;
const STATUS_ATTEMPTS = 2;

class AgentImpl implements Agent {
  private readonly createdAt = Date.now();
  private readonly https: HttpClient[] = [];
  private storeMade: CredentialStore | undefined;
  private platformFound: Promise<PlatformSettings | undefined> | undefined;
  private loginFound: Promise<{ login?: LoginSource; token?: TokenSession }> | undefined;
  private readonly crypto;
  private readonly name;
  private readonly clock: () => Date;

  constructor(private readonly settings: AgentSettings) {
    this.crypto = settings.crypto ?? softwareCrypto();
    this.name = settings.name ?? ownNames;
    this.clock = settings.clock ?? (() => new Date());
  }

  async enroll(opts: { force?: boolean; onEvent?: (event: EnrollEvent) => void } = {}): Promise<EnrollResult> {
    const { enroll } = await import("./flows/enroll.js");
    return this.withEnrollContext(opts.onEvent, "enroll", (ctx) => enroll(ctx, { force: opts.force }));
  }

  async renew(opts: { onEvent?: (event: EnrollEvent) => void } = {}): Promise<EnrollResult> {
    const { renewNow } = await import("./flows/enroll.js");
    return this.withEnrollContext(opts.onEvent, "renew", (ctx) => renewNow(ctx));
  }

  async status(opts: { online?: boolean } = {}): Promise<StatusResult> {
    const { status } = await import("./flows/status.js");
    return status(await this.statusContext(Boolean(opts.online)));
  }

  async register(req: Parameters<Agent["register"]>[0]): Promise<RegisterResult> {
    const { checkChain, registerExisting } = await import("./flows/register.js");
    const pin = req.rootCaFingerprint;
    const chain =
      "leaf" in req.chain ? req.chain : await checkChain(req.chain.pem, req.chain.where ?? "the chain", { deviceId: this.settings.device.id, caFingerprint: pin, now: this.clock(), crypto: this.crypto });
    const client = await this.client(await this.http());
    const base = { client, deviceId: this.settings.device.id, chain, caFingerprint: pin, ...(await this.who()) };
    return registerExisting({ ...base, now: this.clock, signal: this.settings.network?.signal }, req.onEvent);
  }

  async verify(opts: { broker?: BrokerSettings; onEvent?: (event: BrokerEvent) => void } = {}): Promise<StageReport[]> {
    const { verifyStored } = await import("./flows/verify.js");
    return verifyStored(await this.verifyContext(opts.broker, opts.onEvent), await this.store());
  }

  async login(): Promise<{ session: Session; username: string }> {
    const plugin = await this.plugin();
    if (plugin.lacks?.login) throw new CertRetrieverError(nameSettings(plugin.lacks.login.message, this.name), { step: "usage", reason: "not-supported" });
    const { logIn, loginOf, NO_LOGIN } = await import("./flows/authenticate.js");
    const client = await this.client(await this.http());
    return logIn(loginOf(client), (await this.who()).login ?? NO_LOGIN);
  }

  async close(): Promise<void> {
    await Promise.all(this.https.splice(0).map((http) => http.close()));
  }

  /** Checks the protocol's rules, opens the key store (a token's PIN is tried before any request) and runs `flow`. */
  private async withEnrollContext<T>(onEvent: ((event: EnrollEvent) => void) | undefined, purpose: "enroll" | "renew", flow: (ctx: EnrollContext) => Promise<T>): Promise<T> {
    const store = await this.store();
    const [plugin, platform, who] = [await this.plugin(), await this.platform(), await this.who()];
    const storedCaPem = (await store.read().catch(() => undefined))?.parts.caPem;
    plugin.checkSettings?.({ purpose: "enroll", deviceId: this.settings.device.id, token: who.token !== undefined }, this.name);
    if (purpose === "enroll") plugin.checkTrust?.({ storedCaPem, pin: this.pin(), platformCa: Boolean(platform?.tls?.ca?.length) }, this.name);
    const emit = onEvent ?? (() => {});
    const keyStore = await this.enrollKeyStore(store, emit);
    try {
      const http = await this.http();
      const client = await this.client(http, storedCaPem);
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
    return openKeyStore(key ?? {}, uri, true, this.crypto);
  }

  /** The stored key's record; a write that was interrupted is finished or undone first, so that which key is stored is known. */
  private async storedKey(store: CredentialStore, emit: (event: EnrollEvent) => void): Promise<string | undefined> {
    let read = await store.read().catch(() => undefined);
    if (read?.interrupted) {
      const opened = await store.open();
      for (const message of opened.notes) emit({ type: "note", message });
      await opened.close(true);
      read = await store.read().catch(() => undefined);
    }
    return read?.parts.key?.trim();
  }

  private enrollContext(store: CredentialStore, keyStore: KeyStore, client: ProtocolClient, http: HttpClient, emit: (event: EnrollEvent) => void): EnrollContext {
    const { settings } = this;
    return {
      device: { ...settings.device, sans: settings.device.sans ?? { dns: [], ip: [], uri: [] } },
      client,
      store,
      keyStore,
      crypto: this.crypto,
      pin: settings.trust?.pin,
      renewBefore: settings.renewal?.renewBefore ?? { ms: 0 },
      ...this.cachedVerdicts(store),
      clockSkewMs: () => http.clockSkewMs,
      storeCertInToken: Boolean(!isKeyStore(settings.key) && settings.key?.storeCertInToken),
      revokePrevious: settings.renewal?.revokePrevious ?? true,
      beforeReplace: settings.broker && ((pems) => this.checkNewCredentials(pems, emit)),
      afterChange: this.afterChange(emit),
      now: this.clock,
      signal: settings.network?.signal,
      emit,
      name: this.name,
    };
  }

  /** What `check` left for enroll: the cached CRL (enroll itself never waits for one) and the CA-replaced mark. */
  private cachedVerdicts(store: CredentialStore): Pick<EnrollContext, "revocation" | "caReplaced"> {
    const revocation: EnrollContext["revocation"] =
      this.settings.renewal?.revocation === "off"
        ? undefined
        : async (cert, ca) => (await import("./flows/revocation.js")).revocationOf(cert, ca, { crypto: this.crypto, now: this.clock(), cachePath: store.sidecars.crlCache, refreshMs: Infinity });
    return { revocation, caReplaced: async (ca) => (await import("./flows/revocation.js")).caReplacedMark(store.sidecars.caReplacedMark, ca) };
  }

  /** The broker check before the swap: new credentials that fail it are not stored. */
  private async checkNewCredentials(pems: import("./store/types.js").CredentialPems, emit: (event: EnrollEvent) => void): Promise<unknown> {
    const { verifyCredentials, withWhat } = await import("./flows/verify.js");
    const id = this.settings.device.id;
    return verifyCredentials(await this.verifyContext(undefined, emit), pems, `the new credentials of '${id}'`).catch((err: unknown) => {
      throw withWhat(err, "with the new credentials, which were not stored: the previous ones stay in use");
    });
  }

  /** What runs after new credentials are stored: the commands, then the function. */
  private afterChange(emit: (event: EnrollEvent) => void): EnrollContext["afterChange"] {
    const hooks = this.settings.hooks;
    if (!hooks?.exec && !hooks?.reloadUnit && !hooks?.afterChange) return undefined;
    return async (result) => {
      if (hooks.exec || hooks.reloadUnit) {
        const { runChangeHooks } = await import("./flows/hooks.js");
        await runChangeHooks(result, { timeoutMs: 60_000, ...hooks } as ChangeHooks, this.name, emit);
      }
      await hooks.afterChange?.(result);
    };
  }

  private async verifyContext(broker: BrokerSettings | undefined, emit: ((event: BrokerEvent) => void) | undefined): Promise<VerifyContext> {
    const chosen = broker ?? (await resolve(this.settings.broker));
    if (!chosen) throw new CertRetrieverError("verify failed: no broker to check", { step: "usage", reason: "usage", facts: { field: "broker" } });
    const key = isKeyStore(this.settings.key) ? {} : (this.settings.key ?? {});
    return { deviceId: this.settings.device.id, broker: chosen, key, emit: emit ?? (() => {}), name: this.name };
  }

  private async statusContext(online: boolean): Promise<StatusContext> {
    const { settings } = this;
    const mode = settings.renewal?.revocation ?? "auto";
    const store = await this.store();
    const keySettings: KeySettings = isKeyStore(settings.key) ? {} : (settings.key ?? {});
    const keys = isKeyStore(settings.key) ? settings.key : undefined;
    return {
      deviceId: settings.device.id,
      store,
      crypto: this.crypto,
      pin: settings.trust?.pin,
      publicKeysOf: async (record) => (keys ? keys.publicKeysOf(record) : (await import("./keys/open.js")).publicKeysOf(keySettings, record)),
      renewBefore: settings.renewal?.renewBefore ?? { ms: 0 },
      revocation: mode,
      crlRefreshMs: settings.renewal?.crlRefreshMs ?? DEFAULT_CRL_REFRESH_MS,
      ask: online && mode === "auto" ? this.asker(store) : undefined,
      fromDistributionPoints: async (cert) => {
        const { crlDistributionUrls, fetchCrlFromDistributionPoints } = await import("./transport/crl-distribution.js");
        const urls = crlDistributionUrls(cert);
        return urls.length > 0 ? () => fetchCrlFromDistributionPoints(urls, STATUS_ONLINE_MS) : undefined;
      },
      now: this.clock(),
      name: this.name,
    };
  }

  /** A way to ask the platform, with a bounded client, logging in (password or token, never a prompt) only when asked. */
  private asker(store: CredentialStore): StatusContext["ask"] {
    return async (question) => {
      const network = this.settings.network ?? {};
      const who = await this.who();
      const http = await this.http({ deadline: Math.min(this.deadline(), this.createdAt + STATUS_ONLINE_MS), attempts: Math.min(network.attempts ?? DEFAULT_ATTEMPTS, STATUS_ATTEMPTS) });
      const storedCaPem = (await store.read()).parts.caPem;
      const client = await this.client(http, storedCaPem);
      const { openSession } = await import("./flows/authenticate.js");
      const { session } = await openSession(client, who, this.clock());
      return question(client, session);
    };
  }

  /** The credential store, made once. */
  private async store(): Promise<CredentialStore> {
    if (this.storeMade) return this.storeMade;
    const { store } = this.settings;
    if (!store) throw new CertRetrieverError("no credential store was given", { step: "usage", reason: "usage", facts: { field: "store" } });
    const platform = this.settings.platform;
    const caName = (isCredentialStore(store) ? undefined : store.caName) ?? (typeof platform === "object" ? platform.caName : undefined) ?? DEFAULT_CA_NAME;
    const observer = this.settings.observer;
    if (isCredentialStore(store)) this.storeMade = store;
    else if (store.kind === "keychain") this.storeMade = new (await import("./store/keychain-store.js")).KeychainStore(this.settings.device.id, caName, store.lockDir, { observer });
    else this.storeMade = new (await import("./store/files-store.js")).FilesStore(store.dir, this.settings.device.id, caName, { observer });
    return this.storeMade;
  }

  /** The platform's settings, found once (when first needed, if they are given later). */
  private platform(): Promise<PlatformSettings | undefined> {
    this.platformFound ??= resolve(this.settings.platform);
    return this.platformFound;
  }

  /** Who logs in: the login to send, or the token's session; found once. */
  private who(): Promise<{ login?: LoginSource; token?: TokenSession }> {
    this.loginFound ??= resolve(this.settings.login).then(loginOf);
    return this.loginFound;
  }

  private async plugin(): Promise<ProtocolPlugin> {
    const protocol = (await this.platform())?.protocol ?? "auto";
    return typeof protocol === "string" ? protocolNamed(protocol) : protocol;
  }

  private async url(): Promise<URL> {
    const url = (await this.platform())?.url;
    if (url === undefined) throw new CertRetrieverError("the platform URL is required", { step: "usage", reason: "usage", facts: { field: "platform" } });
    return typeof url === "string" ? new URL(url) : url;
  }

  /** The pin as 64 upper-case hex digits; one that is not a SHA-256 fingerprint is a usage error. */
  private pin(): string | undefined {
    const pin = this.settings.trust?.pin;
    if (pin === undefined) return undefined;
    const normalized = normalizeFingerprint(pin);
    if (!normalized) throw usageError(`the pin '${pin}' is not a SHA-256 fingerprint`, "caFingerprint");
    return normalized;
  }

  private deadline(): number {
    return this.settings.network?.deadline ?? this.createdAt + DEFAULT_DEADLINE_MS;
  }

  /** The protocol client for one operation; a sessionless protocol gets the login it sends with its requests. */
  private async client(http: HttpClient, storedCaPem?: string): Promise<ProtocolClient> {
    const platform = await this.platform();
    if (platform?.client) return platform.client;
    const [plugin, url, { login }] = [await this.plugin(), await this.url(), await this.who()];
    plugin.checkUrl?.(url);
    return plugin.open({
      url,
      http,
      crypto: this.crypto,
      signal: this.settings.network?.signal,
      caName: platform?.caName ?? DEFAULT_CA_NAME,
      pin: this.pin(),
      platformCa: Boolean(platform?.tls?.ca?.length),
      clientCert: Boolean(platform?.tls?.cert),
      login,
      storedCaPem,
      options: platform?.options ?? {},
    });
  }

  /** An HTTP client (the settings' own, or one made here and closed with the agent). */
  private async http(bounds: Partial<Pick<HttpSettings, "deadline" | "attempts">> = {}): Promise<HttpClient> {
    const network = this.settings.network ?? {};
    if (network.http) return network.http;
    const tls = (await this.platform())?.tls ?? {};
    const made = new HttpClient({
      timeouts: network.timeouts ?? { connect: 10_000, headers: 30_000, body: 30_000 },
      attempts: bounds.attempts ?? network.attempts ?? DEFAULT_ATTEMPTS,
      deadline: bounds.deadline ?? this.deadline(),
      tls: { ca: tls.ca ?? [], cert: tls.cert, key: tls.key },
      signal: network.signal,
      onRetry: network.onRetry,
    });
    this.https.push(made);
    return made;
  }
}

/** A setting given now, or the one its function finds. */
async function resolve<T>(later: Later<T> | undefined): Promise<T | undefined> {
  return typeof later === "function" ? (later as () => Promise<T>)() : later;
}

/** The login source and the token of login settings (a login only where a user or password is given). */
function loginOf(settings: LoginSettings | undefined): { login?: LoginSource; token?: TokenSession } {
  if (!settings) return {};
  const { username, password, retryLogin, token } = settings;
  const login: LoginSource | undefined =
    username !== undefined || password !== undefined
      ? { username: username ?? "", password: password ?? (() => Promise.reject(new CertRetrieverError("no password given", { step: "authenticate", reason: "missing-credentials" }))), retryLogin }
      : undefined;
  return { login, token };
}

/** Enrolls once with a new agent (see {@link Agent.enroll}), and closes it. */
export async function enroll(settings: AgentSettings, opts: Parameters<Agent["enroll"]>[0] = {}): Promise<EnrollResult> {
  const agent = createAgent(settings);
  try {
    return await agent.enroll(opts);
  } finally {
    await agent.close();
  }
}
