import * as x509 from "../keys/x509.js";

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

/** The distribution points asked, at most. */
const MAX_URLS = 3;

/**
 * The CRL the first of `urls` that answers serves (DER, or PEM `X509 CRL`), all of them within
 * `timeoutMs` together (at most the first three); when none answers, the last failure. The caller
 * checks the CRL's signature: a distribution point is trusted for nothing.
 */
export async function fetchCrlFromDistributionPoints(urls: string[], timeoutMs: number): Promise<Uint8Array> {
  const signal = AbortSignal.timeout(timeoutMs);
  let last: unknown = new Error("the certificate names no http distribution point");
  for (const url of urls.slice(0, MAX_URLS)) {
    try {
      const reply = await fetch(url, { signal, redirect: "follow" });
      if (!reply.ok) throw new Error(`${url} answered HTTP ${reply.status}`);
      const body = await boundedBody(reply, url);
      const text = Buffer.from(body.subarray(0, 64)).toString("latin1");
      return text.includes("-----BEGIN X509 CRL-----") ? new Uint8Array(new x509.X509Crl(Buffer.from(body).toString("latin1")).rawData) : body;
    } catch (err) {
      last = err instanceof Error && (err.name === "TimeoutError" || signal.aborted) ? new Error(`${url} did not answer within ${Math.round(timeoutMs / 1000)} s`) : err;
      if (signal.aborted) break;
    }
  }
  throw last;
}

/** The reply's body, read as it comes and refused past {@link MAX_CRL_BYTES} (a length header may be absent or wrong). */
async function boundedBody(reply: Response, url: string): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = reply.body!.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_CRL_BYTES) {
      await reader.cancel();
      throw new Error(`${url} serves more than ${MAX_CRL_BYTES} bytes`);
    }
    chunks.push(value);
  }
  return new Uint8Array(Buffer.concat(chunks));
}
