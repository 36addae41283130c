import type { ProtocolHints } from "../types.js";

/** What to do about a CMP server's refusals and CMP's own rules; `{setting}` names a flag. */
export const CMP_HINTS: ProtocolHints = {
  usage: (e) =>
    e.facts.field === "tokenFile"
      ? "leave out {tokenFile}: each CMP message carries its protection"
      : e.facts.field === "trustAnchor"
        ? "pass {caFingerprint} sha256:<hex> (the CA's fingerprint, from its operator) or {platformCa} FILE (the CA certificate)"
        : e.facts.field === "cmpRequest"
          ? "pass {cmpRequest} ir (the default) or p10cr"
          : e.facts.field === "cmpMac"
            ? "pass {cmpMac} pbm (the default) or pbmac1"
            : undefined,
  "auth-refused": (e) =>
    e.facts.signedBy === "bootstrap"
      ? "the CMP server does not take the bootstrap certificate ({clientCert}): ask its operator to trust the CA that issued it, or enroll with the shared secret ({username}, {passwordFile})"
      : e.facts.signedBy === "current"
        ? "the CMP server did not take the current certificate: enroll again with the shared secret or the bootstrap certificate, and {force}"
        : "check the shared secret ({passwordFile}) and its reference ({username}) with the CMP server's operator",
  "missing-credentials": () =>
    "give the shared secret with {passwordFile} (or stdin, the environment, a systemd credential) and its reference with {username}, or a bootstrap certificate with {clientCert} and {clientKey}",
  "ca-unknown": () =>
    "the CMP server does not send its CA certificates: pass {platformCa} FILE with the CA certificate (and {caFingerprint} to pin it)",
  "csr-refused": (e) =>
    e.facts.signedBy === "bootstrap"
      ? "the CMP server rejected the request signed by the bootstrap certificate ({clientCert}): its PKIStatusInfo above says why (e.g. no trusted sender certificate: its CA is not the server's); ask its operator"
      : "the CMP server rejected the request: its PKIStatusInfo above says why; ask its operator",
  deadline: (e) =>
    e.facts.pendingApproval
      ? "the CMP server has not issued the certificate yet: run with a longer {deadline} (a new run sends a new request)"
      : undefined,
  "cert-invalid": (e) =>
    e.step === "submit-csr"
      ? "the CMP server issued a certificate this device does not take (it said so in its certConf): ask the server's operator; nothing was written"
      : undefined,
  "reply-malformed": () => "check that {platform} points at a CMP server's path (e.g. http://HOST:PORT/pkix/)",
};
