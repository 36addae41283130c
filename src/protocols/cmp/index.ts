/** CMP, RFC 9483's Lightweight CMP profile over HTTP: the plug-in. */
import { usageError } from "../../errors.js";
import { refuseToken, requireTrustAnchor } from "../sessionless.js";
import type { ProtocolPlugin } from "../types.js";
import { CMP_HINTS } from "./hints.js";
import { CMP, CMP_TITLE } from "./name.js";

/** A CMP server: no login and no session (each message is protected by the shared secret or signed by a bootstrap certificate), trust anchored explicitly. */
export const cmp: ProtocolPlugin = {
  name: CMP,
  aliases: [],
  title: CMP_TITLE,
  summary: "CMP, RFC 9483 (Lightweight CMP): {platform} http[s]://HOST[:PORT]/PATH (e.g. /pkix/)",
  settings: [
    {
      name: "cmpRequest",
      argument: "ir|p10cr",
      description:
        "CMP: the request sent, ir (CRMF, proof of possession by signature; the default) or p10cr (the PKCS#10 CSR)",
      env: "CMP_REQUEST",
    },
    {
      name: "cmpMac",
      argument: "pbm|pbmac1",
      description:
        "CMP: the MAC protecting requests by the shared secret, pbm (PasswordBasedMac, as OpenSSL 3.0 and EJBCA; the default) or pbmac1 (RFC 9481's PBMAC1: PBKDF2 and HMAC-SHA-256); answers are taken with either",
      env: "CMP_MAC",
    },
  ],
  hints: CMP_HINTS,
  lacks: {
    login: { message: "CMP has no login: each message is protected by the shared secret or a bootstrap certificate" },
    register: { message: "CMP has no request to register a certificate its CA did not issue" },
  },
  /** The bootstrap certificate's key may be a manufacturer's in a token: it signs there. */
  signsWithTokenClientKey: true,
  /** A bootstrap certificate given without a reference signs the first enrollment: no secret is read then. */
  wantsLogin: (given) => given.username || !given.clientCert,
  checkUrl(url) {
    if (url.protocol !== "http:" && url.protocol !== "https:")
      throw usageError(`the CMP server's URL ${url.href} is not http: or https:`, "platform");
  },
  checkSettings: (settings, name) => refuseToken(settings, name, CMP, "CMP"),
  /** Its CA is trusted through a pin, the platform CA certificates or the stored chain; never because it was the first seen. */
  checkTrust: (trust) =>
    requireTrustAnchor(
      trust,
      CMP,
      "a first CMP enrollment needs an explicit trust anchor: the CMP server's CA is not trusted because it is the first one seen",
    ),
  async open(ctx) {
    const { CmpClient } = await import("./client.js");
    const request = ctx.options.cmpRequest ?? "ir";
    if (request !== "ir" && request !== "p10cr")
      throw usageError(`the CMP request '${String(request)}' is neither ir nor p10cr`, "cmpRequest");
    const mac = ctx.options.cmpMac ?? "pbm";
    if (mac !== "pbm" && mac !== "pbmac1")
      throw usageError(`the CMP MAC '${String(mac)}' is neither pbm nor pbmac1`, "cmpMac");
    return new CmpClient({
      url: ctx.url,
      http: ctx.http,
      crypto: ctx.crypto,
      anchors: [
        { pem: ctx.storedCaPem ?? "", from: "the stored CA chain vouched for it" },
        ...(ctx.platformCaPem ?? []).map((pem) => ({ pem, from: "the platform's CA certificates vouched for it" })),
      ],
      pin: ctx.pin,
      request,
      mac,
      bootstrap: ctx.clientCredentials,
      signal: ctx.signal,
    });
  },
};
