/** The stored credentials as a command that only reads them needs them: whole, and settled. */
import { CertRetrieverError, type Step } from "../errors.js";
import type { CredentialPems, CredentialStore, StoredCredentials } from "../store/types.js";

/**
 * The complete credentials of `deviceId` in `store`. None, half of them, or a write left
 * unfinished (which credentials are stored is then not settled) is `not-enrolled`, said as a
 * failure of `step` (status, verify, export): enrolling again is what mends it.
 */
export async function completeCredentials(
  store: CredentialStore,
  deviceId: string,
  step: Step,
): Promise<StoredCredentials & { pems: CredentialPems }> {
  const stored = await store.read();
  const fail = (message: string) =>
    new CertRetrieverError(`${step} failed: ${message}`, { step, reason: "not-enrolled" });
  if (stored.interrupted)
    throw fail(`a write to ${store.location} was interrupted, so which credentials are stored is not settled`);
  if (!stored.pems) throw fail(`no complete credentials for '${deviceId}' in ${store.location}`);
  return stored as StoredCredentials & { pems: CredentialPems };
}
