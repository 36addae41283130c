/** SCEP (RFC 8894): the plug-in. */
import { usageError } from "../../errors.js";
import { refuseToken, requireTrustAnchor } from "../sessionless.js";
import type { ProtocolPlugin, ProtocolSettingSpec } from "../types.js";
import { SCEP_HINTS } from "./hints.js";
import { SCEP, SCEP_TITLE } from "./name.js";

/** How old a server the run may speak to: `modern` (AES, SHA-256) or `legacy` (also DES, 3DES, SHA-1, MD5). */
const SCEP_CRYPTO: ProtocolSettingSpec = {
  name: "scepCrypto",
  argument: "level",
  description:
    "SCEP: 'modern' (default) speaks only AES and SHA-256; 'legacy' also DES, 3DES, SHA-1 and MD5, for a server that offers nothing better",
  env: "SCEP_CRYPTO",
};

/** Whether the settings allow a legacy server's algorithms; anything but the two levels is a usage error. */
function legacyOf(options: Readonly<Record<string, unknown>>): boolean {
  const level = options.scepCrypto ?? "modern";
  if (level !== "modern" && level !== "legacy")
    throw usageError(`the SCEP crypto level is 'modern' or 'legacy', not '${String(level)}'`, "scepCrypto");
  return level === "legacy";
}

/** A SCEP server: no login and no session (the challenge password goes with the request), trust by a pin or the stored chain. */
export const scep: ProtocolPlugin = {
  name: SCEP,
  aliases: [],
  title: SCEP_TITLE,
  summary: "SCEP, RFC 8894: {platform} http[s]://HOST[:PORT]/PATH, the challenge password by {passwordFile}",
  settings: [SCEP_CRYPTO],
  hints: SCEP_HINTS,
  lacks: {
    login: {
      message: "SCEP (RFC 8894) has no login: the enrollment request carries the challenge password",
      advice: "run 'cert-retriever enroll {api} scep' with {passwordFile} holding the challenge password",
    },
    register: {
      message:
        "SCEP (RFC 8894) has no request to register a certificate its CA did not issue; that needs x509-identity-mgmt (dojot v0.7+)",
    },
  },
  // The challenge password is the password; no user goes with it.
  wantsLogin: () => true,
  checkUrl(url) {
    if (url.protocol !== "http:" && url.protocol !== "https:")
      throw usageError(`a SCEP server's URL is http:// or https://, not ${url.protocol}`, "platform");
  },
  checkSettings: (settings, name) => refuseToken(settings, name, SCEP, "SCEP"),
  /** The CA's certificate travels over plain HTTP as often as not: a pin, the platform's CA (https) or the stored chain must vouch for it. */
  checkTrust: (trust) =>
    requireTrustAnchor(
      trust,
      SCEP,
      "a first SCEP enrollment needs an explicit trust anchor: the SCEP server's CA is not trusted because it is the first one seen",
    ),
  async open(ctx) {
    const legacy = legacyOf(ctx.options);
    const { ScepClient } = await import("./client.js");
    return new ScepClient({
      url: ctx.url,
      http: ctx.http,
      crypto: ctx.crypto,
      caName: ctx.caName,
      pin: ctx.pin,
      storedCaPem: ctx.storedCaPem,
      platformCa: ctx.platformCa,
      legacy,
      signal: ctx.signal,
    });
  },
};
