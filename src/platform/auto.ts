import { CertRetrieverError } from "../errors.js";
import { ExitCode } from "../exit-codes.js";
import { DojotLegacyClient, parseCaReply } from "./dojot-legacy.js";
import { DojotX509Client, parseX509CaReply } from "./dojot-x509.js";
import { jsonObject, platformSays, type HttpReply } from "./http.js";
import type { FetchedCa, Issued, PlatformApi, PlatformClient, Session, SignRequest } from "./types.js";

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
    if (typeof jsonObject(modern)?.caPem === "string") return this.choose(this.x509, () => parseX509CaReply(modern));
    const legacy = await this.legacy.caReply(session);
    // Anything but "no such route" from EJBCA-REST is that API speaking, even to refuse or to garble: let it explain.
    if (typeof jsonObject(legacy)?.certificate === "string" || legacy.status !== 404) return this.choose(this.legacy, () => parseCaReply(legacy, this.legacy.caName));
    if (answered(modern)) return this.choose(this.x509, () => parseX509CaReply(modern));
    throw new CertRetrieverError(
      `fetch-ca failed: neither dojot API answered: GET /x509/v1/ca gave HTTP ${modern.status} (${platformSays(modern)}) and GET /ca/<name> gave HTTP ${legacy.status} (${platformSays(legacy)})`,
      { step: "fetch-ca", exitCode: ExitCode.CA, hint: "check --platform (dojot's gateway, port 8000), or choose the API with --api" },
    );
  }

  private choose(client: DojotLegacyClient | DojotX509Client, parse: () => FetchedCa): FetchedCa {
    this.chosen = client;
    return parse();
  }

  submitCsr(session: Session, req: SignRequest): Promise<Issued> {
    if (!this.chosen) throw new Error("submitCsr before fetchCa: the API is not detected yet");
    return this.chosen.submitCsr(session, req);
  }
}

/** Whether a reply comes from the API itself (JSON, not a 404 for a route the gateway lacks). */
function answered(reply: HttpReply): boolean {
  return reply.status !== 404 && (jsonObject(reply) !== undefined || reply.status === 401 || reply.status === 403);
}
