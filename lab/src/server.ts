import { randomBytes } from "node:crypto";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { type CryptoProvider, isLoopbackHost, toPem } from "cert-retriever";
import {
  type CertProfile,
  createCa,
  createEstPki,
  type DojotCaKind,
  issueCertificate,
  issueServerCertificate,
  type LabCa,
  loadOrCreateCa,
  loadOrCreateEstCa,
  ProfileRefusal,
  parseCsr,
} from "./ca.js";
import { type CmpContext, type CmpLabOptions, cmpContext, handleCmp } from "./cmp.js";
import { crlDer, latestCrl } from "./crl.js";
import {
  authRefusal,
  certificateSubject,
  editUser,
  findUser,
  labProfileName,
  markIssued,
  statusName,
  tokenRefusal,
} from "./ejbca-entities.js";
import { availableCas, revokeCert } from "./ejbca-revoke.js";
import {
  type EstContext,
  type EstLabOptions,
  type EstPki,
  estServerNames,
  handleEst,
  parseBootstrapCas,
} from "./est.js";
import {
  certificateFault,
  FaultPlan,
  type FaultRoute,
  faultsProblem,
  type LabFault,
  sendTransportFault,
  skewClock,
  withTrailingData,
} from "./faults.js";
import { Bounds, EXPOSED_LIMITS, type LabLimits, type Serially, serialQueue } from "./intake.js";
import { dojotClaims, type KongRefusal, signJwt, verifyJwt } from "./jwt.js";
import { RateLimiter, type RateWindow } from "./rate-limit.js";
import { parseObject, send, sendFlaskError } from "./replies.js";
import { handleScep, type ScepContext, type ScepLabOptions, scepContext } from "./scep.js";
import {
  checkPassword,
  entityOf,
  loadState,
  makeUser,
  newEndEntity,
  newState,
  saveState,
  updateState,
} from "./state.js";
import { handleX509, type X509Rules } from "./x509-api.js";

export { type EstCsrAttrs, type EstIssued, type EstLabOptions, type EstPki, readEstIssued } from "./est.js";

/** Which API the lab serves: dojot's EJBCA-REST (`legacy`), x509-identity-mgmt (`x509`), `both`, or EST (RFC 7030) alone. */
export type LabApi = "legacy" | "x509" | "both" | "est";

/** Settings of the lab platform. */
export interface LabOptions {
  dir: string;
  host: string;
  port: number;
  crypto: CryptoProvider;
  /** `cfree` (dojot's default) or `open` (ECDSA and URI names too). */
  certProfile: CertProfile;
  /** Create an end entity on the first signing request for an unknown device. */
  autoRegister: boolean;
  /** The admin password; when absent on first start, one is generated and returned once. */
  adminPassword?: string;
  /** JWT lifetime in seconds; dojot's default is 420. */
  tokenLifetime: number;
  /**
   * Kong's jwt plugin `config.claims_to_verify`: none by default, as dojot's kong.config.sh
   * configures it (an expired token passes); `["exp"]` refuses one, as a gateway configured so does.
   */
  claimsToVerify?: readonly "exp"[];
  /**
   * Which ejbca-rest `/sign` answers (`--api legacy`): v0.4.3's (default), which signs for a NEW end
   * entity only, or v0.5.0-alpha.1's, which first resets the entity to NEW itself.
   */
  ejbcaRestVersion?: "v0.4" | "v0.5";
  /** Scripted faults, for testing clients against a misbehaving platform. */
  faults?: LabFault[];
  /** Kong's limit on /auth (dojot: 5/min and 40/h); off when absent. */
  authRateLimit?: RateWindow[];
  /** Runs the rate limiter's clock this many times faster (simulations). */
  rateLimitTimeScale?: number;
  /**
   * Which API to serve: EJBCA-REST (`legacy`, the default), x509-identity-mgmt (`x509`), `both`,
   * or `est`: EST alone, over HTTPS on `host:port`.
   */
  api?: LabApi;
  /** The EST server: beside the dojot API when `est.port` is set, and with `api: "est"`. */
  est?: EstLabOptions;
  /** A SCEP server at `/scep` beside the dojot API, with the lab's CA (IOTmidCA). */
  scep?: ScepLabOptions;
  /** A CMP server at `/pkix/` beside the dojot API, with the lab's CA (IOTmidCA). */
  cmp?: CmpLabOptions;
  /** The x509-identity-mgmt generation whose rules apply (default v0.7). */
  x509Rules?: X509Rules;
  /**
   * The certificate profiles' "Allow Extension Override" (default on, as CFREE and X509Identity
   * have it): the CSR's extensions, SANs included, go into the certificate. Off, EJBCA drops them.
   */
  extensionOverride?: boolean;
  /**
   * The validity of the certificates the lab issues, in ms. Absent: as the platforms' settings
   * have it, 365 days for x509-identity-mgmt (`certificate.validity`) and 730 days for EJBCA-REST
   * (the CFREE profile).
   */
  certLifetime?: number;
  /**
   * Bounds on the connections the lab keeps and the request bytes it holds; past one, 503. Absent:
   * {@link EXPOSED_LIMITS} when the lab listens beyond loopback, none on loopback.
   */
  limits?: LabLimits;
  /**
   * x509-identity-mgmt's `ejbca.forcecrlrenew` (X509IDMGMT_EJBCA_FORCECRLRENEW; v0.5:
   * EJBCA_CRL_FORCE_RENEW), false by default: when set, every `GET /x509/v1/ca/crl` first makes
   * a new CRL, so a revocation shows at once; otherwise the latest CRL is served until it is due.
   */
  forceCrlRenew?: boolean;
}

