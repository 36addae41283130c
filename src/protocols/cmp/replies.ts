/** What a CMP server's answers and refusals mean, as errors of this client's reasons. */
import { CertRetrieverError, type Reason, type Step } from "../../errors.js";
import type { ErrorMsgContent, PKIStatusInfo } from "./asn1.js";
import { describeStatus, failInfoNames } from "./messages.js";
import { CMP } from "./name.js";

/** Failure bits that say the server did not take our protection or our reference (RFC 9483 §3.6.4). */
const AUTH_BITS = ["badMessageCheck", "wrongIntegrity", "signerNotTrusted", "notAuthorized", "badSenderNonce"];

/** A refusal the server sent (an error message, or a rejection in a certificate response). */
export function refusal(
  step: Step,
  info: PKIStatusInfo,
  what: string,
  proof: "verified" | "unverified" | "mismatch",
  details: string[] = [],
  signedBy?: "bootstrap" | "current",
): CertRetrieverError {
  const bits = failInfoNames(info);
  const said = describeStatus(info, details);
  const auth = proof === "mismatch" || bits.some((b) => AUTH_BITS.includes(b));
  const reason: Reason = auth ? "auth-refused" : step === "submit-csr" ? "csr-refused" : "platform-error";
  const why =
    proof === "mismatch"
      ? "; its answer's protection does not verify with the shared secret either, so the secret (or the reference naming it) is wrong"
      : proof === "unverified"
        ? " (an unprotected answer: what it says is not proven)"
        : "";
  return new CertRetrieverError(`${step} failed: the CMP server refused ${what}: ${said}${why}; nothing was written`, {
    step,
    reason,
    facts: { protocol: CMP, platformMessage: said, signedBy },
  });
}

/** The status of an error message's content. */
export function errorContent(
  step: Step,
  content: ErrorMsgContent,
  what: string,
  proof: "verified" | "unverified" | "mismatch",
  signedBy?: "bootstrap" | "current",
) {
  return refusal(step, content.pKIStatusInfo, what, proof, [...(content.errorDetails ?? [])], signedBy);
}

/** An answer that is not what the profile promises. */
export function malformed(step: Step, what: string): CertRetrieverError {
  return new CertRetrieverError(`${step} failed: the CMP server's answer ${what}; nothing was written`, {
    step,
    reason: "reply-malformed",
    facts: { protocol: CMP },
  });
}
