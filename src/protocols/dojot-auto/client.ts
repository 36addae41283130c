import { CertRetrieverError } from "../../errors.js";
import { DojotLegacyClient, parseCaReply } from "../ejbca-rest/client.js";
import { DojotX509Client } from "../x509-identity-mgmt/client.js";
import { jsonObject, platformSays, replyFacts, type HttpReply } from "../../transport/http.js";
import { API_TRAITS, type Binding, type FetchedCa, type Issued, type PlatformApi, type PlatformClient, type Session, type SignRequest } from "../types.js";

/**
 * `--api auto`: finds out which generation answers, by the content of the replies and not their
 * status (on dojot v0.4 Kong sends unknown paths to the GUI, so a bare 200 proves nothing):
 * `GET /x509/v1/ca` with `caPem` means x509-identity-mgmt, else `GET /ca/<name>` with
 * `certificate` means EJBCA-REST. Done once, at the fetch-ca step, with the run's one token.
 */
export class AutoPlatformClient implements PlatformClient {
  private chosen: DojotLegacyClient | DojotX509Client | undefined;

  constructor(
    private readonly legacy: DojotLegacyClient,
    private readonly x509: DojotX509Client,
  ) {}

  api(): PlatformApi {
    return this.chosen?.api() ?? "dojot";
  }

  /** Whether detection has run. */
  detected(): boolean {
    return this.chosen !== undefined;
  }

  authenticate(username: string, password: string): Promise<Session> {
    return this.x509.authenticate(username, password); // the same POST /auth in both generations
  }

  async fetchCa(session: Session): Promise<FetchedCa> {
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
          { step: "fetch-ca", reason: "not-a-dojot-platform", facts: replyFacts(modern) },
        );
    }
  }

  private choose(client: DojotLegacyClient | DojotX509Client, parse: () => Promise<FetchedCa>): Promise<FetchedCa> {
    this.chosen = client;
    return parse();
  }

  async prepare(session: Session, deviceId: string): Promise<void> {
    if (this.chosen instanceof DojotX509Client) await this.chosen.prepare(session, deviceId);
  }

  submitCsr(session: Session, req: SignRequest): Promise<Issued> {
    return this.detectedClient().submitCsr(session, req);
  }

  async bind(session: Session, issued: Issued, deviceId: string): Promise<Binding> {
    const client = this.detectedClient();
    return client instanceof DojotX509Client ? client.bind(session, issued, deviceId) : { bound: false, detail: `not needed: ${API_TRAITS[client.api()].title} ${API_TRAITS[client.api()].unbound}` };
  }

  fetchCrl(session: Session): Promise<Uint8Array> {
    return this.detectedClient().fetchCrl(session);
  }

  async revoke(session: Session, fingerprint: string): Promise<"revoked" | "absent" | "not-supported"> {
    const client = this.detectedClient();
    return client instanceof DojotX509Client ? client.revoke(session, fingerprint) : "not-supported";
  }

  private detectedClient(): DojotLegacyClient | DojotX509Client {
    if (!this.chosen) throw new Error("a request before fetchCa: the API is not detected yet");
    return this.chosen;
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
  const says = typeof body?.message === "string" ? body.message : typeof body?.error === "string" ? body.error : undefined;
  // Kong 0.x (dojot v0.4): "no route and no API found with those values"; Kong 2.x (v0.5+): "no Route matched with those values".
  return !body || says === "Not Found" || /^no route/i.test(says ?? "");
}
