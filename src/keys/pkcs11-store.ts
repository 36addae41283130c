import { createHash, createPublicKey } from "node:crypto";
import { access, constants, realpath } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { CertRetrieverError, describeCause, type Reason, usageError } from "../errors.js";
import { acquireLock } from "../fs/lock.js";
import { prepareDirectory } from "../fs/safe-dir.js";
import { problemOnPath, walkPath } from "../fs/trusted-path.js";
import { keyTypeOf } from "./key-file.js";
import { TokenKeyTransaction } from "./key-journal.js";
import {
  type KeyHandle,
  type KeyStore,
  type KeyTransaction,
  type SigningKey,
  webCryptoSigningKey,
} from "./key-store.js";
import { KEY_TYPES, type KeyType, keyAlgorithm } from "./key-types.js";
import { formatPkcs11Uri, type Pkcs11Uri, parsePkcs11Uri } from "./pkcs11-uri.js";
import type { CryptoProvider } from "./provider.js";
import type * as x509 from "./x509.js";

// The optional native packages, loaded only when a pkcs11: key is asked for.
type Graphene = typeof import("graphene-pk11");
type WebcryptoP11 = typeof import("node-webcrypto-p11");
type Session = import("graphene-pk11").Session;
type Module = import("graphene-pk11").Module;
type Slot = import("graphene-pk11").Slot;

/** What a PKCS#11 key store needs to open its token. */
export interface Pkcs11Options {
  /** The `--key` value, a `pkcs11:` URI. */
  uri: string;
  /** The module when the URI has no `module-path=`: `--pkcs11-module`, else PKCS11_MODULE_PATH. */
  modulePath?: string;
  /** Reads the PIN, asked for only when the token needs a login. */
  pin: () => Promise<string>;
  /** Where `pin` comes from, in words, for the messages. */
  pinSource: string;
  /** After the token refused the PIN read on `attempt` (from 1): whether to read it again; `finalTry`: the token says one more wrong PIN locks it. */
  pinAgain?: (refused: CertRetrieverError, attempt: number, finalTry: boolean) => boolean;
  /** Where `pin-value=` would be seen by others (argv): it is refused there. */
  refusePinValue: boolean;
  /**
   * The URI was read from the stored credentials, a file: a `module-path=` in it is loaded only if
   * no other user could have put that module there (the settings' own are trusted as root gave them).
   */
  uriStored?: boolean;
}

/** PKCS#11 return values and the failure each one means for the user. */
const CKR_REASONS: Record<string, Reason> = {
  CKR_PIN_INCORRECT: "token-pin-refused",
  CKR_PIN_INVALID: "token-pin-refused",
  CKR_PIN_LEN_RANGE: "token-pin-refused",
  CKR_PIN_LOCKED: "token-locked",
  CKR_PIN_EXPIRED: "token-locked",
  CKR_TOKEN_WRITE_PROTECTED: "token-locked",
  CKR_DEVICE_MEMORY: "token-full",
  CKR_TOKEN_NOT_PRESENT: "token-missing",
  CKR_TOKEN_NOT_RECOGNIZED: "token-missing",
  CKR_DEVICE_REMOVED: "token-missing",
  CKR_SLOT_ID_INVALID: "token-missing",
};

/** The CKR_ name of a PKCS#11 error (graphene-pk11 puts it in the message), if it is one. */
function ckrOf(err: unknown): string | undefined {
  return /\b(CKR_[A-Z_]+)\b/.exec(err instanceof Error ? err.message : String(err))?.[1];
}

/** The error for a failed token call: the reason its CKR_ value means, else `fallback`. */
function tokenError(message: string, err: unknown, fallback: Reason = "token-error"): CertRetrieverError {
  const ckr = ckrOf(err);
  const reason = (ckr ? CKR_REASONS[ckr] : undefined) ?? fallback;
  return new CertRetrieverError(`token failed: ${message}: ${ckr ?? describeCause(err)}`, {
    step: "token",
    reason,
    cause: err,
  });
}

/** The module to load: the URI's `module-path=`, else --pkcs11-module, else PKCS11_MODULE_PATH. */
export function modulePathOf(uri: Pkcs11Uri, fallback: string | undefined): string {
  const path = uri.modulePath ?? fallback ?? process.env.PKCS11_MODULE_PATH;
  if (!path) {
    throw usageError(
      "no PKCS#11 module: the key URI has no module-path=, none was given, and PKCS11_MODULE_PATH is unset",
      "pkcs11Module",
    );
  }
  return path;
}

