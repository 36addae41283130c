import { AsnConvert } from "@peculiar/asn1-schema";
import { CertificateList, CRLNumber, id_ce_cRLNumber } from "@peculiar/asn1-x509";
import { type CryptoProvider, toPem } from "cert-retriever";
import { type DojotCaKind, type LabCa, RSA_SHA256 } from "./ca.js";
import { type IssuedCrl, type LabState, loadState, type RevokedCertificate, updateState } from "./state.js";
import * as x509 from "./x509.js";

/**
 * Revocation and CRLs as the platforms' EJBCA does them. What the services ask of EJBCA:
 * x509-identity-mgmt revokes with `revokeCert(issuerDN, serial, 4)` (superseded) and serves
 * `getLatestCRL(caName, false)`, first forcing `createCRL(caName)` only when `forceCRLRenew` is set
 * (`src/ejbca/EjbcaFacade.js` at dojot v0.7.0/v0.8.0; `src/core/ejbca-facade.js` at v0.5.0).
 * EJBCA-REST serves `getLatestCRL` and `createCRL` (`RESTmain.py` at ejbca-rest v0.4.3). How EJBCA
 * makes a CRL (Keyfactor/ejbca-ce `X509CA.generateCRL`, `PublishingCrlSessionBean`): thisUpdate
 * now, nextUpdate now + the CA's CRL period; one entry per revoked certificate (serial, revocation
 * date, and a non-critical reasonCode only when the reason is not 0 "unspecified", as BouncyCastle's
 * `addCRLEntry` does); the extensions authorityKeyIdentifier (the CA's subject key id) then
 * cRLNumber, which counts on from the highest number of any CRL of the CA, full or delta. The
 * sample CRL in `apidocs/api-description.apib` (v0.5.0, v0.7.0) is that: v2, SHA256withRSA,
 * nextUpdate 24 h after thisUpdate, AKI, CRL number 1 and nothing else. When this and EJBCA
 * disagree, this is wrong.
 */

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** A CA's CRL settings: CRL period, overlap time, delta CRL period (0: no delta CRLs). */
const CRL_SETTINGS: Record<DojotCaKind, { period: number; overlap: number; deltaPeriod: number }> = {
  // IOTmidCA: ejbca-rest v0.4.3 (`ejbca-docker/default.properties`, `build-ejbca.sh`) sets none of
  // them, so EJBCA's defaults: CRL period 24 h, overlap 10 min, no delta CRLs.
  legacy: { period: DAY, overlap: 10 * MINUTE, deltaPeriod: 0 },
  // X509 Identity CA: `commonEditCA` in `certificate-authorities-creation.sh` with the defaults of
  // `configuration-variables.sh` (dojot v0.7.0/v0.8.0 `iam/ejbca/bin/dojot-custom/`; the same in
  // v0.5.0's `x509-identity-mgmt/ejbca/README.md`): EJBCA_CRL_EXPIRE_PERIOD_DEVICES_CA 1d,
  // EJBCA_CRL_OVERLAP_TIME_DEVICES_CA 10m, EJBCA_CRL_ISSUE_INTERVAL_DEVICES_CA 0m,
  // EJBCA_DELTA_CRL_PERIOD_DEVICES_CA 1h.
  x509: { period: DAY, overlap: 10 * MINUTE, deltaPeriod: HOUR },
};

/** RFC 5280 CRLReason codes the services use (EJBCA's revocation reasons are the same numbers). */
export const REVOCATION_REASON = { unspecified: 0, superseded: 4 } as const;

/** Marks `serial` revoked by the CA `kind` in `state` (EJBCA `revokeCert`), with the date and reason. */
export function revoke(state: LabState, kind: DojotCaKind, serial: string, date: Date, reason: number): void {
  state.revocations ??= {};
  const mine = state.revocations[kind] ?? { revoked: [] };
  state.revocations[kind] = mine;
  if (mine.revoked.some((r) => r.serial.toLowerCase() === serial.toLowerCase())) return;
  mine.revoked.push({ serial, revocationDate: date.toISOString(), reason });
}

/** The revocation of `serial` (hex, any case or leading zeros) by the CA `kind`, if it is revoked. */
export function revocationOf(state: LabState, kind: DojotCaKind, serial: string): RevokedCertificate | undefined {
  const value = BigInt(`0x${serial}`);
  return state.revocations?.[kind]?.revoked.find((r) => BigInt(`0x${r.serial}`) === value);
}

/**
 * Revokes `serial` with `reason`, or changes the reason of its revocation (a certificate on hold
 * revoked for good keeps its revocation date).
 */
export function setRevocation(state: LabState, kind: DojotCaKind, serial: string, date: Date, reason: number): void {
  const held = revocationOf(state, kind, serial);
  if (held) held.reason = reason;
  else revoke(state, kind, serial, date, reason);
}

/** Takes `serial` off the CA's revocations (a certificate on hold released): the next full CRL no longer lists it. */
export function unrevoke(state: LabState, kind: DojotCaKind, serial: string): void {
  const mine = state.revocations?.[kind];
  const entry = revocationOf(state, kind, serial);
  if (mine && entry) mine.revoked = mine.revoked.filter((r) => r !== entry);
}

