/**
 * What a SCEP server says it can do (`GetCACaps`, RFC 8894 §3.5.2) and the algorithms a run uses
 * with it: AES and SHA-256 where offered; DES, 3DES, SHA-1 and MD5 only when the settings say the
 * server is that old.
 */
import { CertRetrieverError } from "../../errors.js";
import { SCEP } from "./name.js";

/** A content-encryption algorithm of an EnvelopedData, by its Node cipher name. */
export type ContentCipher = "aes-128-cbc" | "aes-192-cbc" | "aes-256-cbc" | "des-ede3-cbc" | "des-cbc";

/** A message digest, by its Node name. */
export type Digest = "sha256" | "sha384" | "sha512" | "sha1" | "md5";

/** What a run asks of the server and how it protects its messages. */
export interface ScepAlgorithms {
  cipher: ContentCipher;
  digest: Digest;
  /** `POSTPKIOperation`: messages go as a POST body, else base64 in a GET's query. */
  post: boolean;
  /** `Renewal`: a RenewalReq signed by the current certificate is taken. */
  renewal: boolean;
}

/** The capabilities in a GetCACaps reply: one keyword a line, compared without case (§3.5.2). */
export function parseCaps(text: string): Set<string> {
  return new Set(
    text
      .split(/\r?\n/)
      .map((line) => line.trim().toUpperCase())
      .filter((line) => line !== ""),
  );
}

/**
 * The algorithms for a server offering `caps`. `SCEPStandard` implies AES, SHA-256 and
 * POSTPKIOperation (§3.5.2). A server that offers nothing better than DES or 3DES, or SHA-1 or
 * MD5, is refused (`scep-weak-crypto`) unless `legacy`.
 */
export function chooseAlgorithms(caps: Set<string>, legacy: boolean): ScepAlgorithms {
  const standard = caps.has("SCEPSTANDARD");
  const cipher: ContentCipher | undefined =
    standard || caps.has("AES") ? "aes-128-cbc" : legacy ? (caps.has("DES3") ? "des-ede3-cbc" : "des-cbc") : undefined;
  const digest: Digest | undefined =
    standard || caps.has("SHA-256")
      ? "sha256"
      : caps.has("SHA-512")
        ? "sha512"
        : legacy
          ? caps.has("SHA-1")
            ? "sha1"
            : "md5"
          : undefined;
  if (!cipher || !digest) {
    const weak = [
      !cipher && (caps.has("DES3") ? "3DES" : "DES"),
      !digest && (caps.has("SHA-1") ? "SHA-1" : "MD5"),
    ].filter(Boolean);
    throw new CertRetrieverError(
      `fetch-ca failed: the SCEP server offers nothing stronger than ${weak.join(" and ")} (GetCACaps: ${[...caps].join(", ") || "nothing"}), which are broken; no key was made and nothing was sent`,
      { step: "fetch-ca", reason: "scep-weak-crypto", facts: { protocol: SCEP } },
    );
  }
  return { cipher, digest, post: standard || caps.has("POSTPKIOPERATION"), renewal: caps.has("RENEWAL") };
}
