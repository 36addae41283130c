/** PEM texts of a device's credentials. */
export interface CredentialPems {
  /** The device key: its PKCS#8 PEM, or the `pkcs11:` URI of a key kept in a token (see keys/pkcs11-uri.ts's isKeyUri). */
  key: string;
  certificatePem: string;
  caPem: string;
  /** The identity profile, as JSON (a ProfileRecord), when one other than generic was used. */
  profileJson?: string;
}

/** What a store holds for a device: the three PEMs if all are there, and which parts are present. */
export interface StoredCredentials {
  pems?: CredentialPems;
  present: Array<"key" | "certificatePem" | "caPem">;
  /** Each part that could be read, whole or not. */
  parts: Partial<Pick<CredentialPems, "key" | "certificatePem" | "caPem">>;
  /** Where each part is, for messages. */
  where: Record<"key" | "certificatePem" | "caPem", string>;
  /** A write that a killed run left unfinished. */
  interrupted?: boolean;
}

/** A store opened for a write: the lock is held, interrupted writes are finished or undone. */
export interface OpenStore {
  notes: string[];
  /** Releases the lock; after a failed run also removes what opening created. */
  close(succeeded: boolean): Promise<void>;
}

/**
 * The points of a write that a store reports to its observer, as they pass: files `staged`,
 * `committed`, `renamed-1`.., `other-kind-removed`; keychain `set-1`... An observer that throws
 * fails the write there (which then puts everything back), as a failing disk would.
 */
export type WritePoint = string;

/** Called at each point of a write (tracing, or a test's injected failure); not read from the environment. */
export type WriteObserver = (point: WritePoint) => void;

/** The files a store keeps beside the credentials, for the flows. */
export interface Sidecars {
  /** Where a run lists the token key it makes until credentials naming it are stored (`<out>/<device-id>.key.pending`). */
  keyJournal: string;
  /** The CA's last good CRL, which `check` keeps and `enroll` reads (`<out>/<ca-name>.crl`). */
  crlCache: string;
  /** The mark `check` leaves when the platform's CA replaced the stored one, for `enroll` to act on (`<out>/<ca-name>.replaced`). */
  caReplacedMark: string;
  /** Written before a CSR is sent, removed once its certificate is stored or refused (`<out>/<device-id>.issue.pending`): a run that finds it knows an earlier one may have been issued a certificate it never stored. */
  issueJournal: string;
  /** When `check` last asked the platform, and the validators of the CA and CRL it holds (`<out>/<device-id>.contact.json`). */
  contactRecord: string;
  /** The settings the device was enrolled with, which later commands use (`<out>/<device-id>.settings.json`). */
  settingsRecord: string;
}

/** Where credentials live: PEM files or the OS keychain. */
export interface CredentialStore {
  /** `files` or `keychain`. */
  readonly kind: string;
  /** Where, in words (a directory, a keychain service). */
  readonly location: string;
  /** The files kept beside the credentials. */
  readonly sidecars: Sidecars;
  read(): Promise<StoredCredentials>;
  /** Takes the lock and repairs interrupted writes. */
  open(): Promise<OpenStore>;
  /** Pre-flight, before any key is made: refuses (a storage error) a store without room for the credentials. */
  preflight?(): Promise<void>;
  /** Replaces the credentials all together or not at all. Call between open() and close(). */
  write(pems: CredentialPems): Promise<void>;
}