/** Loads the optional packages; a build or installation without them gets one sentence. */
async function loadPackages(): Promise<{ graphene: Graphene; p11: WebcryptoP11 }> {
  try {
    const [graphene, p11] = await Promise.all([import("graphene-pk11"), import("node-webcrypto-p11")]);
    return {
      graphene: (graphene as { default?: Graphene }).default ?? graphene,
      p11: (p11 as { default?: WebcryptoP11 }).default ?? p11,
    };
  } catch (err) {
    throw new CertRetrieverError(
      `token failed: this installation has no PKCS#11 support (node-webcrypto-p11 and pkcs11js): ${describeCause(err).split("\n")[0]}`,
      {
        step: "token",
        reason: "pkcs11-unavailable",
        cause: err,
      },
    );
  }
}

/**
 * Keys in a PKCS#11 token (a secure element, a TPM through tpm2-pkcs11, SoftHSM): generated inside
 * it, CKA_EXTRACTABLE false and CKA_SENSITIVE true, labelled with the device id (or the URI's
 * `object=`), their CKA_ID the first 16 bytes of the SHA-1 of the public key (node-webcrypto-p11's
 * rule) so that a key and its successor never share an id. The CSR is signed inside the token; the
 * credentials store records only the key's URI. Open with {@link openPkcs11KeyStore}.
 */
export class Pkcs11KeyStore implements KeyStore {
  /** Node's TLS reaches a token key only through OpenSSL's engine, which opens the token itself: not while this store has it. */
  readonly tlsWhileOpen = false;
  private closed = false;

  private constructor(
    private readonly module: Module,
    private readonly session: Session,
    private readonly graphene: Graphene,
    private readonly p11: WebcryptoP11,
    private readonly crypto: CryptoProvider,
    private readonly uri: Pkcs11Uri,
    private readonly modulePath: string,
    private readonly tokenLabel: string,
    private readonly tokenSerial: string,
    private readonly release: () => Promise<void>,
    private readonly loggedIn: boolean,
  ) {}

  get location(): string {
    return `token '${this.tokenLabel}' (${this.modulePath})`;
  }

  /**
   * Loads the module, finds the token, takes the token's lock and, when `login` and the token asks
   * for one, logs in: a wrong PIN stops the run before the platform is asked anything.
   */
  static async open(opts: Pkcs11Options, login: boolean): Promise<Pkcs11KeyStore> {
    const uri = parsePkcs11Uri(opts.uri);
    const modulePath = await readableModule(uri, opts);
    const { graphene, p11 } = await loadPackages();
    const module = loadModule(graphene, modulePath);
    let release: (() => Promise<void>) | undefined;
    let session: Session | undefined;
    try {
      const slot = findSlot(module, uri);
      const token = slot.getToken();
      const tokenLabel = token.label.trim();
      release = await tokenLock(modulePath, token.serialNumber.trim(), tokenLabel);
      session = slot.open(graphene.SessionFlag.SERIAL_SESSION | graphene.SessionFlag.RW_SESSION);
      const loggedIn = login && (await logIn(session, token, graphene, uri, opts));
      const crypto = tokenCrypto(p11, session);
      return new Pkcs11KeyStore(
        module,
        session,
        graphene,
        p11,
        crypto,
        uri,
        modulePath,
        tokenLabel,
        token.serialNumber.trim(),
        release,
        loggedIn,
      );
    } catch (err) {
      quietly(() => session?.close());
      quietly(() => module.finalize());
      await release?.().catch(() => undefined);
      throw err;
    }
  }

  /** The run's key work: its journal lists the key it makes until the credentials naming it are stored. */
  begin(journalPath: string, storedRecord?: string): Promise<KeyTransaction> {
    return TokenKeyTransaction.begin(this, journalPath, storedRecord);
  }

