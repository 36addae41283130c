/**
 * The lab's scripted faults, by name and meaning: the lab (faults.ts) acts on them, and
 * `cert-retriever-lab serve --help` lists them. Kept apart so the help does not load the lab.
 */

/**
 * The lab's routes that faults can hit: dojot's `auth` (`POST /auth`), `ca` (EJBCA-REST's
 * `GET /ca/<name>`, x509-identity-mgmt's `GET /x509/v1/ca`) and `sign` (`POST /sign/<device>/pkcs10`,
 * `POST /x509/v1/certificates`); EST's `est-cacerts` (`/cacerts`) and `est-enroll` (`/simpleenroll`
 * and `/simplereenroll`).
 */
export const FAULT_ROUTES = ["auth", "ca", "sign", "est-cacerts", "est-enroll"] as const;

/**
 * What each fault does to a reply. The kinds from `wrong-ca` on need a certificate and apply to the
 * routes that return one (`ca`, `sign`, `est-cacerts`, `est-enroll`); on EST, `trailing-data` follows
 * the PKCS#7, and `wrong-ca` is another root and issuing CA with the same names. On `sign`, such a
 * fault shapes the reply of a certificate the platform did issue: EJBCA-REST's end entity is then
 * GENERATED and x509-identity-mgmt keeps the certificate's record, as for a reply without a fault.
 */
export const FAULT_DESCRIPTIONS = {
  refuse: "the connection is closed before any reply",
  reset: "headers and half the body, then a reset",
  hang: "no reply at all",
  "500": "HTTP 500",
  "503": "HTTP 503",
  "429": "HTTP 429 with Retry-After: 1",
  garbage: "200 with random bytes",
  truncated: "200 that ends before its Content-Length",
  oversized: "200 with a 2 MiB body",
  "wrong-ca": "a certificate from another CA",
  "other-key": "sign, est-enroll: a certificate for a key the device never made",
  expired: "sign, est-enroll: the device's certificate, expired",
  "not-yet-valid": "sign, est-enroll: the device's certificate, valid from tomorrow",
  "skewed-clock": "a Date header 3 days ahead, and a certificate valid from 2 days ahead",
  "trailing-data": "the certificate's DER (EST: the PKCS#7's) followed by bytes that are not part of it",
  "critical-extension": "sign, est-enroll: the certificate carries a critical extension no TLS stack knows",
  "reply-lost":
    "sign: the certificate is issued (and counted: EJBCA-REST's end entity is GENERATED), then the connection is closed before any reply",
  "malformed-pkcs7": "est: 200 with the base64 of a PKCS#7 cut off halfway",
  "wrapped-base64":
    "est: the base64 body in 64-character CRLF lines, as MIME writes it (legal: RFC 8951 3.1 has receivers ignore white space)",
} as const;

/** Every fault kind, in the order above. */
export const FAULT_KINDS = Object.keys(FAULT_DESCRIPTIONS) as Array<keyof typeof FAULT_DESCRIPTIONS>;
