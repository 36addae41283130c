import { join, resolve } from "node:path";
import { CertRetrieverError, describeCause } from "../errors.js";
import { acquireLock } from "../fs/lock.js";
import { checkDirectory, prepareDirectory, removeCreatedDirectories } from "../fs/safe-dir.js";
import type {
  CredentialPems,
  CredentialStore,
  OpenStore,
  Sidecars,
  StoredCredentials,
  WriteObserver,
} from "./types.js";

/** The keychain service under which every entry is kept. */
export const KEYCHAIN_SERVICE = "cert-retriever";

/** The keytar-shaped calls this store needs. */
interface Keytar {
  getPassword(service: string, account: string): Promise<string | null>;
  setPassword(service: string, account: string, password: string): Promise<void>;
  deletePassword(service: string, account: string): Promise<boolean>;
}

/**
 * The keytar API of @napi-rs/keyring, each entry pinned to the Secret Service on Linux:
 * `@napi-rs/keyring/keytar` takes no options and would fall back silently to the kernel keyring
 * (lost at reboot) when no Secret Service runs. Pinned, a missing service is an error.
 */
async function keytar(): Promise<Keytar> {
  const { AsyncEntry } = await import("@napi-rs/keyring");
  const entry = (service: string, account: string) =>
    new AsyncEntry(service, account, { linux: { store: "secret-service" } });
  return {
    getPassword: (s, a) => entry(s, a).getPassword(),
    setPassword: (s, a, p) => entry(s, a).setPassword(p),
    deletePassword: (s, a) => entry(s, a).deletePassword(),
  };
}

const PARTS = ["key", "certificatePem", "caPem"] as const;

/**
 * Credentials in the OS keychain (Secret Service on Linux, Keychain on macOS, Credential Manager
 * on Windows): service `cert-retriever`, accounts `<device>/key`, `<device>/certificate` and
 * `<device>/ca/<ca-name>`. The lock file stays in `lockDir`.
 */
export class KeychainStore implements CredentialStore {
  readonly kind = "keychain";
  readonly accounts: Record<(typeof PARTS)[number], string>;

  readonly sidecars: Sidecars;

  /** `lockDir` holds the lock and the sidecar files; `observer` sees each point of a write. */
  constructor(
    readonly deviceId: string,
    caName: string,
    private readonly lockDir: string,
    private readonly options: { observer?: WriteObserver } = {},
  ) {
    this.accounts = {
      key: `${deviceId}/key`,
      certificatePem: `${deviceId}/certificate`,
      caPem: `${deviceId}/ca/${caName}`,
    };
    this.sidecars = {
      keyJournal: join(resolve(lockDir), `${deviceId}.key.pending`),
      crlCache: join(lockDir, `${caName}.crl`),
      caReplacedMark: join(lockDir, `${caName}.replaced`),
      settingsRecord: join(resolve(lockDir), `${deviceId}.settings.json`),
      issueJournal: join(resolve(lockDir), `${deviceId}.issue.pending`),
      contactRecord: join(resolve(lockDir), `${deviceId}.contact.json`),
    };
  }

  get location(): string {
    return `the OS keychain (service ${KEYCHAIN_SERVICE}, accounts ${this.deviceId}/…)`;
  }

  async read(): Promise<StoredCredentials> {
    await checkDirectory(this.lockDir); // the CRL and the CA mark are read from there
    const kt = await this.keytar();
    const values = await Promise.all(
      PARTS.map((p) => this.call(() => kt.getPassword(KEYCHAIN_SERVICE, this.accounts[p]), "read")),
    );
    const [key, certificatePem, caPem] = values.map((v) => v ?? undefined);
    const present = PARTS.filter((_, i) => values[i] !== null);
    const where = Object.fromEntries(
      PARTS.map((p) => [p, `keychain entry ${KEYCHAIN_SERVICE}/${this.accounts[p]}`]),
    ) as StoredCredentials["where"];
    const profileJson =
      (await this.call(() => kt.getPassword(KEYCHAIN_SERVICE, `${this.deviceId}/profile`), "read")) ?? undefined;
    return {
      pems: key && certificatePem && caPem ? { key, certificatePem, caPem, profileJson } : undefined,
      present,
      parts: { key, certificatePem, caPem },
      where,
    };
  }

  async open(): Promise<OpenStore> {
    const createdDir = await prepareDirectory(this.lockDir);
    const release = await acquireLock(this.lockDir).catch(async (err: unknown) => {
      await removeCreatedDirectories(createdDir);
      throw err;
    });
    return {
      notes: [],
      close: async () => {
        await release();
        await removeCreatedDirectories(createdDir); // only the lock lived there
      },
    };
  }

  /** Sets the three entries; if one fails, every entry is put back as it was. */
  async write(pems: CredentialPems): Promise<void> {
    const kt = await this.keytar();
    const previous = await Promise.all(
      PARTS.map((p) => this.call(() => kt.getPassword(KEYCHAIN_SERVICE, this.accounts[p]), "read")),
    );
    const done: number[] = [];
    try {
      for (const [i, part] of PARTS.entries()) {
        await kt.setPassword(KEYCHAIN_SERVICE, this.accounts[part], pems[part]);
        done.push(i);
        this.options.observer?.(`set-${i + 1}`);
      }
      if (pems.profileJson !== undefined)
        await kt.setPassword(KEYCHAIN_SERVICE, `${this.deviceId}/profile`, pems.profileJson);
      else await kt.deletePassword(KEYCHAIN_SERVICE, `${this.deviceId}/profile`).catch(() => false);
    } catch (err) {
      for (const i of done) {
        const old = previous[i];
        const account = this.accounts[PARTS[i]!];
        await (old === null || old === undefined
          ? kt.deletePassword(KEYCHAIN_SERVICE, account)
          : kt.setPassword(KEYCHAIN_SERVICE, account, old)
        ).catch(() => undefined);
      }
      throw keychainError(
        `writing to the keychain failed: ${describeCause(err)}; the previous entries are unchanged`,
        err,
      );
    }
  }

  private async keytar(): Promise<Keytar> {
    try {
      return await keytar();
    } catch (err) {
      if (/Cannot find (package|module) '@napi-rs\/keyring/.test(describeCause(err))) {
        throw new CertRetrieverError(
          "store failed: this installation has no keychain addon (@napi-rs/keyring), which the single-file build does not contain",
          {
            step: "store",
            reason: "keychain-addon-missing",
            cause: err,
          },
        );
      }
      throw keychainError(`the keychain module cannot be loaded: ${describeCause(err)}`, err);
    }
  }

  private async call<T>(work: () => Promise<T>, doing: string): Promise<T> {
    try {
      return await work();
    } catch (err) {
      throw keychainError(`cannot ${doing} the OS keychain: ${describeCause(err)}`, err);
    }
  }
}

function keychainError(message: string, cause: unknown): CertRetrieverError {
  return new CertRetrieverError(`store failed: ${message}`, { step: "store", reason: "keychain-unavailable", cause });
}
