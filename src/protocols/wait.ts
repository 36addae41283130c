/** A protocol's wait between requests (a server that holds a request), told to the run's observer and ended by an interrupt. */
import { setTimeout as sleep } from "node:timers/promises";
import { CertRetrieverError } from "../errors.js";
import type { HttpClient, WaitInfo } from "../transport/http.js";

/** Waits `ms` as `wait` says, or throws the interrupt's reason (an `interrupted` error at `wait.step`). */
export async function waitBetweenRequests(
  http: HttpClient,
  wait: Omit<WaitInfo, "until">,
  ms: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  const waited = http.waiting({ ...wait, until: Date.now() + ms });
  await sleep(ms, undefined, { signal })
    .catch(() => {
      throw signal?.reason instanceof CertRetrieverError
        ? signal.reason
        : new CertRetrieverError(`${wait.step} failed: interrupted`, { step: wait.step, reason: "interrupted" });
    })
    .finally(waited);
}
