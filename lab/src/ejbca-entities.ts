import type { ServerResponse } from "node:http";
import { send, sendFlaskError } from "./replies.js";
import { type EndEntity, entityOf, loadState, newEndEntity, updateState } from "./state.js";
import * as x509 from "./x509.js";

/**
 * EJBCA-REST's end-entity routes (dojot/ejbca-rest v0.4.3: `RESTmain.py` `findUser` and
 * `createOrEditUser`, `controller/UserController.py`) over the EJBCA it runs, EJBCA 6.3.1.1
 * (r21429, the `Dockerfile`'s `ejbca_ce_6_3_1_1`; its sources as EnigmaBridge/ejbca-community
 * imported them: `EjbcaWS.java`, `EjbcaWSHelper.java`, `EndEntityManagementSessionBean.java`,
 * `EndEntityAuthenticationSessionBean.java`). Replies are Flask's `formatResponse`:
 * `{"message": …, "status": …}`.
 */

/** EJBCA's end-entity statuses by code (`EndEntityConstants`, EJBCA 6.3.1.1). */
const STATUS_NAMES: Readonly<Record<number, string>> = {
  10: "NEW",
  11: "FAILED",
  20: "INITIALIZED",
  30: "INPROCESS",
  40: "GENERATED",
  50: "REVOKED",
  60: "HISTORICAL",
  70: "KEYRECOVERY",
};
const NEW = 10;
/** The statuses `authenticateUser` signs for: NEW, FAILED, INPROCESS, KEYRECOVERY. */
const SIGNABLE = [10, 11, 30, 70];

/** An entity's status code; labs before EJBCA's codes were kept wrote the names NEW and GENERATED. */
function statusCode(entity: EndEntity): number {
  if (typeof entity.status === "number") return entity.status;
  return entity.status === "NEW" ? NEW : 40;
}

/** An entity's status by EJBCA's name for it (or its code, for one EJBCA has no name for). */
export function statusName(entity: EndEntity): string {
  const code = statusCode(entity);
  return STATUS_NAMES[code] ?? String(code);
}

/**
 * The certificate profile the lab's end entities are made with: dojot's CFREE, or, under the lab's
 * `--cert-profile open` (a lab-only profile that takes any key), one named OPEN, so that what
 * `GET /user` shows is what the lab's CA will take.
 */
export function labProfileName(profile: "cfree" | "open"): string {
  return profile === "open" ? "OPEN" : "CFREE";
}

/** The CA, profiles and token type an entity has, with `createOrEditUser`'s defaults where nothing else was set. */
function settings(username: string, e: EndEntity, profile = "CFREE") {
  return {
    caName: e.caName ?? "IOTmidCA",
    certificateProfileName: e.certificateProfileName ?? profile,
    endEntityProfileName: e.endEntityProfileName ?? "EMPTY_CFREE",
    subjectDN: e.subjectDN ?? `CN=${username}`,
    tokenType: e.tokenType ?? "USERGENERATED",
  };
}

/**
 * The subject EJBCA puts in the entity's certificate: the entity's DN (CFREE has `allowdnoverride`
 * false), `CN=<username>` as dojot makes it (taken whole, whatever characters the name has).
 */
export function certificateSubject(username: string, e: EndEntity): string | x509.JsonName {
  return e.subjectDN ?? [{ CN: [username] }];
}

/**
 * Why EJBCA 6.3.1.1 refuses `pkcs10Request` for an existing entity before it reads the CSR, if it
 * does: `processCertReq` (`EjbcaWS.java`) checks the token type. The status and the password come
 * after the CSR is decoded ({@link authRefusal}).
 */
export function tokenRefusal(username: string, e: EndEntity): string | undefined {
  return settings(username, e).tokenType === "USERGENERATED"
    ? undefined
    : "Error: Wrong Token Type of user, must be 'USERGENERATED' for PKCS10/SPKAC/CRMF/CVC requests";
}

/**
 * Why `authenticateUser` (`EndEntityAuthenticationSessionBean.java`, EJBCA 6.3.1.1) refuses the
 * entity: its status first (`authentication.wrongstatus`), and only for a status it signs for,
 * the password (`authentication.invalidpwd`).
 */
