/** dojot's sessions: the JWT `POST /auth` gives, the same service in both generations. */
import type { Session } from "../types.js";

/** A JWT's form: three base64url parts (the signature may be empty). */
export const JWT_FORM = /^[\w-]+\.[\w-]+\.[\w-]*$/;

/** Decodes a JWT's claims without verifying it (the gateway verifies it; we only read the tenant). */
function readJwtClaims(jwt: string): Record<string, unknown> | undefined {
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

/** The Authorization header as pepkong wants it. */
export function bearer(session: Session): Record<string, string> {
  // pepkong drops the first seven characters: exactly "Bearer " and one space.
  return { authorization: `Bearer ${session.jwt ?? ""}` };
}
