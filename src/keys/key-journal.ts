import { unlink } from "node:fs/promises";
import { dirname } from "node:path";
import { describeCause } from "../errors.js";
import { readTrustedFile, replaceFile, storageError, syncDirectory } from "../fs/safe-dir.js";
import type { KeyHandle, KeyTransaction } from "./key-store.js";
import type { KeyType } from "./key-types.js";
import { describeKey, isKept, sameKey } from "./pkcs11-uri.js";

/**
 * The keys a run made in a token for a device and has not yet stored credentials for, one
 * `pkcs11:` URI a line, in `<out>/<device-id>.key.pending` (0600). It is what makes a token key
 * cert-retriever's to remove: the next run removes a key listed here that no stored credentials
 * name (what a killed run left), and nothing else is ever removed but the key the stored
 * credentials named before a new one replaced them.
 */
async function readKeyJournal(path: string): Promise<string[]> {
  // It names keys to remove from the token: only a journal root or we could have written counts.
  const text = (await readTrustedFile(path)) ?? "";
  return text.split("\n").filter((line) => line.startsWith("pkcs11:"));
}

/** Replaces the journal with `records` (staged, fsynced, renamed), or removes it when there are none. */
async function writeKeyJournal(path: string, records: string[]): Promise<void> {
  try {
    if (records.length === 0) {
      await unlink(path).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "ENOENT") throw err;
      });
      await syncDirectory(dirname(path));
    } else {
      await replaceFile(path, `${records.join("\n")}\n`, 0o600);
    }
  } catch (err) {
    throw storageError(`cannot write ${path}: ${describeCause(err)}`, err, path);
  }
}

/** What a token transaction needs of its store. */
export interface TokenKeys {
  readonly location: string;
  generate(type: KeyType, deviceId: string): Promise<KeyHandle>;
  /**
   * Removes the key a record names (and its certificate object), which cert-retriever made.
   * `elsewhere`: the record names another token than this store's, which is left as it is.
   */
  remove(record: string): Promise<"removed" | "absent" | "elsewhere">;
}

/**
 * A token store's transaction: the journal lists the key this run makes until credentials naming
 * it are stored, so that the next run removes what a killed one left; keys listed for another
 * token stay listed until a run with that token removes them.
 */
export class TokenKeyTransaction implements KeyTransaction {
  readonly notes: string[] = [];
  /** Keys listed by an earlier run that are in another token than this run's: they stay listed. */
  private readonly elsewhere: string[] = [];
  /** The key this run made, until its credentials are stored. */
  private made: string | undefined;

  private constructor(
    private readonly keys: TokenKeys,
    private readonly journal: string,
    private readonly stored: string | undefined,
  ) {}

  /** Opens the transaction: the keys an earlier run listed and no stored credentials name go. */
  static async begin(keys: TokenKeys, journal: string, stored: string | undefined): Promise<TokenKeyTransaction> {
    const tx = new TokenKeyTransaction(keys, journal, stored);
    const left = (await readKeyJournal(journal)).filter((record) => !(stored && sameKey(record, stored)));
    for (const record of left) {
      if ((await tx.remove(record, "an earlier run made it and stored no credentials with it", tx.notes)) === "kept")
        tx.elsewhere.push(record);
    }
    await writeKeyJournal(journal, tx.elsewhere);
    return tx;
  }

  async generate(type: KeyType, deviceId: string): Promise<KeyHandle> {
    const made = await this.keys.generate(type, deviceId);
    const record = await made.record();
    // A key that was there already (--key with id=) is not this run's: never listed, never removed.
    if (isKept(record)) return made;
    this.made = record;
    await writeKeyJournal(this.journal, [...this.elsewhere, this.made]);
    return made;
  }

  async staging(newRecord: string): Promise<void> {
    if (this.stored && !sameKey(this.stored, newRecord))
      await writeKeyJournal(
        this.journal,
        [...this.elsewhere, newRecord, this.stored].filter((r) => !isKept(r)),
      );
  }

  async commit(newRecord: string): Promise<string[]> {
    this.made = undefined; // stored: from here on, nothing removes it
    const notes: string[] = [];
    // The key the new credentials replaced is cert-retriever's (it stored it): it goes.
    const replaced = this.stored && !sameKey(this.stored, newRecord) && !isKept(this.stored) ? this.stored : undefined;
    const kept =
      replaced && (await this.remove(replaced, "the new key replaces it", notes)) === "kept" ? [replaced] : [];
    // A stale entry names the stored key, which is never removed.
    await writeKeyJournal(this.journal, [...this.elsewhere, ...kept]).catch(() => undefined);
    return notes;
  }

  async rollback(): Promise<string[]> {
    const notes: string[] = [];
    const made = this.made;
    this.made = undefined;
    if (made && (await this.remove(made, "this run made it and failed", notes)) === "done")
      await writeKeyJournal(this.journal, this.elsewhere).catch(() => undefined);
    return notes;
  }

  /** Removes a key cert-retriever made, saying why; a failure is a note (the key stays listed, for the next run). */
  private async remove(record: string, why: string, notes: string[]): Promise<"done" | "kept"> {
    try {
      const outcome = await this.keys.remove(record);
      if (outcome === "removed") notes.push(`removed ${describeKey(record)}: ${why}`);
      if (outcome === "elsewhere")
        notes.push(
          `${describeKey(record)} is not in ${this.keys.location}, so it stays (${why}); a run with that token removes it`,
        );
      return outcome === "elsewhere" ? "kept" : "done";
    } catch (err) {
      notes.push(`could not remove ${describeKey(record)} (${describeCause(err)}); the next run tries again`);
      return "kept";
    }
  }
}
