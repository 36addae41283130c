import { AsnConvert } from "@peculiar/asn1-schema";
import { DistributionPoint, DistributionPointName, GeneralName, id_ce_freshestCRL, Name } from "@peculiar/asn1-x509";
import type { CryptoProvider } from "cert-retriever";
import type { LabCa } from "./ca.js";
import * as x509 from "./x509.js";

/** What x509-identity-mgmt's EJBCA puts into certificates (the X509Identity profile); its CRLs are in `crl.ts`. */

/**
 * The X509Identity certificate profile (`ejbca/resources/profiles/certprofile_X509Identity-1711483265.xml`,
 * the same at v0.5.0 and v0.8.0), in the order and form of the certificates the service issued
 * (`apidocs/api-description.apib` at v0.5.0): basicConstraints critical CA:FALSE; AKI; Freshest CRL
 * (the delta CRL); extendedKeyUsage clientAuth and emailProtection (the XML also lists serverAuth,
 * which those certificates do not carry); CRL distribution point with the CA as CRL issuer; SKI;
 * keyUsage critical digitalSignature, nonRepudiation, keyEncipherment, keyAgreement. The URLs are
 * the CA's defaults from `certificate-authorities-creation.sh` (`http://<EJBCA host>:8080/…`).
 */
export async function x509IdentityExtensions(
  ca: LabCa,
  publicKey: x509.PublicKey | CryptoKey,
  crypto: CryptoProvider,
): Promise<x509.Extension[]> {
  // EJBCA's form of the CA's DN: as encoded, comma-separated (`UID=…,CN=X509 Identity CA,OU=…,O=…`).
  const dn = ca.cert.subjectName
    .toJSON()
    .flatMap((rdn) => Object.entries(rdn).map(([k, v]) => `${k === "0.9.2342.19200300.100.1.1" ? "UID" : k}=${v[0]}`));
  const url = (cmd: string) =>
    `http://x509-ejbca:8080/ejbca/publicweb/webdist/certdist?cmd=${cmd}&issuer=${encodeURIComponent(dn.join(","))}`;
  const issuer = new GeneralName({ directoryName: AsnConvert.parse(ca.cert.subjectName.toArrayBuffer(), Name) });
  const point = (cmd: string, crlIssuer?: GeneralName) =>
    new DistributionPoint({
      distributionPoint: new DistributionPointName({
        fullName: [new GeneralName({ uniformResourceIdentifier: url(cmd) })],
      }),
      ...(crlIssuer ? { cRLIssuer: [crlIssuer] } : {}),
    });
  const freshest = new x509.CRLDistributionPointsExtension([point("deltacrl")]);
  return [
    new x509.BasicConstraintsExtension(false, undefined, true),
    await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey, false, crypto),
    new x509.Extension(id_ce_freshestCRL, false, freshest.value),
    new x509.ExtendedKeyUsageExtension(
      [x509.ExtendedKeyUsage.clientAuth, x509.ExtendedKeyUsage.emailProtection],
      false,
    ),
    new x509.CRLDistributionPointsExtension([point("crl", issuer)]),
    await x509.SubjectKeyIdentifierExtension.create(publicKey, false, crypto),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.digitalSignature |
        x509.KeyUsageFlags.nonRepudiation |
        x509.KeyUsageFlags.keyEncipherment |
        x509.KeyUsageFlags.keyAgreement,
      true,
    ),
  ];
}
