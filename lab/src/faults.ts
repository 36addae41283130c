import type { IncomingMessage, ServerResponse } from "node:http";
import type { CryptoProvider } from "cert-retriever";
import { type CertOverrides, type LabCa, RSA_SHA256 } from "./ca.js";
import { FAULT_KINDS, FAULT_ROUTES } from "./fault-kinds.js";
import * as x509 from "./x509.js";

/** A route of {@link FAULT_ROUTES}. */
export type FaultRoute = (typeof FAULT_ROUTES)[number];

/** A kind of {@link FAULT_KINDS}. */
export type FaultKind = (typeof FAULT_KINDS)[number];

/** One scripted fault: on `route`, `times` times (forever if absent), then the normal reply. */
export interface LabFault {
  route: FaultRoute;
  kind: FaultKind;
  times?: number;
}

/** The routes each kind that is not a transport fault can strike (a transport fault strikes any). */
const KIND_ROUTES: Partial<Record<FaultKind, FaultRoute[]>> = {
  "wrong-ca": ["ca", "sign", "est-cacerts", "est-enroll"],
  "trailing-data": ["ca", "sign", "est-cacerts", "est-enroll"],
  "skewed-clock": ["ca", "sign", "est-cacerts", "est-enroll"],
  "other-key": ["sign", "est-enroll"],
  expired: ["sign", "est-enroll"],
  "not-yet-valid": ["sign", "est-enroll"],
  "critical-extension": ["sign", "est-enroll"],
  "reply-lost": ["sign"],
  "malformed-pkcs7": ["est-cacerts", "est-enroll"],
  "wrapped-base64": ["est-cacerts", "est-enroll"],
};

/** Parses `route:kind[:times]`, as `lab serve --fault` takes it; a kind on a route it cannot strike is refused, not ignored. */
export function parseFault(text: string): LabFault {
  const [route, kind, times] = text.split(":");
  if (
    !FAULT_ROUTES.includes(route as FaultRoute) ||
    !FAULT_KINDS.includes(kind as FaultKind) ||
    (times !== undefined && !/^\d+$/.test(times))
  ) {
    throw new Error(
      `--fault '${text}' is not ROUTE:KIND[:TIMES] with ROUTE one of ${FAULT_ROUTES.join(", ")} and KIND one of ${FAULT_KINDS.join(", ")}`,
    );
  }
  const wrongRoute = kindProblem(route as FaultRoute, kind as FaultKind);
  if (wrongRoute) throw new Error(`--fault '${text}': ${wrongRoute}`);
  return {
    route: route as FaultRoute,
    kind: kind as FaultKind,
    times: times === undefined ? undefined : Number(times),
  };
}

/** Why `kind` cannot strike `route`, if it cannot. */
function kindProblem(route: FaultRoute, kind: FaultKind): string | undefined {
  const routes = KIND_ROUTES[kind];
  return routes && !routes.includes(route) ? `${kind} strikes only ${routes.join(", ")}` : undefined;
}

/**
 * Why `faults` cannot all take effect on a lab whose APIs have the routes `served`, if they
 * cannot: a kind on a route it cannot strike, or a route no API of the lab has. A fault is
 * refused before the lab starts, never ignored.
 */
export function faultsProblem(
  faults: readonly LabFault[],
  served: readonly FaultRoute[],
  what: string,
): string | undefined {
  for (const { route, kind, times } of faults) {
    const name = `${route}:${kind}${times === undefined ? "" : `:${times}`}`;
    const wrongRoute =
      FAULT_ROUTES.includes(route) && FAULT_KINDS.includes(kind)
        ? kindProblem(route, kind)
        : `not a route and kind of the lab's`;
    if (wrongRoute) return `the fault '${name}': ${wrongRoute}`;
    if (!served.includes(route))
      return `the fault '${name}': no API of this lab has the route ${route} (it serves ${what})`;
  }
  return undefined;
}

/** The faults still to happen, consumed as requests arrive. */
export class FaultPlan {
  private readonly left: LabFault[];

  constructor(faults: LabFault[] = []) {
    this.left = faults.map((f) => ({ ...f }));
  }

  /** The fault due next on `route`, left in place. */
  peek(route: FaultRoute): FaultKind | undefined {
    return this.left.find((f) => f.route === route && (f.times === undefined || f.times > 0))?.kind;
  }

  /** The fault for this request of `route`, if one is due. */
  take(route: FaultRoute): FaultKind | undefined {
    const fault = this.left.find((f) => f.route === route && (f.times === undefined || f.times > 0));
    if (fault?.times !== undefined) fault.times--;
    return fault?.kind;
  }
}

