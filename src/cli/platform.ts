import type { HttpClient } from "../transport/http.js";
import type { PlatformClient } from "../protocols/types.js";

/** The platform APIs of `--api`. */
export type ApiChoice = "auto" | "dojot" | "dojot-legacy" | "est";

/** What an EST client needs besides the URL and the HTTP client (see EstOptions). */
export type EstSettings = Omit<import("../protocols/est/client.js").EstOptions, "baseUrl" | "http">;

/**
 * EST's explicit trust anchors from the stored CA file: its certificates, unless a pin names none
 * of them (a CA that changed, another platform's CA): then the pin decides, as on a first run.
 * Returns the normalised pin too.
 */
export async function estTrust(storedCaPem: string | undefined, pin: string | undefined): Promise<{ anchors: string[]; pin?: string }> {
  const { certificatePems } = await import("../keys/key-types.js");
  const anchors = storedCaPem === undefined ? [] : certificatePems(storedCaPem);
  if (pin === undefined) return { anchors };
  const [{ normalizeFingerprint }, { sha256ColonHex }, x509] = await Promise.all([import("../flows/pin.js"), import("../keys/fingerprint.js"), import("../keys/x509.js")]);
  const wanted = normalizeFingerprint(pin);
  const fingerprint = (pem: string) => {
    try {
      return sha256ColonHex(new x509.X509Certificate(pem).rawData).replace(/:/g, "");
    } catch {
      return undefined;
    }
  };
  const pinned = anchors.some((pem) => fingerprint(pem) === wanted);
  return { anchors: pinned ? anchors : [], pin: wanted };
}

/** The platform client for `--api`. */
export async function makePlatform(
  api: ApiChoice,
  opts: { baseUrl: URL; caName: string; entityPassword: string; http: HttpClient; est?: EstSettings },
): Promise<PlatformClient> {
  if (api === "est") {
    const { EstClient, estBaseUrl } = await import("../protocols/est/client.js");
    if (!opts.est) throw new Error("an EST client needs its settings");
    return new EstClient({ baseUrl: estBaseUrl(opts.baseUrl), http: opts.http, ...opts.est });
  }
  const [{ DojotLegacyClient }, { DojotX509Client }] = await Promise.all([import("../protocols/ejbca-rest/client.js"), import("../protocols/x509-identity-mgmt/client.js")]);
  const legacy = new DojotLegacyClient(opts);
  const x509 = new DojotX509Client(opts);
  if (api === "dojot-legacy") return legacy;
  if (api === "dojot") return x509;
  const { AutoPlatformClient } = await import("../protocols/dojot-auto/client.js");
  return new AutoPlatformClient(legacy, x509);
}
