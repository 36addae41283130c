import { CertRetrieverError } from "../errors.js";
import type { Session } from "../protocols/types.js";

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

/** What {@link openSession} needs: a login, or a session from a token (with where it came from). */
export interface SessionSource extends LoginSource {
  session?: Session;
  sessionSource?: string;
}

/**
 * The session of a run: the token's, refused if it has expired (before any request), or a new
 * login. Returns a line saying which, for the authenticate step.
 */
export async function openSession(
  platform: { authenticate(username: string, password: string): Promise<Session> },
  source: SessionSource,
  now: Date,
): Promise<{ session: Session; detail: string }> {
  if (!source.session) {
    const { session, username } = await logIn(platform, source);
    return { session, detail: `logged in as ${username}${session.tenant ? ` (tenant ${session.tenant})` : ""}` };
  }
  const { session } = source;
  if (session.expiresAt && session.expiresAt <= now) {
    throw new CertRetrieverError(`authenticate failed: the token in ${source.sessionSource ?? "the token file"} expired at ${session.expiresAt.toISOString()}`, {
      step: "authenticate",
      reason: "token-expired",
    });
  }
  return { session, detail: `using the token from ${source.sessionSource ?? "login"}${session.tenant ? ` (tenant ${session.tenant})` : ""}` };
}