/** What a request handler needs besides the request. */
interface Context {
  opts: LabOptions & { api: LabApi; x509Rules: X509Rules; extensionOverride: boolean };
  ca: LabCa;
  /** x509-identity-mgmt's `X509 Identity CA`, when that API is served. */
  x509Ca?: LabCa;
  faults: FaultPlan;
  authLimiter?: RateLimiter;
  /** Another CA with the same names as the lab's CA of `kind` and another key, for `wrong-ca` faults; made on first use. */
  otherCa: (kind: DojotCaKind) => Promise<LabCa>;
  scep?: ScepContext;
  cmp?: CmpContext;
}

/** A running lab platform. */
export interface RunningLab {
  url: string;
  /** EJBCA-REST's IOTmidCA. */
  ca: LabCa;
  /** x509-identity-mgmt's X509 Identity CA, when that API is served. */
  x509Ca?: LabCa;
  /** The EST server's base, `https://<host>:<port>/.well-known/est`, when EST is served. */
  estUrl?: string;
  /** The EST root and the issuing CA under it, when EST is served. */
  estCa?: EstPki;
  /** Set only when the admin password was generated by this start. */
  generatedPassword?: string;
  /** What this start did to the admin user's password: made it (generated or given), replaced it by the one given, or kept it. */
  adminPassword: "created" | "replaced" | "kept";
  /** The bounds it keeps to, if it has any. */
  limits?: LabLimits;
  close(): Promise<void>;
}

/** How long a client may take to send its request (headers and body); a slow one gets 408, the others are not held up. */
const REQUEST_TIMEOUT_MS = 10_000;

/**
 * Starts the lab platform: dojot's API (EJBCA-REST behind Kong, x509-identity-mgmt) on `host:port`,
 * and the EST server beside it on `est.port`, or EST alone on `host:port` with `api: "est"`; port 0
 * picks a free one. Settings that could not take effect (a fault on a route no API of the lab has)
 * are refused with a {@link LabOptionsError} before anything is made.
 */
