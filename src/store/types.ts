/** Whether a stored key is the URI of a key kept in a PKCS#11 token rather than the key itself. */
export function isKeyUri(key: string): boolean {
  return key.trimStart().startsWith("pkcs11:");
}

/** PEM texts of a device's credentials. */
export interface CredentialPems {
  /** The device key: its PKCS#8 PEM, or the `pkcs11:` URI of a key kept in a token (see {@link isKeyUri}). */
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

/** Where credentials live: PEM files or the OS keychain. */
export interface CredentialStore {
  /** `files` or `keychain`. */
  readonly kind: string;
  /** Where, in words (a directory, a keychain service). */
  readonly location: string;
  /** Where a run lists the token key it makes until credentials naming it are stored (`<out>/<device-id>.key.pending`). */
  readonly keyJournal: string;
  read(): Promise<StoredCredentials>;
  /** Takes the lock and repairs interrupted writes. */
  open(): Promise<OpenStore>;
  /** Replaces the credentials all together or not at all. Call between open() and close(). */
  write(pems: CredentialPems): Promise<void>;
}
