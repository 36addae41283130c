import type { ServerResponse } from "node:http";
import type { LabCa } from "./ca.js";
import { revocationOf, setRevocation, unrevoke } from "./crl.js";
import { send } from "./replies.js";
import { updateState } from "./state.js";
import * as x509 from "./x509.js";

/**
 * EJBCA-REST's CA list and certificate revocation (dojot/ejbca-rest v0.4.3 `RESTmain.py`:
 * `getAvalibleCA`, `revokeCert`; `enumList.py`) over EJBCA 6.3.1.1 (`EjbcaWS.revokeCert`,
 * `EndEntityManagementSessionBean.revokeCert`, `CaSessionBean.getCAInternal`, as
 * EnigmaBridge/ejbca-community imported them). EJBCA knows a CA by the hash of its subject DN
 * (Java's `String.hashCode` of the DN as `CertTools.stringToBCDNString` writes it).
 */

/** EJBCA's DN component order (`DnComponents`, X.500 order as `stringToBCDNString` writes it); others follow. */
const DN_ORDER = ["E", "UID", "CN", "SN", "SERIALNUMBER", "G", "I", "T", "OU", "O", "L", "ST", "DC", "C"];

/** `CertTools.stringToBCDNString`: components in EJBCA's order, no blanks after commas; "" for text that is no DN. */
function bcDn(text: string): string {
  let rdns: x509.JsonName;
  try {
    rdns = new x509.Name(text).toJSON();
  } catch {
    return "";
  }
  const parts = rdns.flatMap((rdn) => Object.entries(rdn).flatMap(([k, vs]) => vs.map((v) => ({ k, v }))));
  const rank = (k: string) => (DN_ORDER.includes(k) ? DN_ORDER.indexOf(k) : DN_ORDER.length);
  return parts
    .map((p, i) => ({ ...p, i }))
    .sort((a, b) => rank(a.k) - rank(b.k) || a.i - b.i)
    .map(({ k, v }) => `${k}=${v}`)
    .join(",");
}

/** Java's `String.hashCode`. */
function javaHash(text: string): number {
  let h = 0;
  for (let i = 0; i < text.length; i++) h = (Math.imul(h, 31) + text.charCodeAt(i)) | 0;
  return h;
}

/** The CA's id in EJBCA: the hash of its subject DN (576968287 for dojot's `CN=IOTmidCA,O=EJBCA IOT,C=SE`). */
function caId(ca: LabCa): number {
  return javaHash(bcDn(ca.cert.subject));
}

/** `GET /ca`: `{"CAs": [{id, name}]}`, EJBCA's `getAvailableCAs` (`NameAndId`, fields in the WSDL's order); the lab has IOTmidCA only. */
export function availableCas(res: ServerResponse, ca: LabCa): void {
  send(res, 200, { CAs: [{ id: caId(ca), name: ca.name }] });
}

/** ejbca-rest's `REVOKATION_REASON` (`enumList.py` v0.4.3), by name as `?reason=` takes it. */
const REASONS: Readonly<Record<string, number>> = {
  AACOMPROMISE: 10,
  AFFILIATIONCHANGED: 3,
  CACOMPROMISE: 2,
  CERTIFICATEHOLD: 6,
  CESSATIONOFOPERATION: 5,
  KEYCOMPROMISE: 1,
  PRIVILEGESWITHDRAWN: 9,
  REMOVEFROMCRL: 8,
  SUPERSEDED: 4,
  UNSPECIFIED: 0,
  NOTREVOKED: -1,
};
const NOT_REVOKED = -1;
const CERTIFICATE_HOLD = 6;
const REMOVE_FROM_CRL = 8;

/**
 * `DELETE /ca/<cacn>/certificate/<certsn>[?reason=NAME]`: EJBCA's `revokeCert(issuerDN, serial
 * hex, reason)`, so `cacn` is the CA's subject DN (URL-encoded; the bare name is a DN with no
 * components, id 0). EJBCA checks, in order: the CA (by the DN's hash), the serial (Java's
 * `new BigInteger(certsn, 16)`), that the CA issued it, and the reason against its state (only a
 * certificate on hold may be unrevoked; one revoked for good stays so). The revocation shows in
 * the CA's next CRL, as EJBCA makes CRLs on their schedule or on `PUT /ca/<name>/crl`.
 */
export async function revokeCert(
  res: ServerResponse,
  url: URL,
  cacn: string,
  certsn: string,
  ctx: { dir: string; ca: LabCa },
): Promise<void> {
  const fail = (message: string) => send(res, 400, { message, status: 400 });
  let reason = REASONS.UNSPECIFIED!;
  const asked = url.searchParams.get("reason");
  if (asked !== null) {
    if (!Object.hasOwn(REASONS, asked)) return fail(`invalid revokation reason ${asked}`);
    reason = REASONS[asked]!;
  }
  const dn = bcDn(cacn);
  if (dn !== bcDn(ctx.ca.cert.subject))
    return fail(`soap message: Could not find CA with name null and ID ${javaHash(dn)}`);
  const serial = bigIntegerHex(certsn);
  if (typeof serial === "string") return fail(`soap message: ${serial}`);
  const hex = serial.toString(16);
  const refusal = await updateState(ctx.dir, (s) => {
    // The serial as the certificate has it, which the CRL entry repeats.
    const sn = Object.values(s.devices)
      .flatMap((e) => e.issued)
      .find((issued) => BigInt(`0x${issued}`) === serial);
    if (sn === undefined) return `Could not find end entity certificate. Issuer ${cacn}, serialNo ${hex}.`;
    const now = revocationOf(s, "legacy", sn)?.reason ?? NOT_REVOKED;
    if (reason === NOT_REVOKED || reason === REMOVE_FROM_CRL) {
      if (now !== CERTIFICATE_HOLD)
        return `Not allowed to unrevoke a certificate that is not on hold. Issuer ${cacn}, serialNo ${hex}.`;
      unrevoke(s, "legacy", sn);
      return undefined;
    }
    if (now !== NOT_REVOKED && now !== CERTIFICATE_HOLD && now !== REMOVE_FROM_CRL)
      return `Certificate is already revoked. Issuer: '${cacn}', serno: ${hex}.`;
    setRevocation(s, "legacy", sn, new Date(), reason);
    return undefined;
  });
  if (refusal) return fail(`soap message: ${refusal}`);
  return send(res, 200, { message: "ok", status: 200 });
}

/**
 * Java's `new BigInteger(text, 16)`, or the message of its NumberFormatException: a sign only in
 * front, then the digits read in groups (the first of `length % 7` digits, or 7, then 7 each) by
 * `Integer.parseInt`, whose message names the group it could not read.
 */
function bigIntegerHex(text: string): bigint | string {
  const signed = /^[+-]/.test(text);
  const digits = signed ? text.slice(1) : text;
  if (/[+-]/.test(digits)) return "Illegal embedded sign character";
  if (digits.length === 0) return "Zero length BigInteger";
  const first = digits.length % 7 || 7;
  for (let at = 0; at < digits.length; at = at === 0 ? first : at + 7) {
    const group = digits.slice(at, at === 0 ? first : at + 7);
    if (!/^[0-9a-fA-F]+$/.test(group)) return `For input string: "${group}"`;
  }
  const value = BigInt(`0x${digits}`);
  return text.startsWith("-") ? -value : value;
}