/**
 * How a CRL request treats the latest CRL: `force` makes a new one first (EJBCA `createCRL`:
 * `forceCRL`, then `forceDeltaCRL`, which makes a delta CRL only for a CA with a delta CRL
 * period); `when-due` makes one only if there is none yet (EJBCA makes CRL 1 when it creates the
 * CA) or the latest is within the overlap time of its nextUpdate, as EJBCA's CRL Updater
 * (`services-creation.sh`, every 30 min) and EJBCA-REST's startup `createcrl` do. Between two CRLs,
 * a revocation is not in the CRL served. The delta CRLs the updater makes on its own are not
 * imitated, so a real CA's numbers may run further ahead.
 */
export type CrlRenewal = "force" | "when-due";

/** The latest CRL of the CA `kind` (`getLatestCRL(caName, false)`), renewed first as `renew` says. */
export async function latestCrl(
  dir: string,
  ca: LabCa,
  kind: DojotCaKind,
  crypto: CryptoProvider,
  renew: CrlRenewal,
): Promise<IssuedCrl> {
  const mine = (await loadState(dir))!.revocations?.[kind];
  const now = Date.now();
  const settings = CRL_SETTINGS[kind];
  const current = mine?.crl;
  if (current && renew === "when-due" && now < Date.parse(current.nextUpdate) - settings.overlap) return current;
  const number = (mine?.lastNumber ?? 0) + 1;
  const crl = await generateCrl(ca, mine?.revoked ?? [], number, new Date(now), settings.period, crypto);
  const lastNumber = renew === "force" && settings.deltaPeriod > 0 ? number + 1 : number;
  await updateState(dir, (s) => {
    s.revocations ??= {};
    const entry = s.revocations[kind] ?? { revoked: [] };
    s.revocations[kind] = entry;
    entry.crl = crl;
    entry.lastNumber = lastNumber;
  });
  return crl;
}

/** `X509CA.generateCRL`: the entries in the order revoked, AKI then CRL number, signed as the CA signs. */
async function generateCrl(
  ca: LabCa,
  revoked: RevokedCertificate[],
  number: number,
  now: Date,
  period: number,
  crypto: CryptoProvider,
): Promise<IssuedCrl> {
  // The DER keeps whole seconds; the record says what the CRL says.
  const thisUpdate = new Date(Math.floor(now.getTime() / 1000) * 1000);
  const nextUpdate = new Date(thisUpdate.getTime() + period);
  const ski = ca.cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
  const aki = ski
    ? new x509.AuthorityKeyIdentifierExtension(ski, false)
    : await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey, false, crypto);
  const crl = await x509.X509CrlGenerator.create(
    {
      issuer: ca.cert.subjectName,
      thisUpdate,
      nextUpdate,
      entries: revoked.map((r) => ({
        serialNumber: r.serial,
        revocationDate: new Date(r.revocationDate),
        ...(r.reason !== REVOCATION_REASON.unspecified ? { reason: r.reason as x509.X509CrlReason } : {}),
      })),
      extensions: [aki, new x509.Extension(id_ce_cRLNumber, false, AsnConvert.serialize(new CRLNumber(number)))],
      signingKey: ca.key,
      signingAlgorithm: RSA_SHA256,
    },
    crypto,
  );
  return {
    number,
    thisUpdate: thisUpdate.toISOString(),
    nextUpdate: nextUpdate.toISOString(),
    der: Buffer.from(await withoutEmptyEntryExtensions(crl.rawData, ca, crypto)).toString("base64"),
  };
}

/**
 * @peculiar/x509 gives an entry without extensions an empty `crlEntryExtensions` (SEQUENCE {}),
 * which RFC 5280 does not allow (SIZE (1..MAX)) and BouncyCastle never writes: the field is left
 * out and the list signed again.
 */
async function withoutEmptyEntryExtensions(der: ArrayBuffer, ca: LabCa, crypto: CryptoProvider): Promise<ArrayBuffer> {
  const list = AsnConvert.parse(der, CertificateList);
  const entries = list.tbsCertList.revokedCertificates ?? [];
  // Parsed back, an empty SEQUENCE reads as no extensions, and serialized again it is left out.
  if (entries.every((e) => e.crlEntryExtensions?.length)) return der;
  for (const entry of entries) if (!entry.crlEntryExtensions?.length) entry.crlEntryExtensions = undefined;
  const tbs = AsnConvert.serialize(list.tbsCertList);
  const signature = await crypto.subtle.sign(RSA_SHA256, ca.key, tbs);
  return AsnConvert.serialize(
    new CertificateList({ tbsCertList: list.tbsCertList, signatureAlgorithm: list.signatureAlgorithm, signature }),
  );
}

/** The CRL's DER. */
export function crlDer(crl: IssuedCrl): Buffer {
  return Buffer.from(crl.der, "base64");
}

/** The CRL as x509-identity-mgmt's facade wraps it (`getCRL`): `X509 CRL` PEM, 64-character lines, no final line break. */
export function crlPem(crl: IssuedCrl): string {
  return toPem(crlDer(crl), "X509 CRL").trimEnd();
}
