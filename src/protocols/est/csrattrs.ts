/** EST's /csrattrs (RFC 7030 §4.5, RFC 9908): what a server asks of the CSR. */
import { isKeyType, type KeyType } from "../../keys/key-types.js";
import { type CsrAttr, integerOf, OIDS, oidOf } from "../../keys/pkcs7.js";

/** What cert-retriever makes of /csrattrs: the key type asked for, and notes on the rest. */
export function readCsrAttrs(attrs: CsrAttr[]): { keyType?: KeyType; notes: string[] } {
  let keyType: KeyType | undefined;
  const notes: string[] = [];
  for (const attr of attrs) {
    if ("oid" in attr) {
      if (attr.oid === OIDS.rsaEncryption) keyType ??= "rsa-2048";
      else if (attr.oid === OIDS.ecdsaWithSHA384) keyType ??= "ec-p384";
      else if (attr.oid === OIDS.ecdsaWithSHA256 || attr.oid === OIDS.ecPublicKey) keyType ??= "ec-p256";
      else if (attr.oid === OIDS.challengePassword)
        notes.push(
          "the EST server asks for the TLS channel binding (challengePassword, RFC 7030 §3.5), which cert-retriever does not send",
        );
      else notes.push(`the EST server asks for ${attr.oid} in the CSR, which cert-retriever does not add`);
      continue;
    }
    if (attr.attribute === OIDS.rsaEncryption) {
      // The newer form (RFC 9908) gives the modulus size as an INTEGER.
      const bits = attr.values.map(integerOf)[0];
      const asked = bits === undefined ? "rsa-2048" : (`rsa-${bits}` as KeyType);
      if (isKeyType(asked)) keyType = asked;
      else notes.push(`the EST server asks for an RSA key of ${bits} bits, which cert-retriever cannot make`);
    } else if (attr.attribute === OIDS.ecPublicKey) {
      const curve = attr.values.map(oidOf)[0];
      const asked = curve === OIDS.secp384r1 ? "ec-p384" : curve === OIDS.secp256r1 ? "ec-p256" : undefined;
      if (asked) keyType = asked;
      else
        notes.push(
          `the EST server asks for an EC key on curve ${curve ?? "(unreadable)"}, which cert-retriever cannot make`,
        );
    } else if (attr.attribute === OIDS.extensionRequest) {
      const wanted = attr.values.map((v) => oidOf(v) ?? "(unreadable)");
      notes.push(
        `the EST server asks for the extension${wanted.length === 1 ? "" : "s"} ${wanted.join(", ")} in the CSR, which cert-retriever does not add`,
      );
    } else {
      notes.push(
        `the EST server asks for the attribute ${attr.attribute} in the CSR, which cert-retriever does not add`,
      );
    }
  }
  return { keyType, notes };
}
