/**
 * What a protocol plug-in is and offers. The flows ask a client for a capability (`client.revoke`,
 * `client.reenroll`, `client.sessionless`...) and never for a protocol by name; a protocol is a
 * folder with a plug-in object, listed once in registry.ts.
 */
import type { CertRetrieverError, Reason, SettingNamer } from "../errors.js";
import type { SigningKey } from "../keys/key-store.js";
import type { KeyType } from "../keys/key-types.js";
import type { CryptoProvider } from "../keys/provider.js";
import type { HttpClient, Validators } from "../transport/http.js";

export type { Validators } from "../transport/http.js";

/** A platform session: the JWT (memory only) and what it says about the caller. Sessionless protocols have none. */
export interface Session {
  jwt?: string;
  /** The tenant (`service` claim). */
  tenant?: string;
  /** When the token expires (`exp` claim), if it says. */
  expiresAt?: Date;
}

/** The user and password of a login, each read when needed, and whether to ask again after a refusal. */
export interface LoginSource {
  /** The user, or a function that asks for it (called only when the login runs). */
  username: string | (() => Promise<string>);
  password: () => Promise<string>;
  /**
   * After the platform refused the user or the password (`auth-refused`, `user-unknown`):
   * whether to ask for them again; `attempt` counts from 1. A terminal asks up to three times.
   */
  retryLogin?: (err: CertRetrieverError, attempt: number) => boolean;
  /** Sees the token a login obtained, before anything else does (a caller that prints keeps it out of what it prints). */
  onToken?: (token: string) => void;
}

/** The CA certificate as the platform delivered it. */
export interface FetchedCa {
  /** The CA that issues device certificates. */
  der: Uint8Array;
  /** Its issuers, in order up to the root, where the platform sends them (EST's /cacerts). */
  chain?: Uint8Array[];
  /** What vouched for the server that sent it, when no pin is needed for that (EST's explicit trust anchors). */
  vouchedBy?: string;
}

/** What the platform needs to sign a device's certificate. */
export interface SignRequest {
  deviceId: string;
  /** The CSR, DER-encoded. */
  csrDer: Uint8Array;
  /** The CSR's key and its provider, for a protocol whose request that key itself signs (SCEP's pkiMessage, CMP's CRMF proof of possession). */
  key?: { keys: CryptoKeyPair; crypto: CryptoProvider };
}

/** A renewal authenticated by the current credentials (certificate PEM, key PEM). */
export interface ReenrollRequest extends SignRequest {
  current: { certificatePem: string; keyPem: string };
}

/** The issued certificate, DER-encoded, as the platform delivered it. */
export interface Issued {
  der: Uint8Array;
  /** The platform's own name for it (x509-identity-mgmt: the SHA-256 fingerprint it gave). */
  fingerprint?: string;
}

/** What the bind step did: whether the platform now ties the certificate to the device, and a line saying so. */
export interface Binding {
  bound: boolean;
  detail: string;
}

/** What the platform asks of the CSR (EST's /csrattrs), and notes on what cannot be honoured. */
export interface CsrRequest {
  keyType?: KeyType;
  notes: string[];
  /** Why the platform would refuse a key of `type` (before it is made), or undefined when it takes it. */
  refuseKeyType?(type: KeyType): CertRetrieverError | undefined;
}

/** A certificate from another CA, to be registered and bound to a device. */
export interface RegisterRequest {
  deviceId: string;
  /** The device's certificate first, then its CAs, PEM. */
  chainPem: string;
  leafDer: Uint8Array;
  /** The trusted root CA's fingerprint, when the chain does not end with it. */
  caFingerprint?: string;
}

/** Logging in with a user and password, or taking the session of a token written earlier. */
export interface LoginCapability {
  authenticate(username: string, password: string): Promise<Session>;
  /** The session of a token `login` wrote: tenant and expiry from its claims (not verified here). */
  fromToken(jwt: string): Session;
}

/** A protocol without sessions: the credentials travel with the enrollment request. */
export interface SessionlessCapability {
  /** Takes the login to send (read only when a request needs it; none: no password is sent); returns the authenticate step's line. */
  attach(login: LoginSource | undefined): string;
}

/** Where the CA comes from. */
export interface TrustCapability {
  fetchCa(session: Session): Promise<FetchedCa>;
  /** After the caller checked the chain (pin, signatures): the platform may trust it for its own TLS from then on (EST). */
  trustChain?(chain: Uint8Array[]): void;
}