/**
 * Answers with a transport or status fault, in the shapes of dojot's gateway (JSON) or, with
 * `est`, of an EST server (base64 PKCS#7 bodies, plain-text errors); returns false for the kinds
 * that need the normal handler's help (certificates). `hang` leaves the request open until the
 * server closes.
 */
export function sendTransportFault(kind: FaultKind, req: IncomingMessage, res: ServerResponse, est = false): boolean {
  const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
    const text = est ? String((body as { message?: string }).message ?? "") : JSON.stringify(body);
    res
      .writeHead(status, {
        "content-type": est ? "text/plain; charset=utf-8" : "application/json",
        "content-length": Buffer.byteLength(text),
        ...headers,
      })
      .end(text);
  };
  const okType = est ? "application/pkcs7-mime" : "application/json";
  const filler = (size: number) =>
    est ? "A".repeat(size) : JSON.stringify({ certificate: "A".repeat(size), status: { data: "A" } });
  switch (kind) {
    case "refuse":
      req.socket.destroy();
      return true;
    case "hang":
      return true;
    case "reset":
    case "truncated": {
      const body = filler(4096);
      res.writeHead(200, { "content-type": okType, "content-length": Buffer.byteLength(body) });
      res.write(body.slice(0, body.length / 2), () => {
        if (kind === "reset") req.socket.resetAndDestroy?.() ?? req.socket.destroy();
        else req.socket.end();
      });
      return true;
    }
    case "500":
      json(500, { message: "Problem connecting to database", status: 500 });
      return true;
    case "503":
      json(503, { message: "name resolution failed" });
      return true;
    case "429":
      json(429, { message: "API rate limit exceeded" }, { "retry-after": "1" });
      return true;
    case "garbage": {
      const bytes = Buffer.alloc(512);
      for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919 + 13) % 256;
      res.writeHead(200, { "content-type": okType, "content-length": bytes.length }).end(bytes);
      return true;
    }
    case "oversized": {
      const body = filler(2 * 1024 * 1024);
      res.writeHead(200, { "content-type": okType, "content-length": Buffer.byteLength(body) }).end(body);
      return true;
    }
    default:
      return false;
  }
}

const DAY = 86_400_000;

/**
 * Who signs, and what differs from a normal certificate, under a certificate fault: `ca` signs
 * unless the fault is `wrong-ca`, where `other` (a CA with the same name and another key) does.
 */
export async function certificateFault(
  fault: FaultKind | undefined,
  ca: LabCa,
  other: () => Promise<LabCa>,
  crypto: CryptoProvider,
): Promise<{ signer: LabCa; overrides: CertOverrides }> {
  const now = Date.now();
  switch (fault) {
    case "wrong-ca":
      return { signer: await other(), overrides: {} };
    case "other-key": {
      const keys = (await crypto.subtle.generateKey(RSA_SHA256, true, ["sign", "verify"])) as CryptoKeyPair;
      return { signer: ca, overrides: { publicKey: keys.publicKey } };
    }
    case "expired":
      return { signer: ca, overrides: { notBefore: new Date(now - 800 * DAY), notAfter: new Date(now - 70 * DAY) } };
    case "not-yet-valid":
      return { signer: ca, overrides: { notBefore: new Date(now + DAY), notAfter: new Date(now + 731 * DAY) } };
    case "skewed-clock":
      return { signer: ca, overrides: { notBefore: new Date(now + 2 * DAY), notAfter: new Date(now + 732 * DAY) } };
    case "critical-extension": // an OID from the documentation arc (RFC 5612's 1.3.6.1.4.1.32473), marked critical
      return {
        signer: ca,
        overrides: { extensions: [new x509.Extension("1.3.6.1.4.1.32473.1", true, new Uint8Array([0x05, 0x00]))] },
      };
    default:
      return { signer: ca, overrides: {} };
  }
}

/** Under `skewed-clock`, the reply's Date says it is 3 days later than it is. */
export function skewClock(res: ServerResponse, fault: FaultKind | undefined): void {
  if (fault === "skewed-clock") res.setHeader("date", new Date(Date.now() + 3 * DAY).toUTCString());
}

/** The DER as sent: with junk after it under a `trailing-data` fault. */
export function withTrailingData(der: ArrayBuffer | Uint8Array, fault: FaultKind | undefined): Uint8Array {
  const bytes = der instanceof Uint8Array ? der : new Uint8Array(der);
  return fault === "trailing-data" ? new Uint8Array([...bytes, ...Buffer.from("TRAILING")]) : bytes;
}
