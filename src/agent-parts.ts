/**
 * What an agent's settings turn into, each made once and only when an operation needs it: the
 * credential store, the platform's settings, who logs in, the protocol plug-in and its client, and
 * the HTTP clients (closed with the agent).
 */
import { CertRetrieverError, ownNames, type SettingNamer, usageError } from "./errors.js";
import type { TokenSession } from "./flows/authenticate.js";
import { normalizeFingerprint } from "./keys/fingerprint.js";
import type { KeyStore, SigningKey } from "./keys/key-store.js";
import type { KeySettings } from "./keys/open.js";
import { type CryptoProvider, softwareCrypto } from "./keys/provider.js";
import { protocolNamed } from "./protocols/registry.js";
import type { ClientCredentials, LoginSource, ProtocolClient, ProtocolPlugin } from "./protocols/types.js";
import {
  type AgentSettings,
  DEFAULT_ATTEMPTS,
  DEFAULT_CA_NAME,
  DEFAULT_DEADLINE_MS,
  isCredentialStore,
  isKeyStore,
  type Later,
  type LoginSettings,
  type PlatformSettings,
} from "./settings.js";
import type { CredentialStore } from "./store/types.js";
import { HttpClient, type HttpSettings } from "./transport/http.js";

/** An agent's parts, from its settings. */
export class AgentParts {
  readonly createdAt = Date.now();
  readonly crypto: CryptoProvider;
  readonly name: SettingNamer;
  readonly clock: () => Date;
  private readonly https: HttpClient[] = [];
  /** Tokens opened only for a client certificate's key, by its URI: kept open until the agent closes. */
  private readonly tokens = new Map<string, KeyStore>();
  private storeMade: CredentialStore | undefined;
  private platformFound: Promise<PlatformSettings | undefined> | undefined;
  private loginFound: Promise<{ login?: LoginSource; token?: TokenSession }> | undefined;

  constructor(private readonly settings: AgentSettings) {
    this.crypto = settings.crypto ?? softwareCrypto();
    this.name = settings.name ?? ownNames;
    this.clock = settings.clock ?? (() => new Date());
  }

  /** Closes the HTTP clients made here, and a token opened only for the client certificate's key. */
  async close(): Promise<void> {
    const tokens = [...this.tokens.values()];
    this.tokens.clear();
    await Promise.all([...this.https.splice(0), ...tokens].map((part) => part.close()));
  }

  /** The CA's name, which names its files: the store's setting, else the platform's, else dojot's default. */
  caName(): string {
    const { store, platform } = this.settings;
    return (
      (store === undefined || isCredentialStore(store) ? undefined : store.caName) ??
      (typeof platform === "object" ? platform.caName : undefined) ??
      DEFAULT_CA_NAME
    );
  }

  /** The credential store, made once. */
  async store(): Promise<CredentialStore> {
    if (this.storeMade) return this.storeMade;
    const { store } = this.settings;
    if (!store)
      throw new CertRetrieverError("no credential store was given", {
        step: "usage",
        reason: "usage",
        facts: { field: "store" },
      });
    const caName = this.caName();
    const observer = this.settings.observer;
    if (isCredentialStore(store)) this.storeMade = store;
    else if (store.kind === "keychain")
      this.storeMade = new (await import("./store/keychain-store.js")).KeychainStore(
        this.settings.device.id,
        caName,
        store.lockDir,
        { observer },
      );
    else
      this.storeMade = new (await import("./store/files-store.js")).FilesStore(
        store.dir,
        this.settings.device.id,
        caName,
        { observer },
      );
    return this.storeMade;
  }

  /** The platform's settings, found once (when first needed, if they are given later). */
  platform(): Promise<PlatformSettings | undefined> {
    this.platformFound ??= resolve(this.settings.platform);
    return this.platformFound;
  }

  /** Who logs in: the login to send, or the token's session; found once. */
  who(): Promise<{ login?: LoginSource; token?: TokenSession }> {
    this.loginFound ??= resolve(this.settings.login).then(loginOf);
    return this.loginFound;
  }

  /** The protocol's plug-in: the one given, or the one the registry knows by the name given (default auto). */
  async plugin(): Promise<ProtocolPlugin> {
    const protocol = (await this.platform())?.protocol ?? "auto";
    return typeof protocol === "string" ? protocolNamed(protocol) : protocol;
  }

  /** The platform's URL; none given is a usage error. */
  async url(): Promise<URL> {
    const url = (await this.platform())?.url;
    if (url === undefined)
      throw new CertRetrieverError("the platform URL is required", {
        step: "usage",
        reason: "usage",
        facts: { field: "platform" },
      });
    return typeof url === "string" ? new URL(url) : url;
  }

