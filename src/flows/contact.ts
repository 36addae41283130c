/**
 * The traffic budget of `check`, so that a fleet's daily checks cost the platform almost nothing:
 * when a device whose credentials are valid asks the platform for its CA and CRL again, and what it
 * keeps of the last exchange (`<out>/<device-id>.contact.json`, mode 0600, nothing secret): when it
 * was, and the validators (ETag, Last-Modified) of the CA and the CRL it holds, for conditional requests.
 */
import { createHash } from "node:crypto";
import { describeCause } from "../errors.js";
import { readTrustedFile, replaceFile } from "../fs/safe-dir.js";
import { sameBytes, sha256ColonHex } from "../keys/fingerprint.js";
import type * as x509 from "../keys/x509.js";
import type { Conditional, FetchedCa, ProtocolClient, Session, Validators } from "../protocols/types.js";
import { isObject } from "../store/device-record.js";

/** What a record says of `format`, so that another file of the same name is not taken for one. */
const FORMAT = "cert-retriever platform contact";
const VERSION = 1;

/** Validators the platform gave for a body, with the SHA-256 of that body: they are sent only for it. */
export interface Kept extends Validators {
  sha256: string;
}

/** What is kept of the last exchange with the platform. */
export interface ContactRecord {
  /** When the platform last answered `check`. */
  at: Date;
  ca?: Kept;
  crl?: Kept;
}

/** The record at `path`, or undefined when there is none or it cannot be used (as if there were none: the device then asks). */
export async function readContactRecord(path: string, deviceId: string): Promise<ContactRecord | undefined> {
  try {
    const data: unknown = JSON.parse((await readTrustedFile(path)) ?? "null");
    if (!isObject(data) || data.format !== FORMAT || data.version !== VERSION || data.deviceId !== deviceId) return;
    const at = typeof data.at === "string" ? new Date(data.at) : undefined;
    if (!at || Number.isNaN(at.getTime())) return;
    return { at, ca: keptOf(data.ca), crl: keptOf(data.crl) };
  } catch {
    return undefined;
  }
}

/** Writes the record whole (staged, synced, renamed; mode 0600); returns a note when it could not be written. */
async function writeContactRecord(path: string, deviceId: string, record: ContactRecord): Promise<string | undefined> {
  const text = `${JSON.stringify({ format: FORMAT, version: VERSION, deviceId, ...record, at: record.at.toISOString() }, null, 2)}\n`;
  try {
    await replaceFile(path, text, 0o600);
    return undefined;
  } catch (err) {
    return `when the platform was asked could not be kept in ${path} (${describeCause(err)}); the next check asks it again`;
  }
}

/**
 * Where a device's contacts fall: time is cut into slots of `intervalMs`, shifted by an offset
 * derived from the device id, so that a fleet spreads its contacts over the interval whatever day
 * its devices were enrolled or updated.
 */
function contactOffsetMs(deviceId: string, intervalMs: number): number {
  const hash = createHash("sha256").update(deviceId).digest();
  return Number(hash.readBigUInt64BE(0) % BigInt(Math.max(1, Math.round(intervalMs))));
}

/**
 * When a device that last asked the platform at `last` asks again: at the start of its next slot
 * that begins at least half an interval after `last` (so at most once a slot, once an interval in
 * the steady state, and a fleet that asked at one moment spreads over the interval after).
 */
export function nextContact(deviceId: string, last: Date, intervalMs: number): Date {
  if (intervalMs <= 0) return last;
  const offset = contactOffsetMs(deviceId, intervalMs);
  const next = Math.floor((last.getTime() - offset) / intervalMs) * intervalMs + offset + intervalMs;
  // A slot that starts too soon after the last contact is skipped: the one after it, a whole interval on.
  return new Date(next - last.getTime() < intervalMs / 2 ? next + intervalMs : next);
}

/** The validators kept for `der`, if they name that body. */
function validatorsFor(kept: Kept | undefined, der: Uint8Array | undefined): Validators | undefined {
  if (!kept || !der || kept.sha256 !== sha256ColonHex(der)) return undefined;
  const { sha256: _, ...validators } = kept;
  return validators;
}

/** Validators to keep for `der`, if the platform gave any. */
function keep(der: Uint8Array, validators: Validators): Kept | undefined {
  return validators.etag || validators.lastModified ? { sha256: sha256ColonHex(der), ...validators } : undefined;
}

/**
 * One check's exchange with the platform: its CA, then its CRL, each conditionally where the
 * protocol can ask so. It notes what it learned, for the record the check keeps.
 */
export class PlatformExchange {
  /** The platform answered (a body or a 304). */
  contacted = false;
  /** Why the CA is no longer the stored one, when the platform's differs. */
  caReplaced: string | undefined;
  private readonly learned: { ca?: Kept; crl?: Kept };

  constructor(readonly record: ContactRecord | undefined) {
    this.learned = { ca: record?.ca, crl: record?.crl };
  }

  /** Whether the platform is to be asked now (see {@link nextContact}); `cachedAt` stands in for a contact never recorded. */
  due(deviceId: string, intervalMs: number, now: Date, cachedAt: Date | undefined): boolean {
    const last = this.record?.at ?? cachedAt;
    return !last || last > now || now >= nextContact(deviceId, last, intervalMs);
  }

  /** The CA (which must still be `storedCa`), then the CRL: its DER, or "unchanged" (the cached `cachedCrl` holds). */
  async ask(
    client: ProtocolClient,
    session: Session,
    storedCa: x509.X509Certificate,
    cachedCrl: Uint8Array | undefined,
    noCrl: (title: string) => string,
  ): Promise<Uint8Array | "unchanged"> {
    // The CA first: a CA the platform replaced makes the CRL moot (and enrollment needed).
    const known = validatorsFor(this.learned.ca, new Uint8Array(storedCa.rawData));
    const ca: Conditional<FetchedCa> = client.revalidate
      ? await client.revalidate.ca(session, known)
      : { unchanged: false, value: await client.trust.fetchCa(session), validators: {} };
    if (!ca.unchanged) {
      if (!sameBytes(ca.value.der, storedCa.rawData)) {
        this.caReplaced = "the platform's CA is no longer the stored one";
        throw new Error(this.caReplaced);
      }
      this.learned.ca = keep(ca.value.der, ca.validators);
    }
    const proto = client.effective?.() ?? client;
    if (!proto.crl) throw new Error(noCrl(proto.title));
    if (!proto.revalidate) {
      const der = await proto.crl(session);
      this.contacted = true;
      return der;
    }
    const crl = await proto.revalidate.crl(session, validatorsFor(this.learned.crl, cachedCrl));
    this.contacted = true;
    if (crl.unchanged) return "unchanged";
    this.learned.crl = keep(crl.value, crl.validators);
    return crl.value;
  }

  /** Keeps when the platform answered and the validators it gave, if it did answer; returns a note when that failed. */
  async keep(path: string, deviceId: string, now: Date): Promise<string | undefined> {
    if (!this.contacted) return undefined;
    return writeContactRecord(path, deviceId, { at: now, ...this.learned });
  }
}

function keptOf(value: unknown): Kept | undefined {
  if (!isObject(value) || typeof value.sha256 !== "string") return undefined;
  const text = (v: unknown) => (typeof v === "string" ? v : undefined);
  const etag = text(value.etag);
  const lastModified = text(value.lastModified);
  return { sha256: value.sha256, ...(etag ? { etag } : {}), ...(lastModified ? { lastModified } : {}) };
}