/** Issuing a certificate for a CSR. */
export interface EnrollCapability {
  /** The key made when nothing else asks for one. */
  readonly defaultKeyType: KeyType;
  /** The CNs a certificate of this device may carry. */
  commonNames(deviceId: string, tenant?: string): string[];
  /** Why no bind step is needed, where the client has no `bind`. */
  readonly noBinding?: string;
  /** After fetch-ca, before any key is made: refuses (throws) a device this platform cannot enroll; may say what it asks of the CSR. */
  prepare?(session: Session, deviceId: string, context?: PrepareContext): Promise<CsrRequest | undefined>;
  /**
   * A certificate this run was issued and did not store, where the client cannot revoke it: what
   * the next run does about it, and whether it needs the journal for that (it then reads it in `prepare`).
   */
  readonly unstored?: {
    next: string;
    journal: boolean;
    /** Undoes it now, so that the next run need not (EJBCA-REST: the end entity back to NEW); returns what it did, in words. */
    undo?(session: Session, deviceId: string): Promise<string>;
  };
  submit(session: Session, req: SignRequest): Promise<Issued>;
}

/** A certificate an earlier run of this device may have been issued without storing it (its journal), for `prepare`. */
export interface EarlierIssue {
  /** When that run sent its CSR. */
  at: string;
  /** The protocol it spoke. */
  api: string;
}

/** What `prepare` is told of the run: a certificate an earlier run may have left, and whether this run replaces stored credentials of this device. */
export interface PrepareContext {
  earlier?: EarlierIssue;
  /** The stored certificate is the fetched CA's: this run renews or replaces it (a renewal, a revoked one, `force`). */
  replacing: boolean;
}

/** A certificate to revoke, named every way a platform may ask for it. */
export interface RevokeTarget {
  /** SHA-256, hex with colons (x509-identity-mgmt's name for it). */
  sha256Fingerprint: string;
  /** The serial number, hex (EJBCA's). */
  serialNumber: string;
  /** The issuing CA's subject DN (EJBCA finds the CA by it). */
  issuer: string;
  /** Why: a replaced certificate is superseded. */
  reason?: "superseded";
}

/** Renewal authenticated by the current certificate (EST's /simplereenroll), which keeps the certificate's names. */
export interface ReenrollCapability {
  submit(session: Session, req: ReenrollRequest): Promise<Issued>;
  /** The note when the run asks for names the renewed certificate will not get (it keeps its own). */
  keptNames(asked: string[]): string;
}

/** A conditional fetch's answer: unchanged since the validators sent (304, no body), or the body and its own validators. */
export type Conditional<T> = { unchanged: true } | { unchanged: false; value: T; validators: Validators };

/** The CA and the CRL fetched with If-None-Match / If-Modified-Since, where the platform answers them with 304. */
export interface RevalidateCapability {
  ca(session: Session, known: Validators | undefined): Promise<Conditional<FetchedCa>>;
  crl(session: Session, known: Validators | undefined): Promise<Conditional<Uint8Array>>;
}

/**
 * A protocol client, opened for one run. Capabilities are present or absent; the flows test
 * presence, never the protocol's name.
 */
export interface ProtocolClient {
  /** Its plug-in's canonical name. */
  readonly name: string;
  /** Its name for people, e.g. "EJBCA-REST (dojot <= v0.4)". */
  readonly title: string;
  /** After trust.fetchCa, a client that detects its protocol hands back the one that answered. */
  effective?(): ProtocolClient;
  login?: LoginCapability;
  sessionless?: SessionlessCapability;
  trust: TrustCapability;
  enroll: EnrollCapability;
  reenroll?: ReenrollCapability;
  /** After validation, before anything is written: ties the certificate to the device where the platform needs it. */
  bind?(session: Session, issued: Issued, deviceId: string): Promise<Binding>;
  /** Removes a certificate the platform issued, which revokes it. */
  revoke?(session: Session, target: RevokeTarget): Promise<"revoked" | "absent">;
  /** The issuing CA's latest CRL, DER (after fetchCa). */
  crl?(session: Session): Promise<Uint8Array>;
  /** The CA and the CRL fetched again only when they changed (after fetchCa for a client that detects its protocol). */
  revalidate?: RevalidateCapability;
  /** Registers a certificate another CA issued, bound to the device; `already`: it was so already. */
  register?(session: Session, req: RegisterRequest): Promise<{ fingerprint: string; already: boolean }>;
}

