/**
 * CMP message protection by a shared secret: PasswordBasedMac (RFC 4211 §4.4, RFC 4210 §5.1.3.1), as
 * OpenSSL and EJBCA use it, or PBMAC1 (RFC 8018 §7.1, RFC 9481 §6.1.1: PBKDF2 and an HMAC). A
 * message's protection covers the DER of its header and body (ProtectedPart), taken from the bytes
 * received, never re-encoded.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier } from "@peculiar/asn1-x509";
import { ID_PASSWORD_BASED_MAC, ID_PBKDF2, ID_PBMAC1, PBKDF2Params, PBMAC1Params, PBMParameter } from "./asn1.js";

/** One-way functions, by OID, as Node names them. */
const OWF: Record<string, string> = {
  "1.3.14.3.2.26": "sha1",
  "2.16.840.1.101.3.4.2.4": "sha224",
  "2.16.840.1.101.3.4.2.1": "sha256",
  "2.16.840.1.101.3.4.2.2": "sha384",
  "2.16.840.1.101.3.4.2.3": "sha512",
};
/** HMACs, by OID (RFC 4211's hmac-sha1 and RFC 8018's hmacWithSHA*), by the hash Node names. */
const MAC: Record<string, string> = {
  "1.3.6.1.5.5.8.1.2": "sha1",
  "1.2.840.113549.2.7": "sha1",
  "1.2.840.113549.2.8": "sha224",
  "1.2.840.113549.2.9": "sha256",
  "1.2.840.113549.2.10": "sha384",
  "1.2.840.113549.2.11": "sha512",
};
/** OpenSSL's bound on the iterations a peer may ask for (OSSL_CRMF_PBM_MAX_ITERATION_COUNT): more is a denial of service. */
const MAX_ITERATIONS = 100_000;

/** The protection algorithm of our requests: PasswordBasedMac with SHA-256 and HMAC-SHA-256, 500 iterations, a fresh salt. */
export function newPbmAlgorithm(): AlgorithmIdentifier {
  const params = new PBMParameter({
    salt: new OctetString(randomBytes(16)),
    owf: new AlgorithmIdentifier({ algorithm: "2.16.840.1.101.3.4.2.1" }),
    iterationCount: 500,
    mac: new AlgorithmIdentifier({ algorithm: "1.2.840.113549.2.9" }),
  });
  return new AlgorithmIdentifier({ algorithm: ID_PASSWORD_BASED_MAC, parameters: AsnConvert.serialize(params) });
}

/** PBMAC1 with PBKDF2 (HMAC-SHA-256, 10,000 iterations, a fresh salt, a 32-byte key) and HMAC-SHA-256, as RFC 9481 §6.1.1 recommends. */
export function newPbmac1Algorithm(): AlgorithmIdentifier {
  const sha256Hmac = new AlgorithmIdentifier({
    algorithm: "1.2.840.113549.2.9",
    parameters: new Uint8Array([5, 0]).buffer,
  });
  const kdf = new PBKDF2Params({
    salt: new OctetString(randomBytes(16)),
    iterationCount: 10_000,
    keyLength: 32,
    prf: sha256Hmac,
  });
  const params = new PBMAC1Params({
    keyDerivationFunc: new AlgorithmIdentifier({ algorithm: ID_PBKDF2, parameters: AsnConvert.serialize(kdf) }),
    messageAuthScheme: sha256Hmac,
  });
  return new AlgorithmIdentifier({ algorithm: ID_PBMAC1, parameters: AsnConvert.serialize(params) });
}

/** PBMAC1's MAC of `data`: the key by PBKDF2 from the secret, then the HMAC; throws an Error naming what it cannot compute. */
function pbmac1(alg: AlgorithmIdentifier, secret: string, data: Uint8Array): Buffer {
  if (!alg.parameters) throw new Error("PBMAC1 without its parameters");
  const p = AsnConvert.parse(alg.parameters, PBMAC1Params);
  if (p.keyDerivationFunc.algorithm !== ID_PBKDF2 || !p.keyDerivationFunc.parameters)
    throw new Error(`PBMAC1 with the key derivation ${p.keyDerivationFunc.algorithm}, not PBKDF2`);
  const kdf = AsnConvert.parse(p.keyDerivationFunc.parameters, PBKDF2Params);
  const prf = MAC[kdf.prf?.algorithm ?? "1.2.840.113549.2.7"];
  const mac = MAC[p.messageAuthScheme.algorithm];
  if (!prf) throw new Error(`PBMAC1 with the unknown PBKDF2 PRF ${kdf.prf?.algorithm}`);
  if (!mac) throw new Error(`PBMAC1 with the unknown MAC ${p.messageAuthScheme.algorithm}`);
  if (kdf.iterationCount < 1 || kdf.iterationCount > MAX_ITERATIONS)
    throw new Error(`PBMAC1 with ${kdf.iterationCount} iterations (1 to ${MAX_ITERATIONS} are taken)`);
  const length = kdf.keyLength ?? createHash(mac).digest().length;
  if (length < 1 || length > 64) throw new Error(`PBMAC1 with a key of ${length} bytes`);
  const key = pbkdf2Sync(Buffer.from(secret, "utf8"), Buffer.from(kdf.salt.buffer), kdf.iterationCount, length, prf);
  return createHmac(mac, key).update(data).digest();
}

/** The PasswordBasedMac (or PBMAC1) of `data` under `alg`; throws an Error naming what it cannot compute. */
export function passwordBasedMac(alg: AlgorithmIdentifier, secret: string, data: Uint8Array): Buffer {
  if (alg.algorithm === ID_PBMAC1) return pbmac1(alg, secret, data);
  if (alg.algorithm !== ID_PASSWORD_BASED_MAC)
    throw new Error(
      `protection ${alg.algorithm} is neither PasswordBasedMac (${ID_PASSWORD_BASED_MAC}) nor PBMAC1 (${ID_PBMAC1})`,
    );
  if (!alg.parameters) throw new Error("PasswordBasedMac without its parameters");
  const p = AsnConvert.parse(alg.parameters, PBMParameter);
  const owf = OWF[p.owf.algorithm];
  const mac = MAC[p.mac.algorithm];
  if (!owf) throw new Error(`PasswordBasedMac with the unknown one-way function ${p.owf.algorithm}`);
  if (!mac) throw new Error(`PasswordBasedMac with the unknown MAC ${p.mac.algorithm}`);
  if (p.iterationCount < 1 || p.iterationCount > MAX_ITERATIONS)
    throw new Error(`PasswordBasedMac with ${p.iterationCount} iterations (1 to ${MAX_ITERATIONS} are taken)`);
  let key = createHash(owf).update(Buffer.from(secret, "utf8")).update(Buffer.from(p.salt.buffer)).digest();
  for (let i = 1; i < p.iterationCount; i++) key = createHash(owf).update(key).digest();
  return createHmac(mac, key).update(data).digest();
}

/** Whether `mac` is the PasswordBasedMac of `data` with the secret (compared in constant time). */
export function macMatches(alg: AlgorithmIdentifier, secret: string, data: Uint8Array, mac: Uint8Array): boolean {
  const expected = passwordBasedMac(alg, secret, data);
  return expected.length === mac.length && timingSafeEqual(expected, Buffer.from(mac));
}
