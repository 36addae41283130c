/**
 * What an agent is made from: plain data and functions. A program fills what it knows; the rest
 * has defaults. Anything a test needs to inject (a protocol client, a credential store, a key
 * store, a clock) can be passed instead of being built.
 */

import type { LookupFunction } from "node:net";
import type { SettingNamer } from "./errors.js";
import type { TokenSession } from "./flows/authenticate.js";
import type { DeviceSettings } from "./flows/context.js";
import type { ChangeHooks } from "./flows/hooks.js";
import type { RenewWindow } from "./flows/inspect.js";
import type { EnrollResult } from "./flows/result.js";
import type { RevocationMode } from "./flows/status.js";
import type { BrokerSettings } from "./flows/verify.js";
import type { KeyStore } from "./keys/key-store.js";
import type { KeySettings } from "./keys/open.js";
import type { CryptoProvider } from "./keys/provider.js";
import type { LoginSource, ProtocolClient, ProtocolPlugin } from "./protocols/types.js";
import type { RecordedSettings } from "./store/device-record.js";
import type { CredentialStore, WriteObserver } from "./store/types.js";
import type { HttpClient, HttpTimeouts, OnWait, RetryInfo } from "./transport/http.js";

/** The platform and how to reach it. */
export interface PlatformSettings {
  /** The gateway (dojot's Kong) or the EST server; needed by every operation that asks the platform (a status that reads only the certificate's distribution points needs none, only `tls`). */
  url?: URL | string;
  /** A protocol's name (canonical or alias) or plug-in; default `auto`. */
  protocol?: string | ProtocolPlugin;
  /** The CA that issues device certificates; default dojot's `IOTmidCA`. */
  caName?: string;
  /** Values of the settings the protocol declares (e.g. EJBCA-REST's `entityPassword`). */
  options?: Record<string, unknown>;
  /**
   * TLS for the platform: CA certificates trusted beside the system's, a client certificate and its
   * key (PEM). For CMP the key may be a `pkcs11:` URI naming a key already in a token (with id= or
   * object=): it signs the bootstrap protection there (the key settings' module and PIN reader serve it).
   */
  tls?: { ca?: string[]; cert?: string; key?: string };
  /** A protocol client to use instead of opening the protocol (a test's fake). */
  client?: ProtocolClient;
}

/** The network's limits, and what to tell of retries and waits. */
export interface NetworkSettings {
  /** When the whole run must be over (epoch milliseconds); default five minutes from the agent's making. */
  deadline?: number;
  /** Attempts in all of a request that fails temporarily (1: no retry); default 5. */
  attempts?: number;
  timeouts?: HttpTimeouts;
  /** Ends everything (an interrupt); its reason is what the run fails with. */
  signal?: AbortSignal;
  onRetry?: (info: RetryInfo) => void;
  /** Told when a request begins to wait for its reply (and when a protocol waits between requests); returns what ends the wait. */
  onWait?: OnWait;
  /** An HTTP client to use instead of building one. */
  http?: HttpClient;
  /** Where HTTP_PROXY, HTTPS_PROXY and NO_PROXY are read; default this process's environment. */
  environment?: NodeJS.ProcessEnv;
  /** How host names are resolved on a direct connection; default the system's resolver (getaddrinfo). */
  lookup?: LookupFunction;
}

/** When credentials are renewed, and what becomes of the ones replaced. */
export interface RenewalSettings {
  /** Default: at expiry. */
  renewBefore?: RenewWindow;
  /** Where a CRL comes from; default `auto` (the platform; enroll reads only the cache `check` keeps). */
  revocation?: RevocationMode;
  /**
   * status's traffic budget: valid credentials ask the platform (login, CA, CRL) at most once in each
   * slot this long, shifted by the device id; a cached CRL is read meanwhile. Default seven days.
   */
  crlRefreshMs?: number;
  /** Revoke the certificate a renewal replaced, where the protocol can; default true. */
  revokePrevious?: boolean;
}

/** Where credentials are kept; `caName` names the CA's file or entry (default: the platform's CA name). */
export type StoreSettings =
  | { kind: "files"; dir: string; caName?: string }
  | { kind: "keychain"; lockDir: string; caName?: string }
  | CredentialStore;

/** Who logs in: the user and password (each read only when a request needs it), or a token `login` wrote. */
export interface LoginSettings {
  username?: LoginSource["username"];
  password?: LoginSource["password"];
  /** After the platform refused the user or password: whether to ask again (a terminal asks up to three times). */
  retryLogin?: LoginSource["retryLogin"];
  /** Sees the token a login obtained (a caller that prints keeps it out of what it prints). */
  onToken?: LoginSource["onToken"];
  /** A session from a token `login` wrote, instead of logging in. */
  token?: TokenSession;
}

/** Settings given now, or found when first needed (a command that asks the platform only sometimes). */
export type Later<T> = T | (() => Promise<T>);

/** Everything an agent is made from. */
export interface AgentSettings {
  platform?: Later<PlatformSettings>;
  device: DeviceSettings;
  /** Where the credentials are kept (every operation but register and login needs it). */
  store?: StoreSettings;
  /** The pinned CA: its SHA-256 fingerprint (hex, any case, colons optional). */
  trust?: { pin?: string };
  login?: Later<LoginSettings | undefined>;
  /** Where the key is made: software (default) or a PKCS#11 token; or a key store to use as it is. */
  key?: KeySettings | KeyStore;
  renewal?: RenewalSettings;
  /** After new credentials are stored: commands to run, and/or a function. */
  hooks?: Partial<ChangeHooks> & { afterChange?: (result: EnrollResult) => Promise<void> };
  /** The broker to check new credentials with before they replace stored ones (and `verify`'s default). */
  broker?: Later<BrokerSettings>;
  network?: NetworkSettings;
  /** The clock (tests may move it). */
  clock?: () => Date;
  /** Sees each point of a credential write (tracing; a test's injected failure). */
  observer?: WriteObserver;
  /** Verifies signatures and makes software keys; default the runtime's WebCrypto. */
  crypto?: CryptoProvider;
  /** How messages name settings (the CLI names its flags); default their own names. */
  name?: SettingNamer;
  /**
   * Record these settings beside new credentials (`<out>/<device-id>.settings.json`), for the
   * commands after enrollment; the API is recorded as the one that answered. Never put a secret here.
   */
  record?: { settings: RecordedSettings; writtenBy: string };
}

/** dojot's CA of device certificates. */
export const DEFAULT_CA_NAME = "IOTmidCA";
/** A run's default time limit. */
export const DEFAULT_DEADLINE_MS = 5 * 60_000;
/** How long a cached CRL is used without asking: a fleet's daily checks cost the platform one exchange a week a device. */
export const DEFAULT_CRL_REFRESH_MS = 7 * 24 * 60 * 60_000;
/** Attempts in all of a request that fails temporarily. */
export const DEFAULT_ATTEMPTS = 5;

/** Whether `key` is a key store to use as it is, rather than settings to open one with. */
export function isKeyStore(key: AgentSettings["key"]): key is KeyStore {
  return key !== undefined && typeof (key as KeyStore).begin === "function";
}

/** Whether `store` is a credential store to use as it is. */
export function isCredentialStore(store: StoreSettings): store is CredentialStore {
  return typeof (store as CredentialStore).write === "function";
}
