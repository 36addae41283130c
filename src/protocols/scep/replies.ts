/** How a SCEP server's HTTP replies are read, and what its refusals mean. */
import { CertRetrieverError, type Reason, type Step } from "../../errors.js";
import { bodySummary, type HttpBytesReply, type HttpReply, replyFacts } from "../../transport/http.js";
import { SCEP } from "./name.js";

/** The reply with its body as text, for messages. */
function asText(reply: HttpBytesReply): HttpReply {
  const { body, ...rest } = reply;
  return { ...rest, text: body.toString("utf8") };
}

/** A reply's facts, saying they are a SCEP server's (the CLI's hints differ). */
function scepFacts(reply: HttpBytesReply): { status: number; platformMessage: string; protocol: string } {
  return { ...replyFacts(asText(reply)), protocol: SCEP };
}

/** A reply that is not what RFC 8894 promises. */
export function malformed(step: Step, reply: HttpBytesReply, expected: string): CertRetrieverError {
  return new CertRetrieverError(
    `${step} failed: the SCEP server's reply (HTTP ${reply.status}) is not what RFC 8894 promises: expected ${expected}; nothing was written`,
    { step, reason: "reply-malformed", facts: scepFacts(reply) },
  );
}

/** The error for a non-200 reply: what is not SCEP at all says so; a 5xx is the server's error. */
export function httpError(
  step: Step,
  reply: HttpBytesReply,
  doing: string,
  reason: Reason = "platform-error",
): CertRetrieverError {
  const says = bodySummary(asText(reply));
  if (reply.status === 404 || reply.status === 405 || reply.status === 501)
    return new CertRetrieverError(
      `${step} failed: ${doing}: HTTP ${reply.status} (${says}); is ${reply.request ?? "the URL"} a SCEP server's (e.g. http://HOST:PORT/scep)?`,
      { step, reason: "not-a-dojot-platform", facts: scepFacts(reply) },
    );
  return new CertRetrieverError(`${step} failed: ${doing}: HTTP ${reply.status}: ${says}; nothing was written`, {
    step,
    reason: reply.status >= 500 && reason === "platform-error" ? "platform-error" : reason,
    facts: scepFacts(reply),
  });
}

/** failInfo's values (RFC 8894 §3.2.1.4.5). */
const FAIL_INFO: Record<string, string> = {
  "0": "badAlg: the server does not take the algorithms of the request",
  "1": "badMessageCheck: the request's signature did not verify",
  "2": "badRequest: the server refused the request (a wrong or used challenge password, or a request its policy refuses)",
  "3": "badTime: the request's signingTime was not close enough to the server's clock",
  "4": "badCertID: the server knows no certificate matching the request",
};

/** A CertRep with pkiStatus FAILURE. */
export function failure(failInfo: string | undefined, renewing: boolean): CertRetrieverError {
  const what = failInfo === undefined ? "no failInfo" : (FAIL_INFO[failInfo] ?? `failInfo ${failInfo}`);
  return new CertRetrieverError(
    `submit-csr failed: the SCEP server refused the ${renewing ? "renewal (RenewalReq)" : "enrollment (PKCSReq)"}: pkiStatus FAILURE, ${what}; nothing was written`,
    { step: "submit-csr", reason: "csr-refused", facts: { protocol: SCEP, platformMessage: what, renewing } },
  );
}
