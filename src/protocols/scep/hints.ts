import type { ProtocolHints } from "../types.js";

/** What to do about a SCEP server's refusals and SCEP's own rules; `{setting}` names a flag. */
export const SCEP_HINTS: ProtocolHints = {
  usage: (e) =>
    e.facts.field === "tokenFile"
      ? "leave out {tokenFile}: the enrollment request carries the challenge password"
      : e.facts.field === "trustAnchor"
        ? "pass {caFingerprint} sha256:<hex> (the SCEP CA's fingerprint, from its operator; SCEP often runs over plain http, where nothing else vouches for the CA)"
        : undefined,
  "csr-refused": (e) =>
    e.facts.renewing
      ? "pass the challenge password ({passwordFile}): some SCEP servers (micromdm) check it on renewals too; or enroll anew with it and {force}"
      : "check the challenge password ({passwordFile}): SCEP servers answer badRequest to a wrong or used one; ask the SCEP server's operator for a fresh one",
  "key-refused": () => "pass {keyType} rsa-2048 (or rsa-3072, rsa-4096): SCEP needs an RSA key",
  "not-supported": () =>
    "SCEP decrypts its reply with the request's key: use a software key (leave out {key}) for SCEP, or another protocol for a key in a token",
  "pin-mismatch": () =>
    "if the SCEP server's CA changed, pass {caFingerprint} with the new CA's fingerprint (from its operator) and {force}",
  deadline: (e) =>
    e.facts.pendingApproval
      ? "the SCEP server holds the request for approval: have it approved there, or run with a longer {deadline}"
      : undefined,
  "not-a-dojot-platform": () =>
    "check {platform}: a SCEP server's URL includes its path, e.g. http://HOST:PORT/scep (micromdm), …/certsrv/mscep/mscep.dll (NDES), …/ejbca/publicweb/apply/scep/pkiclient.exe (EJBCA)",
  "reply-malformed": () => "check that {platform} points at a SCEP server (its URL with its path); nothing was written",
  "scep-weak-crypto": () =>
    "have the SCEP server offer AES and SHA-256; if it cannot be upgraded, pass {scepCrypto} legacy to speak its DES or 3DES and SHA-1 or MD5",
};
