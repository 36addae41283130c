import type { HttpClient } from "../platform/http.js";
import type { PlatformClient } from "../platform/types.js";

/** The platform client for `--api`. */
export async function makePlatform(
  api: "auto" | "dojot" | "dojot-legacy",
  opts: { baseUrl: URL; caName: string; entityPassword: string; http: HttpClient },
): Promise<PlatformClient> {
  const [{ DojotLegacyClient }, { DojotX509Client }] = await Promise.all([import("../platform/dojot-legacy.js"), import("../platform/dojot-x509.js")]);
  const legacy = new DojotLegacyClient(opts);
  const x509 = new DojotX509Client(opts);
  if (api === "dojot-legacy") return legacy;
  if (api === "dojot") return x509;
  const { AutoPlatformClient } = await import("../platform/auto.js");
  return new AutoPlatformClient(legacy, x509);
}
