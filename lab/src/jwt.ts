import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";

/** Signs HS256 claims as dojot's auth service does. */
export function signJwt(claims: Record<string, unknown>, secret: string): string {
  const head = Buffer.from(JSON.stringify({ alg: "HS256", typ: "JWT" })).toString("base64url");
  const body = Buffer.from(JSON.stringify(claims)).toString("base64url");
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/** Verifies an HS256 JWT and its expiry; returns the claims, or a reason it is refused (Kong's wording). */
export function verifyJwt(
  token: string,
  secret: string,
  nowSeconds: number,
): { claims: Record<string, unknown> } | { refused: string } {
  const [head, body, sig] = token.split(".");
  if (!head || !body || !sig) return { refused: "Bad token; invalid JSON" };
  const expected = Buffer.from(createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url"));
  const given = Buffer.from(sig);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return { refused: "Invalid signature" };
  let claims: Record<string, unknown>;
  try {
    claims = JSON.parse(Buffer.from(body, "base64url").toString("utf8")) as Record<string, unknown>;
  } catch {
    return { refused: "Bad token; invalid JSON" };
  }
  if (typeof claims.exp === "number" && claims.exp <= nowSeconds) return { refused: "token expired" };
  return { claims };
}

/** The claims dojot's auth service puts in a token (protocol notes, section 2). */
export function dojotClaims(
  user: { name: string; service: string; id: number },
  lifetimeSeconds: number,
  nowSeconds: number,
): Record<string, unknown> {
  return {
    iss: "cert-retriever-lab",
    iat: nowSeconds,
    exp: nowSeconds + lifetimeSeconds,
    profile: "admin",
    groups: [1],
    userid: user.id,
    jti: randomUUID(),
    service: user.service,
    username: user.name,
  };
}
