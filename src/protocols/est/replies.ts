/** How an EST server's replies are read, and what its refusals mean. */
import { CertRetrieverError, describeCause, type Reason, type Step } from "../../errors.js";
import { decodeBase64 } from "../../keys/base64.js";
import { certsFromPkcs7 } from "../../keys/pkcs7.js";
import * as x509 from "../../keys/x509.js";
import { bodySummary, type HttpReply, replyFacts } from "../../transport/http.js";
import { EST } from "./name.js";

/** The certificates of a 200 reply: a base64 certs-only PKCS#7 (§4.1.3; RFC 8951: base64 whatever the headers say). */
export function pkcs7Reply(step: Step, reply: HttpReply, what: string): Uint8Array[] {
  const type = reply.contentType.split(";")[0]!.trim().toLowerCase();
  if (type !== "application/pkcs7-mime")
    throw malformedEst(
      step,
      reply,
      `${what} as application/pkcs7-mime, not ${type ? `'${type}'` : "a reply without a Content-Type"}`,
    );
  const der = decodeBase64(reply.text.replace(/[ \t]/g, "").trim());
  if (!der) throw malformedEst(step, reply, `${what} in base64`);
  try {
    const certs = certsFromPkcs7(der);
    for (const cert of certs) x509.readInFull(new x509.X509Certificate(new Uint8Array(cert))); // each must parse as X.509
    return certs;
  } catch (err) {
    throw malformedEst(step, reply, `${what} as a certs-only PKCS#7 (${describeCause(err)})`);
  }
}

/** The error for a refused enrollment request. */
export function enrollError(
  reply: HttpReply,
  renewing: boolean,
  username: string,
  withCert: boolean,
): CertRetrieverError {
  const says = bodySummary(reply);
  const facts = { ...estFacts(reply), renewing };
  if (reply.status === 401 || reply.status === 403) {
    const what = renewing
      ? `the EST server refused to re-enroll with the current certificate (HTTP ${reply.status}: ${says})`
      : username
        ? `the EST server refused user '${username}' or the password${withCert ? ", or the client certificate" : ""} (HTTP ${reply.status}: ${says})`
        : `the EST server refused the client certificate (HTTP ${reply.status}: ${says})`;
    const reason: Reason =
      renewing || !username
        ? reply.status === 401
          ? "client-cert-required"
          : "permission-denied"
        : reply.status === 401
          ? "auth-refused"
          : "permission-denied";
    return new CertRetrieverError(`submit-csr failed: ${what}; nothing was written`, {
      step: "submit-csr",
      reason,
      facts,
    });
  }
  return estError(
    "submit-csr",
    reply,
    renewing ? "the EST server refused the re-enrollment" : "the EST server refused the enrollment",
    "csr-refused",
  );
}

/** The error for a non-2xx reply: a 4xx from the EST server is `reason`; what is not EST at all says so. */
export function estError(
  step: Step,
  reply: HttpReply,
  doing: string,
  reason: Reason = "platform-error",
): CertRetrieverError {
  if (reply.status === 404 || reply.status === 405 || reply.status === 501) {
    return new CertRetrieverError(
      `${step} failed: ${doing}: HTTP ${reply.status} (${bodySummary(reply)}); is ${reply.request ?? "the URL"} an EST server's (…/.well-known/est[/<label>])?`,
      {
        step,
        reason: "not-a-dojot-platform",
        facts: estFacts(reply),
      },
    );
  }
  return new CertRetrieverError(`${step} failed: ${doing}: HTTP ${reply.status}: ${bodySummary(reply)}`, {
    step,
    reason: reply.status >= 500 ? "platform-error" : reason,
    facts: estFacts(reply),
  });
}

/** A reply that is not what RFC 7030 promises. */
function malformedEst(step: Step, reply: HttpReply, expected: string): CertRetrieverError {
  return new CertRetrieverError(
    `${step} failed: the EST server's reply (HTTP ${reply.status}) is not what RFC 7030 promises: expected ${expected}; nothing was written`,
    {
      step,
      reason: "reply-malformed",
      facts: estFacts(reply),
    },
  );
}

/** A reply's facts, saying they are an EST server's (the CLI's hints differ). */
export function estFacts(reply: HttpReply): { status: number; platformMessage: string; protocol: string } {
  return { ...replyFacts(reply), protocol: EST };
}
