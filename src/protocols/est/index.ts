/** EST (RFC 7030): the plug-in. */
import { refuseFirstCaSeen, refuseToken } from "../sessionless-checks.js";
import type { ProtocolPlugin } from "../types.js";
import { EST_HINTS } from "./hints.js";
import { EST, EST_TITLE } from "./name.js";
import { estBaseUrl } from "./url.js";

/** An EST server: no login and no session (the credentials go with each request), trust anchored explicitly, re-enrollment by the current certificate. */
export const est: ProtocolPlugin = {
  name: EST,
  aliases: [],
  title: EST_TITLE,
  summary: "EST, RFC 7030: {platform} https://HOST[:PORT][/.well-known/est[/LABEL]]",
  hints: EST_HINTS,
  lacks: {
    login: {
      message: "EST (RFC 7030) has no login: each enrollment request carries its own credentials",
      advice: "run 'cert-retriever enroll {api} est' with {username} and a password, or {clientCert}",
    },
    register: {
      message:
        "EST (RFC 7030) has no request to register a certificate its CA did not issue; that needs x509-identity-mgmt (dojot v0.7+)",
    },
  },
  // A bootstrap client certificate may authenticate alone: without a user, no HTTP Basic.
  wantsLogin: (given) => given.username || !given.clientCert,
  checkUrl: (url) => void estBaseUrl(url),
  checkSettings: (settings, name) => refuseToken(settings, name, EST, "EST"),
  /** RFC 7030 §4.1.1: the stored CA chain, a pin or the platform's CA vouches for the server; never the first CA seen. */
  checkTrust: (trust) =>
    refuseFirstCaSeen(
      trust,
      EST,
      "a first EST enrollment needs an explicit trust anchor (RFC 7030 §4.1.1): the EST server's CA is not trusted because it is the first one seen",
    ),
  async open(ctx) {
    const [{ EstClient }, { explicitAnchors }] = await Promise.all([import("./client.js"), import("./cacerts.js")]);
    return new EstClient({
      baseUrl: estBaseUrl(ctx.url),
      http: ctx.http,
      anchors: explicitAnchors(ctx.storedCaPem, ctx.pin),
      pin: ctx.pin,
      platformCa: ctx.platformCa,
      crypto: ctx.crypto,
      clientCert: ctx.clientCert,
      signal: ctx.signal,
    });
  },
};