  /**
   * Generates a key pair in the token, never extractable (see {@link begin}: a run generates through
   * its transaction); or, when the URI gives `id=`, takes the key already there with that id (and
   * label, with `object=`), never making one in its place.
   */
  async generate(type: KeyType, deviceId: string): Promise<KeyHandle> {
    if (this.uri.id !== undefined) return this.existing(this.uri.id);
    const label = this.uri.object ?? deviceId;
    let keys: CryptoKeyPair;
    try {
      keys = (await this.crypto.subtle.generateKey(
        { ...keyAlgorithm(type), label, token: true, sensitive: true } as unknown as Algorithm,
        false,
        ["sign", "verify"],
      )) as CryptoKeyPair;
    } catch (err) {
      const ckr = ckrOf(err);
      if (ckr && CKR_REASONS[ckr])
        throw tokenError(`generating a ${type} key in token '${this.tokenLabel}' failed`, err);
      throw new CertRetrieverError(
        `generate-key failed: token '${this.tokenLabel}' cannot make a ${type} key: ${ckr ?? describeCause(err)}`,
        { step: "generate-key", reason: "keygen-failed", cause: err },
      );
    }
    const id = new Uint8Array((keys.privateKey as unknown as { key: { id: Buffer } }).key.id);
    const crypto = this.crypto;
    const record = formatPkcs11Uri({
      token: this.tokenLabel,
      serial: this.tokenSerial,
      object: label,
      id,
      type: "private",
      modulePath: this.modulePath,
      pinSource: this.uri.pinSource,
    });
    return {
      keys,
      crypto,
      where: `generated in ${this.location}, never extractable`,
      record: async () => record,
      spki: async () => new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey)),
    };
  }

  /**
   * The key pair already in the token with `id` (and the URI's `object=` label): a key made at
   * manufacturing, by a secure element or another tool. Its record is marked kept, so nothing ever
   * removes it. `token-key-missing` when there is no such private key, or no public key beside it.
   */
  private async existing(id: Uint8Array): Promise<KeyHandle> {
    const { ObjectClass } = this.graphene;
    const named = `with id ${Buffer.from(id).toString("hex")}${this.uri.object !== undefined ? ` and label '${this.uri.object}'` : ""}`;
    const privates = this.find(ObjectClass.PRIVATE_KEY, this.uri.object, id);
    const publics = this.find(ObjectClass.PUBLIC_KEY, this.uri.object, id);
    const missing = (what: string) =>
      new CertRetrieverError(
        `generate-key failed: ${this.location} holds ${what} ${named}; an id= in the key URI names a key already there, and none is made in its place`,
        { step: "generate-key", reason: "token-key-missing" },
      );
    if (privates.length === 0) throw missing("no private key");
    if (privates.length > 1)
      throw usageError(
        `${this.location} holds ${privates.length} private keys ${named}: add object= to the key URI to name one`,
        "key",
      );
    if (publics.length !== 1)
      throw missing(publics.length === 0 ? "no public key object (needed for the CSR)" : "more than one public key");
    const spki = await this.spkiOf(publics[0]!);
    const type = keyTypeOf(createPublicKey({ key: Buffer.from(spki), format: "der", type: "spki" }));
    if (!(type in KEY_TYPES))
      throw usageError(
        `the token key ${named} is ${type}; only RSA (2048, 3072, 4096 bits) and EC P-256 or P-384 keys are taken`,
        "key",
      );
    const keys = await this.keyPair(privates[0]!, publics[0]!, type, named);
    const label = privates[0]!.getAttribute({ label: null }).label as string | undefined;
    const record = formatPkcs11Uri({
      token: this.tokenLabel,
      serial: this.tokenSerial,
      object: label || undefined,
      id,
      type: "private",
      modulePath: this.modulePath,
      pinSource: this.uri.pinSource,
      kept: true,
    });
    return {
      keys,
      crypto: this.crypto,
      type: type as KeyType,
      where: `found in ${this.location} (not generated: it stays there, and is never removed)`,
      record: async () => record,
      spki: async () => spki,
    };
  }

  /** The token's key objects as WebCrypto keys of `type`: the public one exportable (for the CSR), the private one never. */
  private async keyPair(
    privateKey: import("graphene-pk11").SessionObject,
    publicKey: import("graphene-pk11").SessionObject,
    type: string,
    named: string,
  ): Promise<CryptoKeyPair> {
    const storage = (this.crypto as unknown as InstanceType<WebcryptoP11["Crypto"]>).keyStorage;
    const algorithm = type.startsWith("rsa-") ? { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } : undefined;
    const item = (o: import("graphene-pk11").SessionObject, usage: string) =>
      storage.getItem(this.p11.CryptoKey.getID(o.toType() as never), algorithm as never, usage === "verify", [
        usage as never,
      ]);
    try {
      return {
        privateKey: (await item(privateKey, "sign")) as never,
        publicKey: (await item(publicKey, "verify")) as never,
      };
    } catch (err) {
      throw tokenError(`opening the key ${named} in token '${this.tokenLabel}' failed`, err);
    }
  }

  /** Whether the token holds the private key a record names (logged in; without a login, its public key). */
  holds(record: string): boolean {
    const uri = parsePkcs11Uri(record);
    const { ObjectClass } = this.graphene;
    return this.find(this.loggedIn ? ObjectClass.PRIVATE_KEY : ObjectClass.PUBLIC_KEY, uri.object, uri.id).length > 0;
  }

  /** The private key a stored record names, as a handle in the token (it never leaves it); the store is logged in. */
  async signingKey(record: string, pss = false): Promise<SigningKey> {
    const uri = parsePkcs11Uri(record);
    const [object] = this.find(this.graphene.ObjectClass.PRIVATE_KEY, uri.object, uri.id);
    if (!object)
      throw new CertRetrieverError(
        `token failed: ${this.location} no longer holds the key '${uri.object ?? ""}' the stored credentials name`,
        { step: "token", reason: "token-key-missing" },
      );
    const id = this.p11.CryptoKey.getID(object.toType() as never);
    const storage = (this.crypto as unknown as InstanceType<WebcryptoP11["Crypto"]>).keyStorage;
    const what = `the key '${uri.object ?? ""}' in token '${this.tokenLabel}'`;
    let key: CryptoKey;
    try {
      key = (await storage.getItem(id)) as unknown as CryptoKey;
      // An RSA key is taken for one scheme, hashed with SHA-256.
      if (key.algorithm.name !== "ECDSA") {
        const algorithm = { name: pss ? "RSA-PSS" : "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
        key = (await storage.getItem(id, algorithm as never, false, ["sign"])) as unknown as CryptoKey;
      }
    } catch (err) {
      throw tokenError(`opening ${what} failed`, err);
    }
    const signer = webCryptoSigningKey(key, this.crypto, `in ${this.location}, never extractable`);
    return {
      ...signer,
      sign: (params, data) =>
        signer.sign(params, data).catch((err: unknown) => {
          throw tokenError(`signing with ${what} failed`, err);
        }),
    };
  }

  /** Whether `uri` names this store's token (its module, label and serial): one the store has open, and locked, already. */
  opens(uri: string, modulePath?: string): boolean {
    const named = parsePkcs11Uri(uri);
    return (
      resolve(modulePathOf(named, modulePath)) === resolve(this.modulePath) &&
      (named.token ?? this.tokenLabel) === this.tokenLabel &&
      (named.serial ?? this.tokenSerial) === this.tokenSerial
    );
  }

  /**
   * A key already in the token that signs for a certificate of its own (a manufacturer's IDevID key,
   * CMP's bootstrap key), named by `id=` or `object=`: signed with there, never removed or replaced.
   * `token-key-missing` when the token holds no such private key.
   */
  async existingSigningKey(uri: string, what: string): Promise<SigningKey> {
    const named = parsePkcs11Uri(uri);
    if (named.id === undefined && named.object === undefined)
      throw usageError(`${what} names no key in ${this.location}: add its id= or object=`, "clientKey");
    const label = named.object !== undefined ? ` and label '${named.object}'` : "";
    const which = `${named.id !== undefined ? `with id ${Buffer.from(named.id).toString("hex")}` : "with"}${label}`;
    const found = this.find(this.graphene.ObjectClass.PRIVATE_KEY, named.object, named.id);
    if (found.length === 0)
      throw new CertRetrieverError(
        `token failed: ${this.location} holds no private key ${which.replace(/^with and/, "with")}, the one ${what} names; nothing was sent`,
        { step: "token", reason: "token-key-missing", facts: { field: "clientKey" } },
      );
    if (found.length > 1)
      throw usageError(
        `${this.location} holds ${found.length} private keys ${which}: name one in ${what}`,
        "clientKey",
      );
    return this.signingKey(uri);
  }

  /** The SubjectPublicKeyInfo of each public key the record names, for matching a certificate. */
  async publicKeysOf(record: string): Promise<Uint8Array[]> {
    const uri = parsePkcs11Uri(record);
    return Promise.all(this.find(this.graphene.ObjectClass.PUBLIC_KEY, uri.object, uri.id).map((o) => this.spkiOf(o)));
  }

  /**
   * Removes the key a record names (and its certificate object), which cert-retriever made: one a
   * failed or killed run left, or one that a new enrollment replaced. `elsewhere`: the record names
   * another token than this store's, which is left as it is.
   */
  async remove(record: string): Promise<"removed" | "absent" | "elsewhere"> {
    const uri = parsePkcs11Uri(record);
    if (uri.token !== this.tokenLabel || (uri.serial !== undefined && uri.serial !== this.tokenSerial))
      return "elsewhere";
    if (uri.object === undefined || uri.id === undefined) return "absent"; // names no one key
    if (uri.kept) return "absent"; // a key that was there before cert-retriever: never removed
    const { ObjectClass } = this.graphene;
    const objects = [ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY, ObjectClass.CERTIFICATE].flatMap((cls) =>
      this.find(cls, uri.object, uri.id),
    );
    if (objects.length === 0) return "absent";
    for (const object of objects) {
      try {
        object.destroy();
      } catch (err) {
        throw tokenError(`removing the key '${uri.object}' from token '${this.tokenLabel}' failed`, err);
      }
    }
    return "removed";
  }

  /**
   * Puts the certificate into the token beside its key, with the key's label and id, for other
   * PKCS#11 consumers. It replaces the certificate objects there; beside a key that was there before
   * cert-retriever (kept), only those of the same issuer (not, say, the manufacturer's certificate).
   */
  async storeCertificate(record: string, cert: x509.X509Certificate): Promise<void> {
    const uri = parsePkcs11Uri(record);
    const { ObjectClass, CertificateType } = this.graphene;
    try {
      const issuer = Buffer.from(cert.issuerName.toArrayBuffer());
      for (const old of this.find(ObjectClass.CERTIFICATE, uri.object, uri.id))
        if (!uri.kept || issuer.equals(old.getAttribute({ issuer: null }).issuer as Buffer)) old.destroy();
      this.session.create({
        class: ObjectClass.CERTIFICATE,
        certType: CertificateType.X_509,
        token: true,
        private: false,
        label: uri.object,
        id: Buffer.from(uri.id ?? []),
        subject: Buffer.from(cert.subjectName.toArrayBuffer()),
        issuer: Buffer.from(cert.issuerName.toArrayBuffer()),
        serial: derInteger(cert.serialNumber),
        value: Buffer.from(cert.rawData),
      });
    } catch (err) {
      throw tokenError(`writing the certificate into token '${this.tokenLabel}' failed`, err);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Each on its own: a token removed during the run fails the logout, and the module must still be finalized.
    quietly(() => this.loggedIn && this.session.logout());
    quietly(() => this.session.close());
    quietly(() => this.module.finalize());
    await this.release();
  }

  private find(cls: number, label: string | undefined, id?: Uint8Array) {
    const template: Record<string, unknown> = { class: cls, token: true };
    if (label !== undefined) template.label = label;
    if (id !== undefined) template.id = Buffer.from(id);
    const found: Array<import("graphene-pk11").SessionObject> = [];
    try {
      this.session.find(template, (o) => {
        found.push(o);
      });
    } catch (err) {
      throw tokenError(`searching token '${this.tokenLabel}' failed`, err);
    }
    return found;
  }

  private async spkiOf(object: import("graphene-pk11").SessionObject): Promise<Uint8Array> {
    const key = this.p11.CryptoKey.getID(object.toType() as never);
    const crypto = this.crypto as unknown as InstanceType<WebcryptoP11["Crypto"]>;
    const handle = await crypto.keyStorage.getItem(key);
    return new Uint8Array(await crypto.subtle.exportKey("spki", handle as unknown as CryptoKey));
  }
}

/** Loads and initializes a PKCS#11 module, or says (`pkcs11-module-missing`) that it is not one that loads here. */
function loadModule(graphene: Graphene, modulePath: string): Module {
  try {
    const module = graphene.Module.load(modulePath);
    module.initialize();
    return module;
  } catch (err) {
    throw new CertRetrieverError(
      `token failed: ${modulePath} is not a PKCS#11 module that loads here: ${describeCause(err).split("\n")[0]}`,
      {
        step: "token",
        reason: "pkcs11-module-missing",
        facts: { path: modulePath },
        cause: err,
      },
    );
  }
}

/** The WebCrypto of a token session, its key templates fit for every token. */
function tokenCrypto(p11: WebcryptoP11, session: Session): CryptoProvider {
  const p11Crypto = new p11.Crypto({ session });
  // tpm2-pkcs11 1.9 refuses a key pair whose template says CKA_ENCRYPT/CKA_DECRYPT false
  // ("User specified and TPM specified attr mismatch"); left out, every token makes the same key.
  const builder = p11Crypto.templateBuilder;
  p11Crypto.templateBuilder = {
    build(params) {
      const template = builder.build(params) as Record<string, unknown>;
      if (template.encrypt === false) delete template.encrypt;
      if (template.decrypt === false) delete template.decrypt;
      return template;
    },
  };
  return p11Crypto as unknown as CryptoProvider;
}

/** Runs a clean-up step whose failure must not hide the error or the steps after it. */
function quietly(step: () => unknown): void {
  try {
    step();
  } catch {
    // a token that is gone: nothing left to close
  }
}

/** CKA_SERIAL_NUMBER: the certificate's serial as a DER INTEGER. */
function derInteger(hex: string): Buffer {
  let bytes = Buffer.from(hex.length % 2 ? `0${hex}` : hex, "hex");
  if (bytes.length === 0 || bytes[0]! & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  const length = bytes.length < 0x80 ? Buffer.from([bytes.length]) : Buffer.from([0x81, bytes.length]);
  return Buffer.concat([Buffer.from([0x02]), length, bytes]);
}

/** The module the URI (or the settings) name, if it can be read; a URI's pin-value= is refused where the settings say so. */
async function readableModule(uri: Pkcs11Uri, opts: Pkcs11Options): Promise<string> {
  if (uri.pinValue !== undefined && opts.refusePinValue) {
    throw usageError(
      "the key URI carries pin-value=, which is refused on the command line, where other users see it",
      "pinValue",
    );
  }
  // A stored one is loaded by the absolute path that was checked (a bare name would go to dlopen's search).
  const fromFile = opts.uriStored ? uri.modulePath : undefined;
  const modulePath = fromFile !== undefined ? resolve(fromFile) : modulePathOf(uri, opts.modulePath);
  if (fromFile !== undefined) await refuseUntrustedModule(modulePath);
  await access(modulePath, constants.R_OK).catch((err: unknown) => {
    throw unreadableModule(modulePath, err);
  });
  return modulePath;
}

/** `pkcs11-module-missing`: the module cannot be read. */
function unreadableModule(modulePath: string, err: unknown): CertRetrieverError {
  return new CertRetrieverError(
    `token failed: the PKCS#11 module ${modulePath} cannot be read: ${describeCause(err)}`,
    {
      step: "token",
      reason: "pkcs11-module-missing",
      facts: { path: modulePath },
      cause: err,
    },
  );
}

/**
 * Refuses (`pkcs11-module-untrusted`) a module that a stored URI names unless it is a regular file
 * of root's or ours that no one else can write, in directories of root's or ours that no one else
 * can write: loading it runs its code as us, so it must be code only root or we could have put
 * there. A module that is not there is left to the next check (`pkcs11-module-missing`).
 */
async function refuseUntrustedModule(modulePath: string): Promise<void> {
  const walk = await walkPath(modulePath, { expect: "file" }).catch((err: unknown) => {
    throw unreadableModule(modulePath, err);
  });
  if (!walk.problem) return;
  throw new CertRetrieverError(
    `token failed: refusing to load the PKCS#11 module ${modulePath} (named by the stored key URI)${problemOnPath(walk.problem, modulePath)}`,
    { step: "token", reason: "pkcs11-module-untrusted", facts: { path: walk.problem.path } },
  );
}

/**
 * Logs in when the token asks for it (a session already logged in counts); whether the session is
 * logged in. A refused PIN is read again while `pinAgain` says so (a PIN typed at a terminal).
 */
async function logIn(
  session: Session,
  token: ReturnType<Slot["getToken"]>,
  graphene: Graphene,
  uri: Pkcs11Uri,
  opts: Pkcs11Options,
): Promise<boolean> {
  if (!(token.flags & graphene.TokenFlag.LOGIN_REQUIRED)) return false;
  for (let attempt = 1; ; attempt++) {
    const pin = uri.pinValue ?? (await opts.pin());
    try {
      session.login(pin);
      return true;
    } catch (err) {
      if (ckrOf(err) === "CKR_USER_ALREADY_LOGGED_IN") return true;
      const from = uri.pinValue !== undefined ? "the URI's pin-value" : opts.pinSource;
      const refused = tokenError(
        `token '${token.label.trim()}' refused the PIN from ${from}`,
        err,
        "token-pin-refused",
      );
      const again =
        uri.pinValue === undefined &&
        refused.reason === "token-pin-refused" &&
        opts.pinAgain?.(refused, attempt, finalTry(session, graphene));
      if (!again) throw refused;
    }
  }
}

/** Whether the token says one more wrong PIN locks it (CKF_USER_PIN_FINAL_TRY); false when it cannot be asked. */
function finalTry(session: Session, graphene: Graphene): boolean {
  try {
    return (session.slot.getToken().flags & graphene.TokenFlag.USER_PIN_FINAL_TRY) !== 0;
  } catch {
    return false;
  }
}

/** The first slot whose token matches every token attribute of the URI (`token-missing` when none does). */
function findSlot(module: Module, uri: Pkcs11Uri): Slot {
  let slots: ReturnType<Module["getSlots"]>;
  try {
    slots = module.getSlots(true);
  } catch (err) {
    throw tokenError("listing the module's slots failed", err, "token-missing");
  }
  for (let i = 0; i < slots.length; i++) {
    const slot = slots.items(i);
    if (uri.slotId !== undefined && slot.handle.readUIntLE(0, Math.min(6, slot.handle.length)) !== uri.slotId) continue;
    let token: ReturnType<Slot["getToken"]>;
    try {
      token = slot.getToken();
    } catch {
      continue;
    }
    const { label, serialNumber, manufacturerID, model } = token;
    if (uri.token !== undefined && label.trim() !== uri.token) continue;
    if (uri.serial !== undefined && serialNumber.trim() !== uri.serial) continue;
    if (uri.manufacturer !== undefined && manufacturerID.trim() !== uri.manufacturer) continue;
    if (uri.model !== undefined && model.trim() !== uri.model) continue;
    if (uri.token === undefined && label.trim() === "") continue; // an uninitialized token (SoftHSM's free slot)
    return slot;
  }
  const wanted = [
    uri.token !== undefined && `token=${uri.token}`,
    uri.serial && `serial=${uri.serial}`,
    uri.slotId !== undefined && `slot-id=${uri.slotId}`,
  ]
    .filter(Boolean)
    .join(", ");
  throw new CertRetrieverError(
    `token failed: no token ${wanted ? `matching ${wanted} ` : ""}is present in ${module.libFile}`,
    { step: "token", reason: "token-missing" },
  );
}

/**
 * Serializes a user's runs against one token (whatever their --out): the credentials directory's
 * lock discipline, on a directory per module and token serial under $XDG_RUNTIME_DIR or the temp
 * dir. Runs that do not share it (a systemd unit's private /tmp) are safe all the same: each
 * removes only keys it made itself or that its own stored credentials named.
 */
async function tokenLock(modulePath: string, serial: string, label: string): Promise<() => Promise<void>> {
  const base = process.env.XDG_RUNTIME_DIR || tmpdir();
  const module = await realpath(modulePath).catch(() => modulePath); // one lock however the path is spelt
  const name = createHash("sha256").update(`${module}\0${serial}\0${label}`).digest("hex").slice(0, 16);
  const dir = join(base, `cert-retriever-${process.getuid?.() ?? "user"}`, `token-${name}`);
  await prepareDirectory(dir, "the token's lock directory");
  return acquireLock(dir).catch((err: unknown) => {
    if (err instanceof CertRetrieverError && err.reason === "busy") {
      throw new CertRetrieverError(
        err.message.replace(`is using ${dir}`, `is using token '${label}' (its lock is in ${dir})`),
        { step: "lock", reason: "busy", facts: err.facts },
      );
    }
    throw err;
  });
}
