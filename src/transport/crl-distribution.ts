import { CertRetrieverError } from "../errors.js";
import * as x509 from "../keys/x509.js";
import type { HttpBytesReply, HttpClient } from "./http.js";
import { redirectRefusal } from "./redirects.js";

/** The most a CRL from a distribution point may weigh (a CA's CRL is kilobytes, a large one megabytes). */
const MAX_CRL_BYTES = 16 * 1024 * 1024;

/** The distribution points asked, at most. */
const MAX_URLS = 3;

/** How long all the distribution points asked may take together, unless the caller says. */
const DISTRIBUTION_POINTS_MS = 30_000;

/** The statuses of a redirect. */
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

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
 * The CRL the first of `urls` that answers serves (DER, or PEM `X509 CRL`), asked through `http`
 * (its proxy, trust anchors, retries and deadline), all of them within `timeoutMs` together (at
 * most the first three); when none answers, the last failure. A redirect is followed only on the
 * distribution point's own scheme and host (see redirects.ts). The caller checks the CRL's
 * signature: a distribution point is trusted for nothing.
 */
export async function fetchCrlFromDistributionPoints(
  urls: readonly string[],
  http: HttpClient,
  timeoutMs = DISTRIBUTION_POINTS_MS,
): Promise<Uint8Array> {
  const deadline = Math.min(http.deadline, Date.now() + timeoutMs);
  let last: unknown = new Error("the certificate names no http distribution point");
  for (const url of urls.slice(0, MAX_URLS)) {
    try {
      return crlBytes(await fetchFollowing(http, new URL(url), deadline));
    } catch (err) {
      last = err;
      // Out of time, or interrupted: the next distribution point would meet the same end.
      if (err instanceof CertRetrieverError && ["deadline", "interrupted", "terminated"].includes(err.reason)) break;
    }
  }
  throw last;
}

/** The body `start` serves, following the redirects {@link redirectRefusal} allows. */
async function fetchFollowing(http: HttpClient, start: URL, deadline: number): Promise<Buffer> {
  let url = start;
  for (let hops = 1; ; hops++) {
    const reply = await http.request("revocation", url, {
      method: "GET",
      headers: { accept: "application/pkix-crl, application/x-pem-file;q=0.9, */*;q=0.5" },
      maxBytes: MAX_CRL_BYTES,
      deadline,
      peer: "the CRL distribution point",
    });
    if (!REDIRECTS.has(reply.status)) {
      if (reply.status < 200 || reply.status > 299) throw refused(url, reply, `${url} answered HTTP ${reply.status}`);
      return reply.body;
    }
    const to = URL.canParse(reply.location ?? "", url) ? new URL(reply.location!, url) : undefined;
    const refusal = to ? redirectRefusal(start, to, hops) : "its Location is missing or not a URL";
    if (refusal)
      throw refused(
        url,
        reply,
        `${url} redirects to ${reply.location ?? "nowhere"}, which is not followed: ${refusal}`,
      );
    url = to!;
  }
}

/** A distribution point's answer that holds no CRL. */
function refused(url: URL, reply: HttpBytesReply, what: string): CertRetrieverError {
  return new CertRetrieverError(`revocation failed: ${what}`, {
    step: "revocation",
    reason: "platform-error",
    facts: { status: reply.status, host: url.host },
  });
}

/** The CRL's DER: a PEM `X509 CRL` is decoded; anything else is taken as DER, for the caller to parse and check. */
function crlBytes(body: Buffer): Uint8Array {
  const text = body.subarray(0, 64).toString("latin1");
  return text.includes("-----BEGIN X509 CRL-----")
    ? new Uint8Array(new x509.X509Crl(body.toString("latin1")).rawData)
    : new Uint8Array(body);
}
