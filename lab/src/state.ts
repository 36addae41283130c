import { randomBytes, scryptSync, timingSafeEqual } from "node:crypto";
import { mkdir, open, readFile, rename } from "node:fs/promises";
import { join } from "node:path";
import type { LabCaKind } from "./ca.js";

/**
 * An EJBCA end entity: the device, its password, status and what it was issued; and what
 * EJBCA-REST's `POST /user` set (absent: `createOrEditUser`'s defaults, as dojot makes entities).
 */
export interface EndEntity {
  /** Empty when the entity has none (no password matches it). */
  password: string;
  /** EJBCA's status code (NEW 10, GENERATED 40, …); labs before kept the names "NEW" and "GENERATED". */
  status: number | "NEW" | "GENERATED";
  /** The serials (hex, as in the certificates) issued to it, in order. */
  issued: string[];
  /** As EJBCA stores it (`CN=<device>,O=…`, no blanks after commas); the subject of its certificates. */
  subjectDN?: string;
  caName?: string;
  endEntityProfileName?: string;
  certificateProfileName?: string;
  tokenType?: string;
}

/** A dojot user of the lab. */
export interface LabUser {
  id: number;
  service: string;
  active: boolean;
  salt: string;
  hash: string;
}

/** Everything the lab keeps between restarts, in `<dir>/state.json`. */
export interface LabState {
  jwtSecret: string;
  users: Record<string, LabUser>;
  devices: Record<string, EndEntity>;
  /** Certificates x509-identity-mgmt issued, by fingerprint as it stores them (uppercase hex pairs with colons). */
  x509Certificates?: Record<string, X509Record>;
  /** x509-identity-mgmt's trusted (external root) CAs, v0.7+: one record per tenant and CA fingerprint. */
  x509TrustedCas?: TrustedCaRecord[];
  /** What each lab CA revoked and the latest CRL it issued, by CA (`legacy`: IOTmidCA, `x509`: X509 Identity CA). */
  revocations?: Partial<Record<LabCaKind, CaRevocations>>;
  /** What the EST server issued, in order. */
  estIssued?: EstIssued[];
}

/** A certificate the lab's EST server issued, and how its requester authenticated. */
export interface EstIssued {
  /** Hex, as in the certificate. */
  serial: string;
  subject: string;
  /** SHA-256 of the DER, uppercase hex pairs joined by colons. */
  fingerprint: string;
  /** `basic:<user>`, `client-cert:<serial>` (simpleenroll) or `reenroll:<serial>` (simplereenroll; the serial of the certificate renewed). */
  auth: string;
  /** The CA label of the request's path, if it had one. */
  label?: string;
  /** ISO 8601. */
  issuedAt: string;
}

/** A CA's revocations (EJBCA's CertificateData revocation fields) and CRLs (its CRLData). */
interface CaRevocations {
  /** In the order they were revoked. */
  revoked: RevokedCertificate[];
  /** The latest full CRL, which EJBCA's `getLatestCRL` returns until a new one is made. */
  crl?: IssuedCrl;
  /** The highest CRL number used so far: full and delta CRLs share one series in EJBCA. */
  lastNumber?: number;
}

/** One revoked certificate, as a CRL entry lists it. */
export interface RevokedCertificate {
  /** The serial number, hex as in the certificate. */
  serial: string;
  /** ISO 8601. */
  revocationDate: string;
  /** RFC 5280 CRLReason (EJBCA's reason codes are the same numbers): 0 unspecified, 4 superseded, ... */
  reason: number;
}

/** A CRL the CA issued: its number, validity and DER (base64). */
export interface IssuedCrl {
  number: number;
  thisUpdate: string;
  nextUpdate: string;
  der: string;
}

/**
 * x509-identity-mgmt's certificate record (`CertificateModel`; v0.7+ adds `caFingerprint`,
 * `subjectDN`, `validity` and `modifiedAt`), kept with its fields in the order the service's
 * MongoDB holds them, which is the order it sends them in.
 */
export interface X509Record {
  issuedByDojotPki: boolean;
  autoRegistered: boolean;
  /** The trusted root CA of a registered (external) certificate. */
  caFingerprint?: string;
  /** As the key it is stored under; absent from records of labs that kept it there only. */
  fingerprint?: string;
  pem: string;
  /** The owner; v0.8 keeps none while unbound. */
  belongsTo?: { device?: string };
  subjectDN?: string;
  validity?: { notBefore: string; notAfter: string };
  tenant: string;
  createdAt: string;
  modifiedAt?: string;
}

/** x509-identity-mgmt's trusted CA record (`TrustedCAModel` at v0.7.0/v0.8.0), in the order it is stored. */
export interface TrustedCaRecord {
  allowAutoRegistration: boolean;
  caFingerprint: string;
  caPem: string;
  subjectDN: string;
  validity: { notBefore: string; notAfter: string };
  tenant: string;
  createdAt: string;
  modifiedAt: string;
}

const STATE_FILE = "state.json";

/** Reads the lab state of `dir`, or undefined if the lab was never started there. */
export async function loadState(dir: string): Promise<LabState | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, STATE_FILE), "utf8")) as LabState;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/** Writes the lab state atomically (staged and renamed), mode 0600: it holds the JWT secret. */
export async function saveState(dir: string, state: LabState): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `.${STATE_FILE}.${process.pid}.${randomBytes(4).toString("hex")}`);
  const handle = await open(tmp, "wx", 0o600);
  try {
    await handle.writeFile(JSON.stringify(state, null, 2));
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, join(dir, STATE_FILE));
}

/** Reads, changes and writes the state in one go, for the CLI and the server alike. */
export async function updateState<T>(dir: string, change: (state: LabState) => T): Promise<T> {
  const state = await loadState(dir);
  if (!state) throw new Error(`no lab in ${dir}: start it once with 'cert-retriever-lab serve --dir ${dir}'`);
  const result = change(state);
  await saveState(dir, state);
  return result;
}

/** A new state with the `admin` user (tenant `admin`) and the given password. */
export function newState(adminPassword: string): LabState {
  return {
    jwtSecret: randomBytes(32).toString("hex"),
    users: { admin: makeUser(1, "admin", adminPassword) },
    devices: {},
  };
}

/** A user record with a scrypt hash of the password. */
export function makeUser(id: number, service: string, password: string): LabUser {
  const salt = randomBytes(16).toString("hex");
  return { id, service, active: true, salt, hash: scryptSync(password, salt, 32).toString("hex") };
}

/** Whether `password` is the user's. */
export function checkPassword(user: LabUser, password: string): boolean {
  const hash = scryptSync(password, user.salt, 32);
  return timingSafeEqual(hash, Buffer.from(user.hash, "hex"));
}

/** The end entity named `name`, if there is one (a name such as `constructor` is no entity). */
export function entityOf(state: LabState, name: string): EndEntity | undefined {
  return Object.hasOwn(state.devices, name) ? state.devices[name] : undefined;
}

/** A new end entity in NEW state with dojot's password. */
export function newEndEntity(): EndEntity {
  return { password: "dojot", status: 10, issued: [] };
}