export async function startLab(options: LabOptions): Promise<RunningLab> {
  const opts = {
    ...options,
    api: options.api ?? "legacy",
    x509Rules: options.x509Rules ?? "v0.7",
    extensionOverride: options.extensionOverride ?? true,
  };
  const estListen =
    opts.api === "est"
      ? { host: opts.host, port: opts.port }
      : opts.est?.port === undefined
        ? undefined
        : { host: opts.est.host ?? opts.host, port: opts.est.port };
  checkFaults(opts.faults ?? [], opts.api, estListen !== undefined);
  const { generatedPassword, adminPassword } = await prepareState(opts.dir, opts.adminPassword);
  const bootstrap = parseBootstrapCas(opts.est?.bootstrapCas ?? []);
  const [ca, x509Ca, estCa] = await Promise.all([
    loadOrCreateCa(opts.dir, opts.crypto),
    opts.api === "x509" || opts.api === "both" ? loadOrCreateCa(opts.dir, opts.crypto, "x509") : undefined,
    estListen ? loadOrCreateEstCa(opts.dir, opts.crypto) : undefined,
  ]);
  // EJBCA makes a CA's first CRL when it creates the CA; EJBCA-REST runs `createcrl` at startup
  // (`initicalConf` in `ejbcaUtils.py` v0.4.3), and the CRL Updater renews a due one.
  if (opts.api === "legacy" || opts.api === "both") await latestCrl(opts.dir, ca, "legacy", opts.crypto, "when-due");
  if (x509Ca) await latestCrl(opts.dir, x509Ca, "x509", opts.crypto, "when-due");
  let otherEst: Promise<EstPki> | undefined;
  const faults = new FaultPlan(opts.faults);
  const ctx: Context = {
    opts,
    ca,
    x509Ca,
    faults,
    authLimiter: opts.authRateLimit ? new RateLimiter(opts.authRateLimit, opts.rateLimitTimeScale) : undefined,
    otherCa: otherCas({ legacy: ca, x509: x509Ca }, opts.crypto),
    scep: opts.scep && scepContext(opts.dir, opts.crypto, ca, opts.scep),
    cmp: opts.cmp && cmpContext(opts.crypto, ca, opts.cmp),
  };
  const limits =
    opts.limits ??
    ([opts.api === "est" ? undefined : opts.host, estListen?.host].some((h) => h !== undefined && !isLoopbackHost(h))
      ? EXPOSED_LIMITS
      : undefined);
  const bounds = limits && new Bounds(limits);
  const serially = serialQueue(bounds);
  const servers: Server[] = [];
  const close = () => Promise.all(servers.map(closeServer)).then(() => serially.drained());
  try {
    const url = opts.api === "est" ? undefined : await serveDojot(ctx, serially, servers, bounds);
    const estOrigin =
      estListen && estCa
        ? await serveEst(
            {
              dir: opts.dir,
              crypto: opts.crypto,
              certLifetime: opts.certLifetime,
              est: opts.est ?? {},
              pki: estCa,
              bootstrap,
              faults,
              otherPki: () => (otherEst ??= createEstPki(opts.crypto)),
              pending: new Map(),
            },
            estListen,
            serially,
            servers,
            bounds,
          )
        : undefined;
    return {
      url: url ?? estOrigin!,
      ca,
      x509Ca,
      estUrl: estOrigin && `${estOrigin}/.well-known/est`,
      estCa,
      generatedPassword,
      adminPassword,
      limits,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Settings the lab refuses before it starts: a fault that could not take effect. */
export class LabOptionsError extends Error {}

/** Refuses a fault the lab could not make happen: every fault takes effect on every API that has its route, or the lab does not start. */
function checkFaults(faults: readonly LabFault[], api: LabApi, est: boolean): void {
  const dojot = api !== "est";
  const served: FaultRoute[] = [
    ...(dojot ? (["auth", "ca", "sign"] as const) : []),
    ...(est ? (["est-cacerts", "est-enroll"] as const) : []),
  ];
  const apis = { legacy: "EJBCA-REST", x509: "x509-identity-mgmt", both: "EJBCA-REST and x509-identity-mgmt", est: "" }[
    api
  ];
  const what = dojot ? `${apis}${est ? " and EST" : " alone"}` : "EST alone";
  const problem = faultsProblem(faults, served, what);
  if (problem) throw new LabOptionsError(problem);
}

/** The lab's state in `dir`, made on first start; the admin password set when given. Returns the password it generated, if it did. */
async function prepareState(
  dir: string,
  adminPassword: string | undefined,
): Promise<Pick<RunningLab, "generatedPassword" | "adminPassword">> {
  const state = await loadState(dir);
  if (!state) {
    const generated = adminPassword === undefined ? randomBytes(12).toString("base64url") : undefined;
    await saveState(dir, newState(adminPassword ?? generated!));
    return { generatedPassword: generated, adminPassword: "created" };
  }
  if (adminPassword === undefined) return { adminPassword: "kept" };
  state.users.admin = makeUser(1, "admin", adminPassword);
  await saveState(dir, state);
  return { adminPassword: "replaced" };
}

/** For `wrong-ca` faults: another CA with the very names of the lab's CA of a kind, and another key, made once on first use. */
function otherCas(genuine: Record<DojotCaKind, LabCa | undefined>, crypto: CryptoProvider): Context["otherCa"] {
  const made = new Map<DojotCaKind, Promise<LabCa>>();
  return (kind) => {
    const ca = genuine[kind]!;
    let other = made.get(kind);
    if (!other) {
      other = createCa(ca.cert.subjectName, crypto).then(({ cert, keys }) => ({
        name: ca.name,
        cert,
        key: keys.privateKey,
      }));
      made.set(kind, other);
    }
    return other;
  };
}

/** Serves dojot's API on the lab's `host:port`; returns its URL. */
async function serveDojot(ctx: Context, serially: Serially, servers: Server[], bounds?: Bounds): Promise<string> {
  // Loaded here, not at the top: in the single-file build a static import of node:http is hoisted
  // to the file's start, and on Node 24 its ESM facade loads Node's own undici on every run.
  const { createServer } = await import("node:http");
  const fail = (res: ServerResponse, status: 413 | 500 | 503, why: string) =>
    send(res, status, status === 500 ? { message: why, status } : { message: why });
  const server = createServer(
    { requestTimeout: REQUEST_TIMEOUT_MS },
    serially((req, res, body, raw) => handle(req, res, ctx, body, raw), fail),
  );
  bounds?.watch(server);
  servers.push(server);
  return `http://${urlHost(ctx.opts.host)}:${await listen(server, ctx.opts.host, ctx.opts.port)}`;
}

/**
 * Serves EST over HTTPS on `at`; returns its origin. RFC 7030 §3.3: TLS 1.1 or later (1.2 here),
 * the server's certificate (from the issuing CA, a new one each start) sent with the issuing CA;
 * a client certificate is asked for, and each route decides what it accepts (§3.3.2).
 */
async function serveEst(
  ctx: EstContext,
  at: { host: string; port: number },
  serially: Serially,
  servers: Server[],
  bounds?: Bounds,
): Promise<string> {
  const tls = await issueServerCertificate(ctx.pki.issuing, estServerNames(at.host), ctx.crypto);
  const { createServer } = await import("node:https");
  const fail = (res: ServerResponse, status: 413 | 500 | 503, why: string) => {
    const text =
      status === 413
        ? "the request is too large\n"
        : status === 500
          ? "the EST server failed; see the lab's log\n"
          : `${why}\n`;
    res
      .writeHead(status, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(text) })
      .end(text);
  };
  const server = createServer(
    {
      key: tls.key,
      cert: tls.cert + toPem(ctx.pki.issuing.cert.rawData, "CERTIFICATE"),
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: "TLSv1.2",
      requestTimeout: REQUEST_TIMEOUT_MS,
    },
    serially((req, res, body) => handleEst(req, res, body, ctx), fail),
  );
  bounds?.watch(server);
  servers.push(server);
  return `https://${urlHost(at.host)}:${await listen(server, at.host, at.port)}`;
}

/** Listens on `host:port` and returns the port (port 0 picks a free one). */
async function listen(server: Server, host: string, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        err.code === "EADDRINUSE"
          ? new LabListenError(`${host}:${port} is already in use (is another lab or dojot running there?)`)
          : err,
      ),
    );
    server.listen(port, host, () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

/** A host as it goes in a URL: IPv6 addresses in brackets. */
function urlHost(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

/** The lab could not listen where it was told. */
export class LabListenError extends Error {}

/**
 * What a request to dojot's gateway asks for, by the routes Kong has (dojot/docker-compose
 * `kong.config.sh`; at v0.4.3 its API `ejbca-paths`, uris `/sign`, `/ca` and `/user`, sends all
 * three to EJBCA-REST with `authConfig`'s jwt and pepkong plugins, as every API there).
 */
type GatewayRoute =
  | { to: "auth" }
  | { to: "cas" }
  | { to: "edit-user" }
  | { to: "ca" | "crl" | "sign" | "user"; name: string }
  | { to: "revoke"; name: string; serial: string }
  | { to: "x509"; path: string };

/** The route of `method pathname` on the lab's gateway, or undefined where Kong has none. */
function gatewayRoute(method: string, pathname: string, api: LabApi): GatewayRoute | undefined {
  if (method === "POST" && (pathname === "/auth" || pathname === "/auth/")) return { to: "auth" };
  // Kong's `/x509` route (strip_path) hands everything under it to x509-identity-mgmt.
  if (api !== "legacy" && (pathname === "/x509" || pathname.startsWith("/x509/")))
    return { to: "x509", path: pathname.slice("/x509".length).replace(/\/+$/, "") };
  if (api === "x509") return undefined;
  const named = (re: RegExp) => re.exec(pathname)?.[1];
  if (/^\/ca\/?$/.test(pathname) && method === "GET") return { to: "cas" };
  if (/^\/user\/?$/.test(pathname) && method === "POST") return { to: "edit-user" };
  const user = named(/^\/user\/([^/]+)\/?$/);
  if (user !== undefined && method === "GET") return { to: "user", name: user };
  const revoke = /^\/ca\/([^/]+)\/certificate\/([^/]+)\/?$/.exec(pathname);
  if (revoke && method === "DELETE") return { to: "revoke", name: revoke[1]!, serial: revoke[2]! };
  const ca = named(/^\/ca\/([^/]+)\/?$/);
  if (ca !== undefined && method === "GET") return { to: "ca", name: ca };
  const crl = named(/^\/ca\/([^/]+)\/crl\/?$/);
  if (crl !== undefined && (method === "GET" || method === "PUT")) return { to: "crl", name: crl };
  const sign = named(/^\/sign\/([^/]+)\/pkcs10\/?$/);
  if (sign !== undefined && method === "POST") return { to: "sign", name: sign };
  return undefined;
}

/**
 * The fault route a request is on: `auth`; `ca`, the CA certificate (EJBCA-REST's `GET /ca/<name>`,
 * x509-identity-mgmt's `GET /v1/ca`); `sign`, a certificate issued (`POST /sign/<cname>/pkcs10`,
 * `POST /v1/certificates`). Other routes (CRLs, records, trusted CAs) have no faults.
 */
function faultRouteOf(method: string, route: GatewayRoute): FaultRoute | undefined {
  if (route.to === "x509")
    return method === "GET" && route.path === "/v1/ca"
      ? "ca"
      : method === "POST" && route.path === "/v1/certificates"
        ? "sign"
        : undefined;
  return route.to === "auth" || route.to === "ca" || route.to === "sign" ? route.to : undefined;
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  ctx: Context,
  body: string,
  raw: Buffer,
): Promise<void> {
  const { opts } = ctx;
  const url = new URL(req.url ?? "/", "http://lab");
  if (ctx.scep && url.pathname === "/scep") return handleScep(req, res, url, raw, ctx.scep);
  if (ctx.cmp && /^\/pkix(\/|$)/.test(url.pathname)) return handleCmp(req, res, raw, ctx.cmp);
  const route = gatewayRoute(req.method ?? "GET", url.pathname, opts.api);
  if (!route) {
    // Kong's own 404: dojot v0.4.3 runs Kong 0.11 (`dojot/kong` v0.4.3 Dockerfile: kong:0.11), whose
    // `kong/core/handler.lua` (0.11.0, 0.11.2) says "no API found with those values"; v0.5+ run Kong
    // 2.x (`dojot/kong` v0.5.0 Dockerfile: kong:2.0.4; `kong/runloop/handler.lua` at 2.0.4). dojot's
    // own kong.config.sh also routes `/` to its GUI (an nginx page), which the lab leaves out.
    return send(res, 404, {
      message: opts.api === "legacy" ? "no API found with those values" : "no Route matched with those values",
    });
  }
  // A transport fault strikes the request as it comes; a fault in a certificate waits for one to be sent (not spent on a 401 or a 400).
  const faultRoute = faultRouteOf(req.method ?? "GET", route);
  const upcoming = faultRoute && ctx.faults.peek(faultRoute);
  if (upcoming && sendTransportFault(upcoming, req, res)) return void ctx.faults.take(faultRoute!);
  if (route.to === "auth") return login(req, body, res, ctx);
  const verdict = kong(req, url, (await loadState(opts.dir))!.jwtSecret, opts.claimsToVerify);
  if ("refused" in verdict) return kongRefusal(res, verdict.refused, opts.api === "legacy");
  const tenant = String(verdict.claims.service ?? "");
  if (route.to === "x509")
    return handleX509(
      req,
      res,
      url,
      body,
      { opts, ca: ctx.x509Ca!, rules: opts.x509Rules, faults: ctx.faults, otherCa: () => ctx.otherCa("x509") },
      tenant,
    );
  if (route.to === "cas") return availableCas(res, ctx.ca);
  if (route.to === "edit-user")
    return isJson(req)
      ? editUser(res, opts.dir, body, labProfileName(opts.certProfile))
      : send(res, 400, { message: "invalid mimetype", status: 400 });
  const name = decodeURIComponent(route.name);
  if (route.to === "user") return findUser(res, opts.dir, name, labProfileName(opts.certProfile), opts.autoRegister);
  if (route.to === "revoke")
    return revokeCert(res, url, name, decodeURIComponent(route.serial), { dir: opts.dir, ca: ctx.ca });
  if (route.to === "crl") return legacyCrl(req, url, name, res, ctx);
  if (route.to === "ca") return legacyCa(res, name, ctx);
  return signCsr(req, body, name, res, ctx);
}

/**
 * What Kong in front of dojot's services does with a request's token, on every route
 * `kong.config.sh` protects (dojot/docker-compose v0.4.3, v0.5.0, v0.8.1: the jwt and pepkong
 * plugins). Kong's jwt plugin (PRIORITY 1005; `kong/plugins/jwt/handler.lua` at Kong 0.11.0 for
 * dojot v0.4.3, 2.0.4 for v0.5, 2.2.2 for v0.6-v0.8: dojot/kong's Dockerfiles) runs first: it takes
 * the token from `?jwt=`, else from `Authorization: Bearer <token>`, answers 401
 * `{"message":"Unauthorized"}` when there is none, and checks it (its signature; its expiry only
 * where `claimsToVerify` names `exp`, which dojot's configuration does not: see verifyJwt). Then dojot's pepkong, whose
 * handler sets no PRIORITY (so 0, after jwt: dojot/kong `plugins/pepkong/kong/plugins/pepkong/`
 * `handler.lua` and `pepmain.lua` at v0.5.0 and v0.8.0), answers 401 with an empty body when the
 * Authorization header is missing, so only a token from `?jwt=` alone reaches it; its decision
 * point permits the lab's users everything.
 */
function kong(
  req: IncomingMessage,
  url: URL,
  secret: string,
  claimsToVerify: readonly "exp"[] = [],
): { claims: Record<string, unknown> } | { refused: KongRefusal | undefined } {
  const header = req.headers.authorization;
  const token =
    url.searchParams.get("jwt") ?? (header === undefined ? undefined : /^\s*[Bb]earer\s+(.+)/.exec(header)?.[1]);
  if (token === undefined) return { refused: { message: "Unauthorized" } };
  const verdict = verifyJwt(token, secret, Math.floor(Date.now() / 1000), claimsToVerify);
  if ("refused" in verdict) return verdict;
  return header === undefined ? { refused: undefined } : verdict;
}

/**
 * Kong's refusal: the jwt plugin's body (`kong.response.exit`'s JSON), or pepkong's empty body.
 * Kong 0.x (dojot v0.4.3 runs kong 0.11) answers a token it cannot verify — another signature, an
 * unknown `iss`, another algorithm — with 403 (its jwt access spec: "returns 403 Forbidden if the
 * signature is invalid"); Kong 2.x (dojot v0.5+) with 401, as every other refusal.
 */
function kongRefusal(res: ServerResponse, body: KongRefusal | undefined, kong0: boolean): void {
  if (body === undefined) {
    send(res, 401, undefined);
    return;
  }
  const forbidden =
    kong0 && /^(Invalid signature|No credentials found for given 'iss'|Invalid algorithm)$/.test(body.message ?? "");
  const text = JSON.stringify(body);
  res
    .writeHead(forbidden ? 403 : 401, {
      "content-type": "application/json; charset=utf-8",
      "content-length": Buffer.byteLength(text),
    })
    .end(text);
}

/** `/auth`, behind Kong's rate limit when the lab has one. */
function login(req: IncomingMessage, body: string, res: ServerResponse, ctx: Context): Promise<void> | void {
  const wait = ctx.authLimiter?.take();
  if (wait === undefined) return auth(req, body, res, ctx.opts);
  const text = JSON.stringify({ message: "API rate limit exceeded" });
  res
    .writeHead(429, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(text),
      "retry-after": String(wait),
    })
    .end(text);
}

/** EJBCA-REST's `GET /ca/<caname>`: the CA's certificate, as a `ca` fault spoils it. */
async function legacyCa(res: ServerResponse, name: string, ctx: Context): Promise<void> {
  if (name !== ctx.ca.name)
    return send(res, 400, { status: 400, message: `soap message: CA with name ${name} does not exist.` });
  const fault = ctx.faults.take("ca");
  skewClock(res, fault);
  const served = fault === "wrong-ca" ? await ctx.otherCa("legacy") : ctx.ca;
  return send(res, 200, { certificate: ejbcaBase64(withTrailingData(served.cert.rawData, fault)) });
}

/**
 * EJBCA-REST's CRL routes (`RESTmain.py` at v0.4.3): `GET /ca/<caname>/crl[?delta=true]` answers
 * `{"CRL": <base64 of the DER, one line (b64encode)>}` from EJBCA's `getLatestCRL`; `PUT` makes a
 * new one (`createCRL`) and answers `{"message": "ok", "status": 200}`. An unknown CA is EJBCA's
 * fault, `400 soap message: CA with name <name> does not exist.` (`docs/apiary.apib`).
 */
async function legacyCrl(
  req: IncomingMessage,
  url: URL,
  name: string,
  res: ServerResponse,
  ctx: Context,
): Promise<void> {
  if (name !== ctx.ca.name)
    return send(res, 400, { status: 400, message: `soap message: CA with name ${name} does not exist.` });
  if (req.method === "PUT") {
    await latestCrl(ctx.opts.dir, ctx.ca, "legacy", ctx.opts.crypto, "force");
    return send(res, 200, { message: "ok", status: 200 });
  }
  // IOTmidCA issues no delta CRLs (no delta CRL period), so `getLatestCRL(name, true)` has nothing
  // to return and `b64encode(None)` raises: Flask's 500 page.
  if (["True", "true"].includes(url.searchParams.get("delta") ?? "")) return sendFlaskError(res);
  return send(res, 200, {
    CRL: crlDer(await latestCrl(ctx.opts.dir, ctx.ca, "legacy", ctx.opts.crypto, "when-due")).toString("base64"),
  });
}

async function auth(req: IncomingMessage, body: string, res: ServerResponse, opts: LabOptions): Promise<void> {
  if (!isJson(req)) return send(res, 400, { message: "invalid mimetype", status: 400 });
  const input = parseObject(body) ?? {};
  if (typeof input.username !== "string" || !input.username)
    return send(res, 400, { message: "missing username", status: 400 });
  if (typeof input.passwd !== "string" || !input.passwd)
    return send(res, 400, { message: "missing password", status: 400 });
  const state = (await loadState(opts.dir))!;
  const name = input.username.toLowerCase();
  const user = state.users[name];
  if (!user) return send(res, 401, { message: "AuthenticationError", status: 401 });
  if (!user.active) return send(res, 401, { message: "This user is inactive", status: 401 });
  if (!checkPassword(user, input.passwd)) return send(res, 403, { message: "AuthorizationError", status: 403 });
  const claims = dojotClaims(
    { name, service: user.service, id: user.id },
    opts.tokenLifetime,
    Math.floor(Date.now() / 1000),
  );
  return send(res, 200, { jwt: signJwt(claims, state.jwtSecret) });
}

async function signCsr(
  req: IncomingMessage,
  body: string,
  cname: string,
  res: ServerResponse,
  ctx: Context,
): Promise<void> {
  const { opts } = ctx;
  const soap = (message: string) => send(res, 400, { status: 400, message: `soap message: ${message}` });
  if (!isJson(req)) return send(res, 400, { status: 400, message: "invalid mimetype" });
  const input = parseObject(body);
  if (!input) return send(res, 400, { status: 400, message: "malformed JSON" });
  const hasPasswd = "passwd" in input;
  const hasCsr = "certificate" in input;
  if (!hasPasswd && !hasCsr)
    return send(res, 400, { status: 400, message: "Missing parameter. Expected: passwd and certificate" });
  if (!hasPasswd || !hasCsr) {
    // EJBCA-REST checks with "and", so one missing field is an unhandled KeyError: Flask's 500 page.
    return sendFlaskError(res);
  }
  if (opts.ejbcaRestVersion === "v0.5") {
    // ejbca-rest v0.5.0-alpha.1 `RESTmain.py` `pkcs10Request`: `findUserandReset` first, which
    // answers 400 "User not found to renew.." for no entity, and sets any other status to NEW (10).
    const known = entityOf((await loadState(opts.dir))!, cname);
    if (!known) return send(res, 400, { message: "User not found to renew..", status: 400 });
    await updateState(opts.dir, (s) => {
      const e = entityOf(s, cname);
      if (e) e.status = 10;
    });
  }
  const state = (await loadState(opts.dir))!;
  const entity = entityOf(state, cname) ?? (opts.autoRegister ? newEndEntity() : undefined);
  // EJBCA 6.3.1.1 `EjbcaWS.processCertReq`: the entity, its token type, the CSR decoded; then
  // `SignSessionBean.createCertificate` authenticates (`authenticateUser`: the status, then the
  // password) before it looks at the key. An unknown entity is `ra.wrongusernameorpassword` there,
  // "Wrong username or password", as a wrong password is.
  if (!entity) return soap("Wrong username or password");
  const wrongToken = tokenRefusal(cname, entity);
  if (wrongToken) return soap(wrongToken);
  // EJBCA reads the request's bytes through `RequestMessageUtils.getRequestBytes`, which drops PEM's
  // BEGIN/END lines (CERTIFICATE REQUEST or NEW CERTIFICATE REQUEST): a PEM CSR is taken as base64 DER is.
  const csrText =
    typeof input.certificate === "string"
      ? input.certificate.replace(/-----(BEGIN|END) [A-Z ]+-----/g, "").replace(/\s+/g, "")
      : "";
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(csrText)) return soap("Error decoding PKCS10 request: not base64.");
  const csrDer = new Uint8Array(Buffer.from(csrText, "base64"));
  try {
    parseCsr(csrDer);
  } catch (err) {
    if (err instanceof ProfileRefusal) return soap(err.message);
    throw err;
  }
  const refused = authRefusal(cname, entity, input.passwd);
  if (refused) return soap(refused);
  let cert: Awaited<ReturnType<typeof issueCertificate>>;
  const fault = ctx.faults.take("sign");
  skewClock(res, fault);
  try {
    const { signer, overrides } = await certificateFault(fault, ctx.ca, () => ctx.otherCa("legacy"), opts.crypto);
    // `--cert-lifetime` in place of CFREE's 730 days; a fault's own validity wins.
    const lifetime = opts.certLifetime === undefined ? {} : { notAfter: new Date(Date.now() + opts.certLifetime) };
    cert = await issueCertificate(
      signer,
      csrDer,
      certificateSubject(cname, entity),
      opts.certProfile,
      opts.crypto,
      { ...lifetime, ...overrides },
      opts.extensionOverride,
    );
  } catch (err) {
    if (err instanceof ProfileRefusal) return soap(err.message);
    throw err;
  }
  // EJBCA stored the certificate and finished the entity (GENERATED) before EJBCA-REST answered:
  // whatever then happens to the reply, the certificate was issued.
  await updateState(opts.dir, (s) => {
    const e = entityOf(s, cname) ?? entity;
    markIssued(e, cert.serialNumber);
    s.devices[cname] = e;
  });
  if (fault === "reply-lost") return void req.socket.destroy();
  return send(res, 200, {
    status: { data: ejbcaBase64(withTrailingData(cert.rawData, fault)), responseType: "CERTIFICATE" },
  });
}

/** Base64 split every 64 characters with `\n` and no PEM lines, as EJBCA encodes. */
function ejbcaBase64(der: ArrayBuffer | Uint8Array): string {
  return toPem(der, "X").split("\n").slice(1, -2).join("\n");
}

function isJson(req: IncomingMessage): boolean {
  return (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase() === "application/json";
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** Adds a device (end entity in NEW state, password `dojot`) or puts an existing one back to NEW. */
export async function setDevice(dir: string, id: string, action: "add" | "reset"): Promise<void> {
  await setDevices(dir, [id], action);
}

/** {@link setDevice} for several devices in one change of the state: all of them, or (a reset of one the lab does not know) none. */
export async function setDevices(dir: string, ids: readonly string[], action: "add" | "reset"): Promise<void> {
  await updateState(dir, (s) => {
    const unknown = ids.filter((id) => !entityOf(s, id));
    if (action === "reset" && unknown.length > 0)
      throw new Error(
        `${unknown.length === 1 ? "device" : "devices"} ${unknown.map((id) => `'${id}'`).join(", ")} ${unknown.length === 1 ? "is" : "are"} not registered in the lab at ${dir}`,
      );
    for (const id of ids) s.devices[id] = { ...(entityOf(s, id) ?? newEndEntity()), status: 10 };
  });
}

/** A device of the lab as `device list` shows it. */
export interface LabDevice {
  id: string;
  /** Its EJBCA end entity's status by name (NEW, GENERATED, …). */
  status: string;
  /** Certificates EJBCA-REST issued to it. */
  issued: number;
  /** x509-identity-mgmt certificates bound to it. */
  bound: number;
}

/** The lab's devices, by id. */
export async function listDevices(dir: string): Promise<LabDevice[]> {
  const state = await loadState(dir);
  if (!state) throw new Error(`no lab in ${dir}: start it once with 'cert-retriever-lab serve --dir ${dir}'`);
  const records = Object.values(state.x509Certificates ?? {});
  return Object.keys(state.devices)
    .sort()
    .map((id) => {
      const entity = state.devices[id]!;
      return {
        id,
        status: statusName(entity),
        issued: entity.issued.length,
        bound: records.filter((r) => r.belongsTo?.device === id).length,
      };
    });
}
