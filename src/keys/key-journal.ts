import { readFile, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import { describeCause } from "../errors.js";
import { replaceFile, storageError, syncDirectory } from "../fs/safe-dir.js";

/**
 * The keys a run made in a token for a device and has not yet stored credentials for, one
 * `pkcs11:` URI a line, in `<out>/<device-id>.key.pending` (0600). It is what makes a token key
 * cert-retriever's to remove: the next run removes a key listed here that no stored credentials
 * name (what a killed run left), and nothing else is ever removed but the key the stored
 * credentials named before a new one replaced them.
 */
export async function readKeyJournal(path: string): Promise<string[]> {
  try {
    return (await readFile(path, "utf8")).split("\n").filter((line) => line.startsWith("pkcs11:"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw storageError(`cannot read ${path}: ${describeCause(err)}`, err, path);
  }
}

/** Replaces the journal with `records` (staged, fsynced, renamed), or removes it when there are none. */
export async function writeKeyJournal(path: string, records: string[]): Promise<void> {
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