export function authRefusal(username: string, e: EndEntity, passwd: unknown): string | undefined {
  const code = statusCode(e);
  if (!SIGNABLE.includes(code))
    return `Got request with status ${STATUS_NAMES[code] ?? "null"} (${code}), NEW, FAILED or INPROCESS required: ${username}.`;
  // A new entity `editUser` gave an empty password has none, and no password matches it.
  if (!e.password || passwd !== e.password) return `Got request for user with invalid password: ${username}.`;
  return undefined;
}

/** The entity after `finishUser`: GENERATED, with the serial of what it was issued. */
export function markIssued(e: EndEntity, serial: string): void {
  e.status = 40;
  e.issued.push(serial);
}

/**
 * `GET /user/<username>`: EJBCA's `findUser` (username equals) as zeep serializes the
 * `UserDataVOWS` list, whose elements the WSDL (JAXB) orders alphabetically. EJBCA fills them in
 * `EjbcaWSHelper.convertEndEntityInformation`: `password` always null and `clearPwd` always false,
 * `keyRecoverable` and `sendNotification` never set (false); no start or end time, serial or card
 * number; `extendedInformation` absent, which zeep reads as [] (dojot's entities have none: no
 * field of `createOrEditUser` makes one). An empty list is ejbca-rest's 404.
 */
export async function findUser(
  res: ServerResponse,
  dir: string,
  username: string,
  profile: string,
  autoRegister = false,
): Promise<void> {
  // With the lab's --auto-register, every device has an end entity: the NEW one its first sign makes.
  const entity = entityOf((await loadState(dir))!, username) ?? (autoRegister ? newEndEntity() : undefined);
  if (!entity) return send(res, 404, { message: "no certificates found", status: 404 });
  const s = settings(username, entity, profile);
  return send(res, 200, {
    user: [
      {
        caName: s.caName,
        cardNumber: null,
        certificateProfileName: s.certificateProfileName,
        certificateSerialNumber: null,
        clearPwd: false,
        email: null,
        endEntityProfileName: s.endEntityProfileName,
        endTime: null,
        extendedInformation: [],
        hardTokenIssuerName: null,
        keyRecoverable: false,
        password: null,
        sendNotification: false,
        startTime: null,
        status: statusCode(entity),
        subjectAltName: null,
        subjectDN: s.subjectDN,
        tokenType: s.tokenType,
        username,
      },
    ],
  });
}

/** The fields `createOrEditUser` passes on (`fillable`); the rest of the body is dropped, `subjectAltName` and `email` included. */
const FILLABLE = [
  "caName",
  "username",
  "certificateProfileName",
  "clearPwd",
  "endEntityProfileName",
  "keyRecoverable",
  "password",
  "tokenType",
  "subjectDN",
  "sendNotification",
  "status",
];

/** Token types `getTokenId` knows without hard-token profiles (`SecConst`: USERGENERATED, P12, JKS, PEM). */
const TOKEN_TYPES = ["USERGENERATED", "P12", "JKS", "PEM"];

/** A JSON value (not null) as zeep 3.2.0 writes it into an `xs:string` or `xs:int` element: Python's `str()`, near enough. */
function pyStr(value: unknown): string {
  if (typeof value === "string") return value;
  if (typeof value === "boolean") return value ? "True" : "False";
  return typeof value === "number" ? String(value) : JSON.stringify(value);
}

/**
 * `POST /user`: ejbca-rest's `createOrEditUser` (the body's `fillable` keys, `username` required,
 * its defaults: status 10, password `dojot`, subject `CN=<username>`, CFREE/EMPTY_CFREE,
 * USERGENERATED, IOTmidCA), then EJBCA's `editUser`: `convertUserDataVOWS` checks the CA, the
 * end-entity profile, the certificate profile and the token type in that order (the lab has
 * dojot's IOTmidCA, EMPTY_CFREE and CFREE only), and `changeUser` (or `addUser`) writes the status
 * and subject, and the password unless it is empty. `body` is the raw request body.
 */
