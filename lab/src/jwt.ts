import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";

/** Signs HS256 claims as dojot's auth service does. */
export function signJwt(claims: Record<string, unknown>, secret: string): string {
  const head = Buffer.from(JSON.stringify({ alg: "HS256", typ: "JWT" })).toString("base64url");
  const body = Buffer.from(JSON.stringify(claims)).toString("base64url");
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/** Kong's 401 body for a token it refuses: `{message}`, or for a registered claim, `{<claim>: <what is wrong>}`. */
export type KongRefusal = Record<string, string>;

/**
 * Verifies an HS256 JWT as Kong's jwt plugin does (`kong/plugins/jwt/handler.lua` and
 * `jwt_parser.lua` at Kong 0.11.0 and 2.0.4): the signature, then only the registered claims its
 * `config.claims_to_verify` names. With `exp` named, a token whose `exp` is not a number is
 * refused `{"exp":"must be a number"}` and one at or past it `{"exp":"token expired"}` (0.11 sends
 * the error table as the body, `responses.send(401, errors)`; 2.0.4 `kong.response.exit(401,
 * err.errors)`). dojot's kong.config.sh names none (dojot/docker-compose v0.4.3: `-d
 * "config.claims_to_verify=exp"` commented out; v0.5.0 and v0.8.1: `--data "name=jwt"` alone), so
 * there Kong lets an expired token through. Returns the claims, or the refusal's body.
 */
export function verifyJwt(
  token: string,
  secret: string,
  nowSeconds: number,
  claimsToVerify: readonly "exp"[] = [],
): { claims: Record<string, unknown> } | { refused: KongRefusal } {
  const [head, body, sig] = token.split(".");
  if (!head || !body || !sig) return { refused: { message: "Bad token; invalid JSON" } };
  const expected = Buffer.from(createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url"));
  const given = Buffer.from(sig);
  if (expected.length !== given.length || !timingSafeEqual(expected, given))
    return { refused: { message: "Invalid signature" } };
  let claims: Record<string, unknown>;
  try {
    claims = JSON.parse(Buffer.from(body, "base64url").toString("utf8")) as Record<string, unknown>;
  } catch {
    return { refused: { message: "Bad token; invalid JSON" } };
  }
  if (claimsToVerify.includes("exp")) {
    if (typeof claims.exp !== "number") return { refused: { exp: "must be a number" } };
    if (claims.exp <= nowSeconds) return { refused: { exp: "token expired" } };
  }
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
