/**
 * dojot's replies, shared by its two generations (EJBCA-REST and x509-identity-mgmt behind Kong):
 * what a refused login means, what a refusal looks like, and what is not dojot at all. Not a
 * plug-in: each dojot plug-in makes its own, so that its errors carry its name.
 */
import { CertRetrieverError, type Reason, type Step } from "../../errors.js";
import { type HttpReply, jsonObject } from "../../transport/http.js";
import type { Session } from "../types.js";
import { platformSays, replyFacts } from "./says.js";
import { JWT_FORM, sessionFromJwt } from "./session.js";

/** What Kong's jwt plugin says of a token it will not take (kong 0.11 `kong/plugins/jwt/handler.lua`). */
const KONG_TOKEN_REFUSALS =
  /^(Invalid signature|No credentials found for given 'iss'|Invalid algorithm|No mandatory 'iss' in claims)$/;

/** The errors of one dojot protocol, each carrying its name (`facts.protocol`). */
export class DojotReplies {
  constructor(readonly protocol: string) {}

  /** A reply's facts, with the protocol's name. */
  facts(reply: HttpReply): { status: number; platformMessage: string; protocol: string } {
    return { ...replyFacts(reply), protocol: this.protocol };
  }

  /** The session from a `POST /auth` reply, or the error that explains it. */
  session(reply: HttpReply, username: string): Session {
    if (reply.status !== 200) throw this.authError(reply, username);
    this.requireJson("authenticate", reply);
    const jwt = jsonObject(reply)?.jwt;
    if (typeof jwt !== "string" || !JWT_FORM.test(jwt))
      throw this.malformed("authenticate", reply, "a JSON object with a `jwt` token");
    return sessionFromJwt(jwt);
  }

  /** The error for a refused `POST /auth` (the same service in both generations). */
  authError(reply: HttpReply, username: string): CertRetrieverError {
    const says = platformSays(reply);
    if ((reply.status === 401 || reply.status === 403) && fromDojot(reply, "authenticate")) {
      const reason: Reason = /inactive/i.test(says)
        ? "user-inactive"
        : /AuthenticationError/i.test(says)
          ? "user-unknown"
          : "auth-refused";
      const what = {
        "user-inactive": `user '${username}' is inactive`,
        "user-unknown": `the platform does not know user '${username}'`,
        "auth-refused": `the password for user '${username}' was refused`,
      }[reason as "auth-refused"];
      return new CertRetrieverError(`authenticate failed: ${what} (HTTP ${reply.status}: ${says})`, {
        step: "authenticate",
        reason,
        facts: this.facts(reply),
      });
    }
    return this.replyError("authenticate", reply, "logging in");
  }

  /**
   * The error for a non-2xx reply at `step`: what does not look like dojot says so; a refused token
   * or a missing permission are named; the rest is `reason`.
   */
  replyError(step: Step, reply: HttpReply, doing: string, reason: Reason = "platform-error"): CertRetrieverError {
    if (!fromDojot(reply, step)) return this.notDojot(step, reply);
    const message = `${step} failed: ${doing}: HTTP ${reply.status}: ${platformSays(reply)}`;
    if (step !== "authenticate" && (reply.status === 401 || reply.status === 403)) {
      return new CertRetrieverError(message, {
        step,
        // Kong 0.x's jwt plugin refuses a token it cannot verify with 403 (`handler.lua`, kong 0.11:
        // "Invalid signature", "No credentials found for given 'iss'", "Invalid algorithm"): a
        // rejected token, not a missing permission.
        reason:
          reply.status === 401 || KONG_TOKEN_REFUSALS.test(platformSays(reply)) ? "token-expired" : "permission-denied",
        facts: this.facts(reply),
      });
    }
    return new CertRetrieverError(message, { step, reason, facts: this.facts(reply) });
  }

  /** A successful reply must say it is JSON: an HTML page with a 200 (a portal, a proxy's login page) is not the API. */
  requireJson(step: Step, reply: HttpReply): void {
    const type = reply.contentType.split(";")[0]!.trim().toLowerCase();
    if (type !== "application/json" && !type.endsWith("+json")) {
      if (!fromDojot(reply, step)) throw this.notDojot(step, reply);
      throw this.malformed(
        step,
        reply,
        `a JSON reply (Content-Type application/json), not ${type ? `'${type}'` : "one without a Content-Type"}`,
      );
    }
  }

  /** A reply that does not have the shape the API promises. */
  malformed(step: Step, reply: HttpReply, expected: string): CertRetrieverError {
    return new CertRetrieverError(
      `${step} failed: the platform's reply (HTTP ${reply.status}) is not what the API promises: expected ${expected}, got ${platformSays(reply)}`,
      {
        step,
        reason: "reply-malformed",
        facts: this.facts(reply),
      },
    );
  }

  /**
   * The error for a 404 at the login, `POST <base>/auth`. dojot's gateway routes `/auth` at the
   * root of its port (`kong.config.sh`, dojot/docker-compose v0.4.3 and v0.8.1) and everything
   * else under `/` to its GUI, a stock nginx whose answer for a missing file is an HTML 404
   * (dojot/gui v0.4.3 Dockerfile: nginx:1.15.7-alpine); a Kong without that route answers its own
   * JSON 404. Under a `base` with a path, either says the path is wrong; at the root, that this is
   * not dojot's gateway (or its routes are not set up).
   */
  noLogin(base: URL, reply: HttpReply): CertRetrieverError {
    const path = base.pathname.replace(/\/+$/, "");
    if (!path) return this.notDojot("authenticate", reply);
    return new CertRetrieverError(
      `authenticate failed: ${reply.request ?? "POST /auth"} answered HTTP 404 (${platformSays(reply)}): the path '${path}' of the platform URL is wrong; dojot's gateway has its login at the root, e.g. ${base.origin}`,
      { step: "authenticate", reason: "url-path-wrong", facts: { ...this.facts(reply), host: base.host } },
    );
  }

  /** The error for a reply from something that is not a dojot gateway. */
  notDojot(step: Step, reply: HttpReply): CertRetrieverError {
    const asked = reply.request ?? "the request";
    return new CertRetrieverError(
      `${step} failed: this does not look like a dojot gateway: ${asked} answered HTTP ${reply.status} with ${platformSays(reply)}`,
      {
        step,
        reason: "not-a-dojot-platform",
        facts: this.facts(reply),
      },
    );
  }
}

/**
 * Whether a reply could come from dojot at `step`: its gateway and services answer JSON, and a
 * route they lack is Kong's JSON 404. A 404, 405 or 501 that is not JSON is another server (a web
 * server, a portal); so is any reply to the login below 500 that is not JSON (dojot's auth service
 * answers `{message, status}`, and nothing guards /auth in front of it: an HTML 403 is a firewall
 * or a web server, not a wrong password). A service's own crash (a Flask 500 page) is still dojot.
 */
function fromDojot(reply: HttpReply, step: Step): boolean {
  if (jsonObject(reply) !== undefined) return true;
  if (step === "authenticate" && reply.status < 500) return false;
  return ![404, 405, 501].includes(reply.status);
}
