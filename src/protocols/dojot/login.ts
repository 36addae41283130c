/** dojot's login, the same in both generations: `POST /auth` -> `{jwt}`. */
import type { HttpClient } from "../../transport/http.js";
import type { LoginCapability } from "../types.js";
import type { DojotReplies } from "./replies.js";
import { sessionFromJwt } from "./session.js";

/** The gateway's URL for `path` (the base URL's own path kept, trailing slashes dropped). */
export function gatewayUrl(base: URL, path: string): URL {
  return new URL(base.href.replace(/\/+$/, "") + path);
}

/** Logging in through the gateway at `base`, or taking a token's session. */
export function dojotLogin(http: HttpClient, base: URL, replies: DojotReplies): LoginCapability {
  return {
    authenticate: async (username, password) => {
      const reply = await http.json("authenticate", gatewayUrl(base, "/auth"), {
        method: "POST",
        body: { username, passwd: password },
      });
      if (reply.status === 404) throw replies.noLogin(base, reply);
      return replies.session(reply, username);
    },
    fromToken: sessionFromJwt,
  };
}
