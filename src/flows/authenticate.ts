/** The authenticate step: a login (asked again while the platform refuses it and the caller allows), a token's session, or none. */
import { CertRetrieverError } from "../errors.js";
import type { LoginCapability, LoginSource, ProtocolClient, Session } from "../protocols/types.js";
import type { StepRunner } from "./steps.js";

/** A session from a token that `login` wrote, and where it came from (for messages). */
export interface TokenSession {
  jwt: string;
  source?: string;
}

/** A login that succeeded: the session, the user, and the same login once more (the password it read kept for it). */
interface LoggedIn {
  session: Session;
  username: string;
  again: () => Promise<{ session: Session; username: string }>;
}

/** Logs in, asking again while the platform refuses the user or password and `retryLogin` allows; returns the session and the user. */
export async function logIn(login: Pick<LoginCapability, "authenticate">, source: LoginSource): Promise<LoggedIn> {
  for (let attempt = 1; ; attempt++) {
    const username = typeof source.username === "string" ? source.username : await source.username();
    try {
      const password = await source.password();
      const authenticate = async () => {
        const session = await login.authenticate(username, password);
        if (session.jwt) source.onToken?.(session.jwt);
        return { session, username };
      };
      return { ...(await authenticate()), again: authenticate };
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

/** What {@link openSession} opened: the session, the authenticate step's line, a note, and a way to log in again. */
export interface OpenedSession {
  session: Session;
  detail: string;
  /** To say beside the step: the token had expired, so the run logged in instead. */
  note?: string;
  /** A new login, where the run has one: the user and password given beside a token, or those it logged in with. */
  again?: () => Promise<{ session: Session; username: string }>;
}

/**
 * The session of a run: none for a sessionless protocol (the login goes with its requests); a new
 * login; or the token's, checked against this device's clock before any request. A token that has
 * expired is refused (`token-expired`), unless a user and password are given beside it: then the
 * run logs in instead, and says so.
 */
export async function openSession(
  client: ProtocolClient,
  source: { login?: LoginSource; token?: TokenSession },
  now: Date,
): Promise<OpenedSession> {
  if (client.sessionless) return { session: {}, detail: client.sessionless.attach(source.login) };
  const login = loginOf(client);
  if (!source.token) return loggedIn(await logIn(login, source.login ?? NO_LOGIN));
  const session = login.fromToken(source.token.jwt);
  const given = source.login;
  if (expired(session, now)) {
    const why = expiry(source.token, session, now);
    if (!given)
      throw new CertRetrieverError(`authenticate failed: ${why}`, { step: "authenticate", reason: "token-expired" });
    return { ...loggedIn(await logIn(login, given)), note: `${why}: logged in with the user and password instead` };
  }
  return {
    session,
    detail: `using the token from ${source.token.source ?? "login"}${ofTenant(session)}`,
    again: given && (() => logIn(login, given)),
  };
}

/** What a login opened. */
function loggedIn({ session, username, again }: LoggedIn): OpenedSession {
  return { session, detail: `logged in as ${username}${ofTenant(session)}`, again };
}

/** " (tenant T)" where the session names one. */
function ofTenant(session: Session): string {
  return session.tenant ? ` (tenant ${session.tenant})` : "";
}

/** Whether a session's token has expired by `now` (this device's clock). */
function expired(session: Session, now: Date): boolean {
  return session.expiresAt !== undefined && session.expiresAt <= now;
}

/** Says when the token expired, and what this device's clock reads (a wrong clock makes a valid token look expired). */
function expiry(token: TokenSession, session: Session, now: Date): string {
  return `the token in ${token.source ?? "the token file"} expired at ${session.expiresAt?.toISOString()} (this device's clock reads ${now.toISOString()})`;
}

/**
 * The run's session for the steps after authenticate: when the platform answers that its token
 * expired or is no longer accepted (`token-expired`: Kong's 401), and a login is at hand, the run
 * logs in again, once, says so, and makes the refused request again with the new token (Kong
 * refused it before any service saw it, so nothing was done).
 */
export class LiveSession {
  session: Session;
  private again: OpenedSession["again"];

  constructor(
    opened: OpenedSession,
    private readonly note: (message: string) => void,
  ) {
    this.session = opened.session;
    this.again = opened.again;
  }

  /** `call` with the session; after the platform refused its token, once more with a new login's. */
  async use<T>(call: (session: Session) => Promise<T>): Promise<T> {
    try {
      return await call(this.session);
    } catch (err) {
      const again = this.again;
      if (!again || !(err instanceof CertRetrieverError) || err.reason !== "token-expired") throw err;
      this.again = undefined;
      const fresh = await again();
      this.session = fresh.session;
      const said = err.facts.status ? ` (HTTP ${err.facts.status}: ${err.facts.platformMessage ?? ""})` : "";
      this.note(`the platform refused the token at ${err.step}${said}: logged in again as ${fresh.username}`);
      return call(this.session).catch((second: unknown) => {
        throw refusedAgain(second);
      });
    }
  }
}

/** A refusal of the token a new login gave: said as such (logging in again did not help). */
function refusedAgain(err: unknown): unknown {
  if (!(err instanceof CertRetrieverError) || err.reason !== "token-expired") return err;
  return new CertRetrieverError(`${err.message}, after logging in again`, {
    step: err.step,
    reason: err.reason,
    facts: err.facts,
    cause: err,
  });
}

/** The authenticate step of `run`: the session opened (and its note said), kept live for the steps after it. */
export async function authenticate<S extends string>(
  run: StepRunner<S>,
  step: S,
  open: () => Promise<OpenedSession>,
): Promise<LiveSession> {
  const opened = await run.run(step, open, (o) => o.detail);
  if (opened.note) run.note(opened.note);
  return new LiveSession(opened, (message) => run.note(message));
}
