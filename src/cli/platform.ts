import type { HttpClient } from "../platform/http.js";
import type { PlatformClient } from "../platform/types.js";

/** The platform APIs of `--api`. */
export type ApiChoice = "auto" | "dojot" | "dojot-legacy" | "est";

/** What an EST client needs besides the URL: its trust anchors and whether Basic is sent (see EstOptions). */
export interface EstSettings {
  anchors?: string[];
  pinned: boolean;
  platformCa: boolean;
  basic: boolean;
  signal?: AbortSignal;
}

/** The platform client for `--api`. */
export async function makePlatform(
  api: ApiChoice,
  opts: { baseUrl: URL; caName: string; entityPassword: string; http: HttpClient; est?: EstSettings },
): Promise<PlatformClient> {
  if (api === "est") {
    const { EstClient, estBaseUrl } = await import("../platform/est.js");
    return new EstClient({ baseUrl: estBaseUrl(opts.baseUrl), http: opts.http, ...(opts.est ?? { pinned: false, platformCa: false, basic: true }) });
  }
  const [{ DojotLegacyClient }, { DojotX509Client }] = await Promise.all([import("../platform/dojot-legacy.js"), import("../platform/dojot-x509.js")]);
  const legacy = new DojotLegacyClient(opts);
  const x509 = new DojotX509Client(opts);
  if (api === "dojot-legacy") return legacy;
  if (api === "dojot") return x509;
  const { AutoPlatformClient } = await import("../platform/auto.js");
  return new AutoPlatformClient(legacy, x509);
}
