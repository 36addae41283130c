import { CertRetrieverError } from "../../errors.js";
import { type HttpReply, jsonObject } from "../../transport/http.js";
import { platformSays, replyFacts } from "../dojot/says.js";
import type { EjbcaRestClient } from "../ejbca-rest/client.js";
import { parseCaReply } from "../ejbca-rest/client.js";
import type { FetchedCa, LoginCapability, ProtocolClient, Session, TrustCapability } from "../types.js";
import type { X509IdentityMgmtClient } from "../x509-identity-mgmt/client.js";
import { DOJOT_AUTO, DOJOT_AUTO_TITLE } from "./name.js";

/**
 * `--api auto`: finds out which generation answers, by the content of the replies and not their
 * status (on dojot v0.4 Kong sends unknown paths to the GUI, so a bare 200 proves nothing):
 * `GET /x509/v1/ca` with `caPem` means x509-identity-mgmt, else `GET /ca/<name>` with
 * `certificate` means EJBCA-REST. Done once, at the fetch-ca step, with the run's one token; from
 * then on {@link effective} is the client that answered.
 */
export class DojotAutoClient implements ProtocolClient {
  readonly name = DOJOT_AUTO;
  readonly title = DOJOT_AUTO_TITLE;
  /** The same `POST /auth` in both generations. */
  readonly login: LoginCapability;
  readonly trust: TrustCapability = { fetchCa: (session) => this.detect(session) };
  private chosen: EjbcaRestClient | X509IdentityMgmtClient | undefined;

  constructor(
    private readonly legacy: EjbcaRestClient,
    private readonly x509: X509IdentityMgmtClient,
  ) {
    this.login = x509.login;
  }

  /** The client that answered (after trust.fetchCa). */
  effective(): ProtocolClient {
    if (!this.chosen) throw new Error("a request before fetchCa: the API is not detected yet");
    return this.chosen;
  }

  get enroll() {
    return this.effective().enroll;
  }

  private async detect(session: Session): Promise<FetchedCa> {
    const modern = await this.x509.caReply(session);
    if (whichApi(modern) === "x509") return this.choose(this.x509, async () => this.x509.adoptCa(modern));
    const legacy = await this.legacy.caReply(session);
    switch (whichApi(modern, legacy)) {
      case "legacy":
        return this.choose(this.legacy, async () => parseCaReply(legacy, this.legacy.caName));
      case "x509":
        return this.choose(this.x509, async () => this.x509.adoptCa(modern));
      default:
        throw new CertRetrieverError(
          `fetch-ca failed: neither dojot API answered: GET /x509/v1/ca gave HTTP ${modern.status} (${platformSays(modern)}) and GET /ca/<name> gave HTTP ${legacy.status} (${platformSays(legacy)})`,
          { step: "fetch-ca", reason: "not-a-dojot-platform", facts: { ...replyFacts(modern), protocol: DOJOT_AUTO } },
        );
    }
  }

  private choose(
    client: EjbcaRestClient | X509IdentityMgmtClient,
    parse: () => Promise<FetchedCa>,
  ): Promise<FetchedCa> {
    this.chosen = client;
    return parse();
  }
}

/**
 * Which API answers, from `GET /x509/v1/ca` (`modern`) and, when that is not conclusive, `GET
 * /ca/<name>` (`legacy`): a `caPem` means x509-identity-mgmt; then EJBCA-REST's `certificate`, or
 * anything but "no such route" from it, lets EJBCA-REST explain; then x509-identity-mgmt's own
 * refusal (JSON, or the gateway's 401/403) lets it explain; else neither. "ask-legacy" while only
 * `modern` is known and it is not conclusive.
 */
export function whichApi(modern: HttpReply, legacy?: HttpReply): "x509" | "legacy" | "neither" | "ask-legacy" {
  if (typeof jsonObject(modern)?.caPem === "string") return "x509";
  if (!legacy) return "ask-legacy";
  if (typeof jsonObject(legacy)?.certificate === "string" || !noRoute(legacy)) return "legacy";
  // x509-identity-mgmt speaks JSON even to refuse; a page there is dojot v0.4's GUI route.
  if (!noRoute(modern) && (jsonObject(modern) || modern.status === 401 || modern.status === 403)) return "x509";
  return "neither";
}

/**
 * Whether a reply is a 404 that says "no such route" rather than an API refusing: from Kong, from the service behind it
 * (x509-identity-mgmt v0.5 `{"message":"Not Found"}`, v0.7+ `{"error":"Not Found"}`), or a page.
 */
export function noRoute(reply: HttpReply): boolean {
  if (reply.status !== 404) return false;
  const body = jsonObject(reply);
  const says =
    typeof body?.message === "string" ? body.message : typeof body?.error === "string" ? body.error : undefined;
  // Kong 0.11 (dojot v0.4): "no API found with those values"; 0.13-0.14: "no route and no API found with
  // those values"; 2.x (v0.5+): "no Route matched with those values".
  return !body || says === "Not Found" || /^no (route|API found)/i.test(says ?? "");
}
