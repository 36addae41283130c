import type { ProtocolHints } from "../types.js";

/** What to do about an EST server's refusals and EST's own rules; `{setting}` names a flag. */
export const EST_HINTS: ProtocolHints = {
  usage: (e) =>
    e.facts.field === "tokenFile"
      ? "leave out {tokenFile}: the enrollment request carries the credentials"
      : e.facts.field === "trustAnchor"
        ? "pass {caFingerprint} sha256:<hex> (the CA's fingerprint, from its operator) or {platformCa} FILE (the CA that signed the EST server's certificate)"
        : undefined,
  deadline: (e) =>
    e.facts.pendingApproval
      ? "the EST server holds the request for approval: have it approved there, or run with a longer {deadline} (a new run sends a new key's CSR)"
      : undefined,
  "client-cert-required": (e) =>
    e.facts.renewing
      ? "the EST server did not take the current certificate: enroll with the bootstrap credentials ({username} and a password, or {clientCert}) and {force}"
      : "the EST server did not take the client certificate: check {clientCert} and {clientKey}, or pass {username} and a password",
  "not-a-dojot-platform": () =>
    "check {platform}: an EST server's URL is https://HOST[:PORT]/.well-known/est, or …/est/LABEL for one of its CAs",
  "reply-malformed": () => "check that {platform} points at an EST server (…/.well-known/est); nothing was written",
  "not-supported": () =>
    "pass {caFingerprint} with the fingerprint of the CA chain this device belongs to (ask the EST server's operator), so that one chain of /cacerts is chosen",
};
