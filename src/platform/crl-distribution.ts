import * as x509 from "../crypto/x509.js";

/** The most a CRL from a distribution point may weigh (a CA's CRL is kilobytes, a large one megabytes). */
const MAX_CRL_BYTES = 16 * 1024 * 1024;

/** The http:// and https:// URLs of a certificate's CRL distribution points (RFC 5280 4.2.1.13, fullName URIs), in their order. */
export function crlDistributionUrls(cert: x509.X509Certificate): string[] {
  const ext = cert.getExtension(x509.CRLDistributionPointsExtension);
  const urls: string[] = [];
  for (const point of ext?.distributionPoints ?? []) {
    for (const name of point.distributionPoint?.fullName ?? []) {
      const uri = name.uniformResourceIdentifier;
      if (uri && /^https?:\/\//i.test(uri)) urls.push(uri);
    }
  }
  return urls;
}

/**
 * The CRL the first of `urls` that answers serves (DER, or PEM `X509 CRL`), each asked once with
 * `timeoutMs`; when none answers, the last failure. The caller checks the CRL's signature: a
 * distribution point is trusted for nothing.
 */
export async function fetchCrlFromDistributionPoints(urls: string[], timeoutMs: number): Promise<Uint8Array> {
  let last: unknown = new Error("the certificate names no http distribution point");
  for (const url of urls) {
    try {
      const reply = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: "follow" });
      if (!reply.ok) throw new Error(`${url} answered HTTP ${reply.status}`);
      if (Number(reply.headers.get("content-length") ?? 0) > MAX_CRL_BYTES) throw new Error(`${url} serves more than ${MAX_CRL_BYTES} bytes`);
      const body = new Uint8Array(await reply.arrayBuffer());
      if (body.byteLength > MAX_CRL_BYTES) throw new Error(`${url} serves more than ${MAX_CRL_BYTES} bytes`);
      const text = Buffer.from(body.subarray(0, 64)).toString("latin1");
      return text.includes("-----BEGIN X509 CRL-----") ? new Uint8Array(new x509.X509Crl(Buffer.from(body).toString("latin1")).rawData) : body;
    } catch (err) {
      last = err instanceof Error && err.name === "TimeoutError" ? new Error(`${url} did not answer within ${Math.round(timeoutMs / 1000)} s`) : err;
    }
  }
  throw last;
}
