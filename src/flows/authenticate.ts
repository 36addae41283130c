/** The authenticate step: a login (asked again while the platform refuses it and the caller allows), a token's session, or none. */
import { CertRetrieverError } from "../errors.js";
import type { LoginCapability, LoginSource, ProtocolClient, Session } from "../protocols/types.js";

/** A session from a token that `login` wrote, and where it came from (for messages). */
export interface TokenSession {
  jwt: string;
  source?: string;
}

/** Logs in, asking again while the platform refuses the user or password and `retryLogin` allows; returns the session and the user. */
export async function logIn(
  login: Pick<LoginCapability, "authenticate">,
  source: LoginSource,
): Promise<{ session: Session; username: string }> {
  for (let attempt = 1; ; attempt++) {
    const username = typeof source.username === "string" ? source.username : await source.username();
    try {
      const session = await login.authenticate(username, await source.password());
      if (session.jwt) source.onToken?.(session.jwt);
      return { session, username };
    } catch (err) {
      const again =
        err instanceof CertRetrieverError &&
        (err.reason === "auth-refused" || err.reason === "user-unknown") &&
        source.retryLogin?.(err, attempt);
      if (!again) throw err;
    }
  }
}

/** The client's login; a protocol without one (and with sessions) cannot be used so (`not-supported`). */
export function loginOf(client: ProtocolClient): LoginCapability {
  if (client.login) return client.login;
  throw new CertRetrieverError(`authenticate failed: ${client.title} has no login`, {
    step: "authenticate",
    reason: "not-supported",
    facts: { protocol: client.name },
  });
}

/** A login that has neither user nor password: asked for, it says none was given. */
export const NO_LOGIN: LoginSource = {
  username: "",
  password: () =>
    Promise.reject(
      new CertRetrieverError("no password given", { step: "authenticate", reason: "missing-credentials" }),
    ),
};

/**
 * The session of a run: none for a sessionless protocol (the login goes with its requests); the
 * token's, refused if it has expired (before any request); or a new login. Returns a line saying
 * which, for the authenticate step.
 */
export async function openSession(
  client: ProtocolClient,
  source: { login?: LoginSource; token?: TokenSession },
  now: Date,
): Promise<{ session: Session; detail: string }> {
  if (client.sessionless) return { session: {}, detail: client.sessionless.attach(source.login) };
  const login = loginOf(client);
  if (!source.token) {
    const { session, username } = await logIn(login, source.login ?? NO_LOGIN);
    return { session, detail: `logged in as ${username}${session.tenant ? ` (tenant ${session.tenant})` : ""}` };
  }
  const session = login.fromToken(source.token.jwt);
  if (session.expiresAt && session.expiresAt <= now) {
    throw new CertRetrieverError(
      `authenticate failed: the token in ${source.token.source ?? "the token file"} expired at ${session.expiresAt.toISOString()}`,
      {
        step: "authenticate",
        reason: "token-expired",
      },
    );
  }
  return {
    session,
    detail: `using the token from ${source.token.source ?? "login"}${session.tenant ? ` (tenant ${session.tenant})` : ""}`,
  };
}
