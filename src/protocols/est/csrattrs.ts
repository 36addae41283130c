/** EST's /csrattrs (RFC 7030 §4.5, RFC 9908): what a server asks of the CSR. */
import { isKeyType, type KeyType } from "../../keys/key-types.js";
import { type CsrAttr, integerOf, OIDS, oidOf } from "../../keys/pkcs7.js";

/** The most notes /csrattrs gives (the rest are counted in the last): a server's list must not flood the output. */
const MAX_NOTES = 5;

/** What one entry of /csrattrs asks: a key type (`set`: the attribute form, which wins over an OID's hint), or a note. */
type Asked = { keyType?: KeyType; set?: boolean; note?: string };

/** An OID as a message shows it: a hostile one may be thousands of arcs long. */
function shown(oid: string | undefined): string {
  if (oid === undefined) return "(unreadable)";
  return oid.length > 64 ? `${oid.slice(0, 61)}...` : oid;
}

/** What an OID alone asks for. */
function readOid(oid: string): Asked {
  if (oid === OIDS.rsaEncryption) return { keyType: "rsa-2048" };
  if (oid === OIDS.ecdsaWithSHA384) return { keyType: "ec-p384" };
  if (oid === OIDS.ecdsaWithSHA256 || oid === OIDS.ecPublicKey) return { keyType: "ec-p256" };
  if (oid === OIDS.challengePassword)
    return {
      note: "the EST server asks for the TLS channel binding (challengePassword, RFC 7030 §3.5), which cert-retriever does not send",
    };
  return { note: `the EST server asks for ${shown(oid)} in the CSR, which cert-retriever does not add` };
}

/** What an attribute with values asks for. */
function readAttribute(attribute: string, values: Uint8Array[]): Asked {
  if (attribute === OIDS.rsaEncryption) {
    // The newer form (RFC 9908) gives the modulus size as an INTEGER.
    const bits = values.map(integerOf)[0];
    const asked = bits === undefined ? "rsa-2048" : `rsa-${bits}`;
    return isKeyType(asked)
      ? { keyType: asked, set: true }
      : { note: `the EST server asks for an RSA key of ${shown(String(bits))} bits, which cert-retriever cannot make` };
  }
  if (attribute === OIDS.ecPublicKey) {
    const curve = values.map(oidOf)[0];
    const asked = curve === OIDS.secp384r1 ? "ec-p384" : curve === OIDS.secp256r1 ? "ec-p256" : undefined;
    return asked
      ? { keyType: asked, set: true }
      : { note: `the EST server asks for an EC key on curve ${shown(curve)}, which cert-retriever cannot make` };
  }
  if (attribute === OIDS.extensionRequest) {
    const wanted = values.slice(0, 3).map((v) => shown(oidOf(v)));
    const more = values.length > 3 ? ` and ${values.length - 3} more` : "";
    return {
      note: `the EST server asks for the extension${values.length === 1 ? "" : "s"} ${wanted.join(", ")}${more} in the CSR, which cert-retriever does not add`,
    };
  }
  return {
    note: `the EST server asks for the attribute ${shown(attribute)} in the CSR, which cert-retriever does not add`,
  };
}

/** What cert-retriever makes of /csrattrs: the key type asked for, and notes on the rest (at most {@link MAX_NOTES}). */
export function readCsrAttrs(attrs: CsrAttr[]): { keyType?: KeyType; notes: string[] } {
  let keyType: KeyType | undefined;
  const notes: string[] = [];
  for (const attr of attrs) {
    const asked = "oid" in attr ? readOid(attr.oid) : readAttribute(attr.attribute, attr.values);
    if (asked.keyType) keyType = asked.set ? asked.keyType : (keyType ?? asked.keyType);
    if (asked.note) notes.push(asked.note);
  }
  if (notes.length <= MAX_NOTES) return { keyType, notes };
  return {
    keyType,
    notes: [
      ...notes.slice(0, MAX_NOTES - 1),
      `the EST server asks for ${notes.length - MAX_NOTES + 1} more things in the CSR that cert-retriever does not add`,
    ],
  };
}