  /** The pin as 64 upper-case hex digits; one that is not a SHA-256 fingerprint is a usage error. */
  pin(): string | undefined {
    const pin = this.settings.trust?.pin;
    if (pin === undefined) return undefined;
    const normalized = normalizeFingerprint(pin);
    if (!normalized) throw usageError(`the pin '${pin}' is not a SHA-256 fingerprint`, "caFingerprint");
    return normalized;
  }

  /** When the whole run must be over (epoch milliseconds). */
  deadline(): number {
    return this.settings.network?.deadline ?? this.createdAt + DEFAULT_DEADLINE_MS;
  }

  /**
   * The protocol client for one operation; a sessionless protocol gets the login it sends with its
   * requests. `keyStore`: the enrollment's, which signs with a client key in the token it has open.
   */
  async client(http: HttpClient, storedCaPem?: string, keyStore?: KeyStore): Promise<ProtocolClient> {
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
      platformCaPem: platform?.tls?.ca,
      clientCert: Boolean(platform?.tls?.cert),
      clientCredentials: this.clientCredentials(platform?.tls, keyStore),
      login,
      storedCaPem,
      options: platform?.options ?? {},
    });
  }

  /** The client certificate and its key: a PEM key, or one in a token that its `pkcs11:` URI names. */
  private clientCredentials(tls: PlatformSettings["tls"], keyStore?: KeyStore): ClientCredentials | undefined {
    const { cert, key } = tls ?? {};
    if (!cert || !key) return undefined;
    if (!key.startsWith("pkcs11:")) return { certificatePem: cert, keyPem: key };
    return { certificatePem: cert, tokenKey: () => this.tokenClientKey(key, keyStore) };
  }

  /**
   * The client certificate's key in a token (a manufacturer's), to sign with there: through the
   * enrollment's key store when that has its token open (a token is locked to one store), else
   * through a store opened for it, closed with the agent. The key is never removed or replaced.
   */
  private async tokenClientKey(uri: string, keyStore?: KeyStore): Promise<SigningKey> {
    const { Pkcs11KeyStore } = await import("./keys/pkcs11-store.js");
    const settings: KeySettings = isKeyStore(this.settings.key) ? {} : (this.settings.key ?? {});
    const reused =
      keyStore instanceof Pkcs11KeyStore && keyStore.opens(uri, settings.modulePath) ? keyStore : undefined;
    let store = reused ?? this.tokens.get(uri);
    if (!store) {
      const { openKeyStore } = await import("./keys/open.js");
      store = await openKeyStore(settings, uri, { login: true, crypto: this.crypto });
      this.tokens.set(uri, store);
    }
    if (!(store instanceof Pkcs11KeyStore)) throw usageError(`${uri} names no key in a token`, "clientKey");
    return store.existingSigningKey(uri, `the client key URI (${this.name("clientKey")})`);
  }

  /** An HTTP client (the settings' own, or one made here and closed with the agent). */
  async http(bounds: Partial<Pick<HttpSettings, "deadline" | "attempts">> = {}): Promise<HttpClient> {
    const network = this.settings.network ?? {};
    if (network.http) return network.http;
    const tls = (await this.platform())?.tls ?? {};
    const made = new HttpClient({
      timeouts: network.timeouts ?? { connect: 10_000, headers: 30_000, body: 30_000 },
      attempts: bounds.attempts ?? network.attempts ?? DEFAULT_ATTEMPTS,
      deadline: bounds.deadline ?? this.deadline(),
      // A client key in a token signs only CMP's messages, never Node's TLS.
      tls: tls.key?.startsWith("pkcs11:") ? { ca: tls.ca ?? [] } : { ca: tls.ca ?? [], cert: tls.cert, key: tls.key },
      signal: network.signal,
      environment: network.environment,
      onRetry: network.onRetry,
      onWait: network.onWait,
      lookup: network.lookup,
    });
    this.https.push(made);
    return made;
  }
}

/** A setting given now, or the one its function finds. */
export async function resolve<T>(later: Later<T> | undefined): Promise<T | undefined> {
  return typeof later === "function" ? (later as () => Promise<T>)() : later;
}

/** The login source and the token of login settings (a login only where a user or password is given). */
function loginOf(settings: LoginSettings | undefined): { login?: LoginSource; token?: TokenSession } {
  if (!settings) return {};
  const { username, password, retryLogin, onToken, token } = settings;
  const login: LoginSource | undefined =
    username !== undefined || password !== undefined
      ? {
          username: username ?? "",
          password:
            password ??
            (() =>
              Promise.reject(
                new CertRetrieverError("no password given", { step: "authenticate", reason: "missing-credentials" }),
              )),
          retryLogin,
          onToken,
        }
      : undefined;
  return { login, token };
}