export async function editUser(res: ServerResponse, dir: string, body: string, profile: string): Promise<void> {
  const fail = (status: number, message: string) => send(res, status, { message, status });
  let input: unknown;
  try {
    input = JSON.parse(body);
  } catch {
    return fail(400, "malformed JSON");
  }
  // Python iterates what json.loads gave: a dict's keys, a list's items, a string's characters;
  // a number, boolean or null cannot be iterated (TypeError, Flask's 500 page), and indexing a list
  // by a fillable string item fails the same way.
  if (typeof input !== "object" || input === null) {
    if (typeof input !== "string") return sendFlaskError(res);
    input = {};
  }
  if (Array.isArray(input)) {
    if (input.some((item) => FILLABLE.includes(item as string))) return sendFlaskError(res);
    input = {};
  }
  const fields = Object.fromEntries(Object.entries(input as object).filter(([k]) => FILLABLE.includes(k)));
  if (!("username" in fields)) return fail(400, "required field usernamemissing.");
  // zeep leaves a None out, and EJBCA has no entity without a name; what it answers then was not
  // traced, so the lab fails the request as a crash would.
  if (fields.username === null) return sendFlaskError(res);
  const username = pyStr(fields.username);
  // A None is left out of EJBCA's call: Java's null, which its messages write as "null".
  const named = (key: string, fallback: string) =>
    key in fields ? (fields[key] === null ? "null" : pyStr(fields[key])) : fallback;
  const caName = named("caName", "IOTmidCA");
  const endEntityProfileName = named("endEntityProfileName", "EMPTY_CFREE");
  const certificateProfileName = named("certificateProfileName", profile);
  const tokenType = named("tokenType", "USERGENERATED");
  const soap = (message: string) => fail(400, `soap message: ${message}`);
  if (caName !== "IOTmidCA") return soap(`CA with name ${caName} does not exist.`);
  if (endEntityProfileName !== "EMPTY_CFREE")
    return soap(`Error End Entity profile ${endEntityProfileName} does not exist.`);
  if (certificateProfileName !== profile)
    return soap(`Error Certificate profile ${certificateProfileName} does not exist.`);
  if (!TOKEN_TYPES.includes(tokenType)) return soap(`Error Token Type  ${tokenType} does not exist.`);
  const subjectDN = ejbcaDn(named("subjectDN", `CN=${username}`));
  // EJBCA's own wording for a DN its profile refuses is not in the sources read; the lab's is its own.
  if (!subjectDN) return soap(`Subject DN '${named("subjectDN", "")}' is not a distinguished name.`);
  const password = "password" in fields ? (fields.password === null ? "" : pyStr(fields.password)) : "dojot";
  const status = "status" in fields ? statusOf(fields.status) : NEW;
  await updateState(dir, (s) => {
    const e = entityOf(s, username) ?? { password: "", status, issued: [] };
    // `changeUser` keeps the password when the new one is empty (`StringUtils.isNotEmpty`).
    if (password) e.password = password;
    Object.assign(e, { status, subjectDN, caName, endEntityProfileName, certificateProfileName, tokenType });
    s.devices[username] = e;
  });
  return send(res, 200, { message: "ok", status: 200 });
}

/**
 * The status EJBCA reads from what zeep wrote (`str()` of the value): an integer as JAXB reads an
 * `xs:int` (surrounding blanks and a sign allowed); anything else reads as 0, as JAXB's lenient
 * unmarshaller leaves a field it cannot parse.
 */
function statusOf(value: unknown): number {
  const text = pyStr(value).trim();
  return /^[+-]?\d+$/.test(text) && Math.abs(Number(text)) <= 2 ** 31 - 1 ? Number(text) : 0;
}

/** A DN as EJBCA stores it (`CertTools.stringToBCDNString`: no blanks after the commas), or undefined if it is none. */
function ejbcaDn(text: string): string | undefined {
  try {
    const name = new x509.Name(text).toJSON();
    if (name.length === 0) return undefined;
    return name.flatMap((rdn) => Object.entries(rdn).flatMap(([k, vs]) => vs.map((v) => `${k}=${v}`))).join(",");
  } catch {
    return undefined;
  }
}