/** What a plug-in is opened with. */
export interface ProtocolContext {
  /** The platform's URL as given. */
  url: URL;
  http: HttpClient;
  crypto: CryptoProvider;
  /** Aborts a wait (an interrupt). */
  signal?: AbortSignal;
  /** The CA that issues device certificates, by name (EJBCA-REST asks for it so). */
  caName: string;
  /** The pinned CA fingerprint: 64 hex digits, upper case. */
  pin?: string;
  /** CA certificates for the platform's TLS were given (`http` has them). */
  platformCa: boolean;
  /** Those CA certificates, PEM (CMP trusts its CA through them). */
  platformCaPem?: readonly string[];
  /** `http` has a client certificate. */
  clientCert: boolean;
  /** That certificate (with its chain, if the file has one) and its key: CMP signs a first enrollment with them. */
  clientCredentials?: ClientCredentials;
  /** The login a sessionless protocol sends with its requests (none: it sends no password). */
  login?: LoginSource;
  /** The CA chain stored with the device's credentials (PEM), if any. */
  storedCaPem?: string;
  /** Values of the settings the plug-in declares, by name. */
  options: Readonly<Record<string, unknown>>;
}

/**
 * A client certificate (with its chain, if the file has one, PEM) and its key: a PEM key, or a key
 * in a token (a manufacturer's, named by its `pkcs11:` URI) opened once when first signed with; it
 * signs there and never leaves it.
 */
export type ClientCredentials =
  | { certificatePem: string; keyPem: string; tokenKey?: undefined }
  | { certificatePem: string; keyPem?: undefined; tokenKey: () => Promise<SigningKey> };

/** What is known of a run's settings before anything is opened, for a plug-in's checks. Absent fields are not checked. */
export interface SettingsToCheck {
  /** What the run is for. */
  purpose: "enroll" | "status" | "register" | "login";
  deviceId?: string;
  /** A token from `login` is given. */
  token?: boolean;
}

/** What a first enrollment's trust rests on, for a plug-in that must not trust a CA because it was the first one seen. */
export interface TrustToCheck {
  storedCaPem?: string;
  pin?: string;
  platformCa: boolean;
}

/** A text the plug-in gives, and what to do about it; `{setting}` placeholders name settings. */
export interface Refusal {
  message: string;
  advice?: string;
}

/** A setting only this protocol takes, as data the CLI turns into a flag (its name, camelCase, becomes `--kebab-case`). */
export interface ProtocolSettingSpec {
  /** The setting's name (`entityPasswordFile`); also its config file key. */
  name: string;
  /** The flag's argument, e.g. `file`. */
  argument: string;
  /** Help text; `{setting}` and `{$VARIABLE}` placeholders name flags and environment variables. */
  description: string;
  /** The environment variable, without the CLI's prefix. */
  env?: string;
  /** A file holding a secret: read (first line), never printed; `secretEnv` holds the secret itself. */
  secret?: { what: string; secretEnv?: string; into: string };
}

/** Reason -> what the user can do, with `{setting}` placeholders; undefined: the general hint. */
export type ProtocolHints = {
  readonly [R in Reason]?: (err: CertRetrieverError, command: string | undefined) => string | undefined;
};

/** A protocol: its names, what it offers before it is opened, and how to open it. */
export interface ProtocolPlugin {
  /** Canonical name: what the code, the flag and the docs call it. */
  readonly name: string;
  /** Other names `--api` takes for it (today's flag values). */
  readonly aliases: readonly string[];
  readonly title: string;
  /** What the name means, for the help of `--api`. */
  readonly summary: string;
  /** Settings only this protocol takes. */
  readonly settings?: readonly ProtocolSettingSpec[];
  readonly hints?: ProtocolHints;
  /** Capabilities it lacks, with what to say when a run asks for one: checked before anything is opened. */
  readonly lacks?: { readonly login?: Refusal; readonly register?: Refusal };
  /** The client certificate's key may be a `pkcs11:` URI naming a key in a token: the plug-in signs with it there itself (CMP's bootstrap protection), never Node's TLS. */
  readonly signsWithTokenClientKey?: boolean;
  /** Whether a login is to be sent, given what the user gave (default: unless a token is). */
  wantsLogin?(given: { username: boolean; clientCert: boolean; token: boolean }): boolean;
  /** Refuses a platform URL this protocol cannot use (its form), before any request (throws a usage error). */
  checkUrl?(url: URL): void;
  /** Refuses settings this protocol cannot work with, before any request (throws a usage error). */
  checkSettings?(settings: SettingsToCheck, name: SettingNamer): void;
  /** Refuses an enrollment whose trust would rest on the first CA seen (throws a usage error). */
  checkTrust?(trust: TrustToCheck, name: SettingNamer): void;
  open(ctx: ProtocolContext): Promise<ProtocolClient>;
}
