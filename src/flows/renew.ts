/**
 * Renewal: new credentials for ones in their renewal window (or revoked), made with a new key.
 * Where the protocol re-enrolls by the current certificate (EST), still-good credentials
 * authenticate their own renewal and the new certificate keeps their names.
 */
import { isKeyUri } from "../keys/pkcs11-uri.js";
import type { Stored } from "./decide.js";
import type { ObtainPlan } from "./obtain.js";

/** What a renewal adds to obtaining credentials. `stillGood`: the stored ones are valid now and not revoked. */
export function renewalPlan(stored: Stored, stillGood: boolean): ObtainPlan {
  return {
    // A token key cannot go into Node's TLS: only a key file authenticates a re-enrollment.
    current(proto, replacing) {
      if (
        !proto.reenroll ||
        !stillGood ||
        !replacing ||
        !stored.cert ||
        !stored.certificatePem ||
        !stored.key ||
        isKeyUri(stored.key)
      )
        return undefined;
      return { reenroll: proto.reenroll, certificatePem: stored.certificatePem, keyPem: stored.key, cert: stored.cert };
    },
  };
}
