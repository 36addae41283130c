/** What the x509-identity-mgmt routes (x509-api.ts, x509-register.ts) need of the lab: one module both import. */
import type { CryptoProvider } from "cert-retriever";
import type { LabCa } from "./ca.js";
import type { FaultPlan } from "./faults.js";
import type { X509Rules } from "./x509-rules.js";

/** What the x509 API needs of the lab. */
export interface X509Context {
  opts: {
    dir: string;
    crypto: CryptoProvider;
    autoRegister: boolean;
    extensionOverride: boolean;
    /** The validity of issued certificates in ms; absent: `VALIDITY_DAYS`. */
    certLifetime?: number;
    /** `ejbca.forcecrlrenew` (X509IDMGMT_EJBCA_FORCECRLRENEW, v0.5: EJBCA_CRL_FORCE_RENEW): a new CRL on every CRL request. */
    forceCrlRenew?: boolean;
  };
  /** The `X509 Identity CA`. */
  ca: LabCa;
  rules: X509Rules;
  /** The lab's scripted faults: `ca` strikes `GET /v1/ca`, `sign` the certificates `POST /v1/certificates` issues. */
  faults: FaultPlan;
  /** Another CA with the X509 Identity CA's names and another key, for `wrong-ca`. */
  otherCa: () => Promise<LabCa>;
}
