import type { KeyType } from "../keys/key-types.js";
import type { LoginSource } from "../flows/authenticate.js";

/** A platform session: the JWT (memory only) and what it says about the caller. */
export interface Session {
  jwt: string;
  /** The tenant (`service` claim). */
  tenant?: string;
  /** When the token expires (`exp` claim), if it says. */
  expiresAt?: Date;
}

/** The CA certificate as the platform delivered it. */
export interface FetchedCa {
  /** The CA that issues device certificates. */
  der: Uint8Array;
  /** Its issuers, in order up to the root, where the platform sends them (EST's /cacerts). */
  chain?: Uint8Array[];
  /** What vouched for the server that sent it, when no pin is needed for that (EST's explicit trust anchors). */
  vouchedBy?: string;
}


/** What the platform needs to sign a device's certificate. */
export interface SignRequest {
  deviceId: string;
  /** The CSR, DER-encoded. */
  csrDer: Uint8Array;
  /**
   * A renewal's current credentials (certificate PEM, key PEM), where the platform authenticates
   * a renewal with them (EST's /simplereenroll over mutual TLS).
   */
  current?: { certificatePem: string; keyPem: string };
}

/** The issued certificate, DER-encoded, as the platform delivered it. */
export interface Issued {
  der: Uint8Array;
  /** The platform's own name for it (x509-identity-mgmt: the SHA-256 fingerprint it gave). */
  fingerprint?: string;
}

/**
 * What the enrollment pipeline needs from a platform. It knows nothing of the CLI; each platform
 * API (dojot EJBCA-REST, later x509-identity-mgmt) is one implementation.
 */
export interface PlatformClient {
  /** Logs in and returns the session. */
  authenticate(username: string, password: string): Promise<Session>;
  /** A platform without sessions (EST): takes the login to send with its requests, read only when one needs it, instead of logging in. */
  signIn?(source: LoginSource): Promise<{ session: Session; detail: string }>;
  /** Fetches the certificate of the CA that issues device certificates. */
  fetchCa(session: Session): Promise<FetchedCa>;
  /** Submits a CSR and returns the issued certificate. */
  submitCsr(session: Session, req: SignRequest): Promise<Issued>;
  /** Which API this is (known after fetchCa for an auto-detecting client). */
  api(): PlatformApi;
  /** After fetchCa, before any key is made: refuses (throws) a device this platform cannot enroll. */
  prepare?(session: Session, deviceId: string): Promise<void>;
  /**
   * After validation, before anything is written: ties the certificate to the device where the
   * platform needs it.
   */
  bind?(session: Session, issued: Issued, deviceId: string): Promise<Binding>;
  /** The issuing CA's latest CRL, DER (after fetchCa). */
  fetchCrl?(session: Session): Promise<Uint8Array>;
  /** After fetchCa, once the chain is checked (pin, signatures): the platform may trust it for its own TLS from then on (EST). */
  trustCa?(chain: Uint8Array[]): void;
  /** After prepare: what the platform asks of the CSR (EST's /csrattrs), and notes on what cannot be honoured. */
  csrAttributes?(): { keyType?: KeyType; notes: string[] };
  /** Removes a certificate the platform issued, which revokes it (after fetchCa; x509-identity-mgmt only). */
  revoke?(session: Session, fingerprint: string): Promise<"revoked" | "absent" | "not-supported">;
}

/** What the bind step did: whether the platform now ties the certificate to the device, and a line saying so. */
export interface Binding {
  bound: boolean;
  detail: string;
}

/** The platform APIs cert-retriever speaks. */
export type PlatformApi = "dojot-legacy" | "dojot" | "est";

/** What each API expects of a device: the key it prefers, the CNs it issues, (without a bind step) why none is needed, and whether a renewal is authenticated by the current credentials. */
export const API_TRAITS: Record<PlatformApi, { title: string; keyType: "rsa-2048" | "ec-p256"; commonNames(deviceId: string, tenant?: string): string[]; unbound?: string; renewsWithCurrent?: boolean }> = {
  // EJBCA-REST: the subject comes from the end entity, CN = device id; CFREE takes RSA only.
  "dojot-legacy": { title: "EJBCA-REST (dojot <= v0.4)", keyType: "rsa-2048", commonNames: (id) => [id], unbound: "issues to the device's own end entity" },
  // x509-identity-mgmt: v0.5-v0.6 prefix the tenant; v0.7+ pass the CSR's CN through.
  dojot: { title: "x509-identity-mgmt (dojot >= v0.5)", keyType: "ec-p256", commonNames: (id, tenant) => (tenant ? [id, `${tenant}:${id}`] : [id]) },
  // EST: the CA names the certificate after the CSR's subject (the server may say otherwise in /csrattrs).
  est: { title: "EST (RFC 7030)", keyType: "ec-p256", commonNames: (id) => [id], unbound: "keeps no device records to tie it to", renewsWithCurrent: true },
};

/** Decodes a JWT's claims without verifying it (the gateway verifies it; we only read the tenant). */
export function readJwtClaims(jwt: string): Record<string, unknown> | undefined {
  const payload = jwt.split(".")[1];
  if (!payload) return undefined;
  try {
    const claims: unknown = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
    return claims && typeof claims === "object" ? (claims as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A session from a JWT: tenant from `service`, expiry from `exp`. */
export function sessionFromJwt(jwt: string): Session {
  const claims = readJwtClaims(jwt) ?? {};
  return {
    jwt,
    tenant: typeof claims.service === "string" ? claims.service : undefined,
    expiresAt: typeof claims.exp === "number" ? new Date(claims.exp * 1000) : undefined,
  };
}
