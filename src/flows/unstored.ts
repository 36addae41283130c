/**
 * A certificate the platform issued that the run did not store (a validation that failed, a full
 * disk, an interrupt): the journal that tells the next run, and what this run does about it before
 * it exits: revoke it where the protocol can, else say what the next run will do.
 */
import { rm } from "node:fs/promises";
import { CertRetrieverError, describeCause } from "../errors.js";
import { readTrustedFile, replaceFile } from "../fs/safe-dir.js";
import { sha256ColonHex } from "../keys/fingerprint.js";
import type * as x509 from "../keys/x509.js";
import type { EarlierIssue, ProtocolClient, Session } from "../protocols/types.js";
import type { CredentialStore } from "../store/types.js";
import { revokeTarget, sha256Fingerprint } from "./certificate.js";

/** A certificate issued to this run, with what it takes to revoke it. */
export interface IssuedHere {
  /** What the platform sent, as it sent it. */
  der: Uint8Array;
  /** The certificate, when what was sent could be read as one. */
  cert?: x509.X509Certificate;
  proto: ProtocolClient;
  session: Session;
}

/** The journal an earlier run left: it sent a CSR and did not store (or see refused) what came back. */
export async function readIssueJournal(store: CredentialStore): Promise<EarlierIssue | undefined> {
  const text = await readTrustedFile(store.sidecars.issueJournal);
  if (text === undefined) return undefined;
  try {
    const data = JSON.parse(text) as { at?: unknown; api?: unknown };
    if (typeof data.at === "string" && typeof data.api === "string") return { at: data.at, api: data.api };
  } catch {
    // A journal cut short by a crash still says that a CSR was sent.
  }
  return { at: "an unknown time", api: "unknown" };
}

/** Written before the CSR is sent. */
export async function writeIssueJournal(store: CredentialStore, api: string, now: Date): Promise<void> {
  await replaceFile(store.sidecars.issueJournal, `${JSON.stringify({ at: now.toISOString(), api })}\n`, 0o600);
}

/** Removed once the certificate is stored, revoked, or the platform answered without one. */
export async function clearIssueJournal(store: CredentialStore): Promise<void> {
  await rm(store.sidecars.issueJournal, { force: true }).catch(() => undefined);
}

/**
 * The failure of a run that was issued `issued` and did not store it, said whole: the certificate
 * is revoked where the protocol can (and the run was not interrupted), else the message says what
 * the next run does. The journal stays for the next run unless the certificate was revoked.
 */
export async function settleUnstored(
  store: CredentialStore,
  issued: IssuedHere,
  err: unknown,
  interrupted: boolean,
  deviceId: string,
): Promise<unknown> {
  if (!(err instanceof CertRetrieverError)) return err;
  const { cert, proto, session } = issued;
  const what = cert
    ? `certificate ${cert.serialNumber} was issued to this run and not stored`
    : "a certificate was issued to this run (in a reply that could not be read) and not stored";
  const fingerprint = cert ? sha256Fingerprint(cert) : sha256ColonHex(issued.der);
  const said: string[] = [what];
  let undone = false;
  if (interrupted) {
    said.push(
      proto.revoke
        ? `it stays valid on the platform (revoke SHA-256 ${fingerprint} there); the next run enrolls anew`
        : (proto.enroll.unstored?.next ?? "the next run enrolls again"),
    );
  } else {
    if (proto.revoke && cert) {
      try {
        await proto.revoke(session, revokeTarget(cert));
        said.push("so it was revoked on the platform");
        undone = !proto.enroll.unstored?.undo;
      } catch (revokeErr) {
        said.push(`revoking it failed (${describeCause(revokeErr)}): revoke SHA-256 ${fingerprint} on the platform`);
      }
    }
    if (proto.enroll.unstored?.undo) {
      try {
        said.push(await proto.enroll.unstored.undo(session, deviceId));
        undone = true;
      } catch (undoErr) {
        said.push(`undoing it failed (${describeCause(undoErr)}), so ${proto.enroll.unstored.next}`);
      }
    } else if (proto.revoke) {
      said.push("the next run enrolls anew");
    } else {
      said.push(proto.enroll.unstored?.next ?? "the next run enrolls again");
    }
  }
  if (undone) await clearIssueJournal(store);
  const text =
    said[0] +
    said
      .slice(1)
      .map((part, i) => (i === 0 && part.startsWith("so ") ? `, ${part}` : `; ${part}`))
      .join("");
  return new CertRetrieverError(`${err.message}; ${text}`, {
    step: err.step,
    reason: err.reason,
    facts: err.facts,
    cause: err.cause,
  });
}
