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
  der: Uint8Array;
}


/** What the platform needs to sign a device's certificate. */
export interface SignRequest {
  deviceId: string;
  /** The CSR, DER-encoded. */
  csrDer: Uint8Array;
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
  /** Removes a certificate the platform issued, which revokes it (after fetchCa; x509-identity-mgmt only). */
  revoke?(session: Session, fingerprint: string): Promise<"revoked" | "absent" | "not-supported">;
}

/** What the bind step did: whether the platform now ties the certificate to the device, and a line saying so. */
export interface Binding {
  bound: boolean;
  detail: string;
}

/** The platform APIs cert-retriever speaks. */
export type PlatformApi = "dojot-legacy" | "dojot";

/** What each API expects of a device: the key it prefers and the CNs it issues. */
export const API_TRAITS: Record<PlatformApi, { title: string; keyType: "rsa-2048" | "ec-p256"; commonNames(deviceId: string, tenant?: string): string[] }> = {
  // EJBCA-REST: the subject comes from the end entity, CN = device id; CFREE takes RSA only.
  "dojot-legacy": { title: "EJBCA-REST (dojot <= v0.4)", keyType: "rsa-2048", commonNames: (id) => [id] },
  // x509-identity-mgmt: v0.5-v0.6 prefix the tenant; v0.7+ pass the CSR's CN through.
  dojot: { title: "x509-identity-mgmt (dojot >= v0.5)", keyType: "ec-p256", commonNames: (id, tenant) => (tenant ? [id, `${tenant}:${id}`] : [id]) },
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
