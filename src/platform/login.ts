import { CertRetrieverError } from "../errors.js";
import type { Session } from "./types.js";

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
}

/** Logs in, asking again while the platform refuses the user or password and `retryLogin` allows; returns the session and the user. */
export async function logIn(
  platform: { authenticate(username: string, password: string): Promise<Session> },
  source: LoginSource,
): Promise<{ session: Session; username: string }> {
  for (let attempt = 1; ; attempt++) {
    const username = typeof source.username === "string" ? source.username : await source.username();
    try {
      return { session: await platform.authenticate(username, await source.password()), username };
    } catch (err) {
      const again = err instanceof CertRetrieverError && (err.reason === "auth-refused" || err.reason === "user-unknown") && source.retryLogin?.(err, attempt);
      if (!again) throw err;
    }
  }
}
