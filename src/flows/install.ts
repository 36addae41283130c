/** Installing new credentials: the broker check before the swap, the key's staging, the write, the key's commit. */
import type { ProfileRecord } from "../broker/profiles.js";
import { usageError } from "../errors.js";
import type { KeyTransaction } from "../keys/key-store.js";
import { toPem } from "../keys/key-types.js";
import { isKeyUri } from "../keys/pkcs11-uri.js";
import type { CredentialPems } from "../store/types.js";
import { sha256Fingerprint } from "./certificate.js";
import type { EnrollContext } from "./context.js";
import type { Stored } from "./decide.js";
import type { Obtained } from "./obtain.js";
import type { EnrollStep } from "./result.js";
import type { StepRunner } from "./steps.js";

/** Credentials stored: what the write put in place, and what the broker check before it returned. */
export interface Installed extends Obtained {
  keyRecord: string;
  /** A profile was recorded with the credentials. */
  profiled: boolean;
  checkedBeforeStore?: unknown;
}

/** The store step. Nothing is written unless every step before it passed; a failed write leaves the stored credentials as they were. */
export async function install(
  ctx: EnrollContext,
  run: StepRunner<EnrollStep>,
  tx: KeyTransaction,
  stored: Stored,
  obtained: Obtained,
): Promise<Installed> {
  const keyRecord = await obtained.key.record();
  const pems = credentialPems(ctx, obtained, keyRecord);
  const notStored = (err: unknown): never => {
    if (obtained.binding.bound) {
      run.note(
        `certificate ${obtained.issued.fingerprint ?? sha256Fingerprint(obtained.cert)} is bound to device ${ctx.device.id} on the platform but was not stored here; the next run issues and binds a new one`,
      );
    }
    throw err;
  };
  let checkedBeforeStore: unknown;
  let keyNotes: string[] = [];
  await run.run(
    "store",
    async () => {
      // A renewal swaps only credentials that proved themselves (the broker check): else the stored ones stay in use.
      // A key TLS cannot use while its store is open (a token's) is checked after the write instead.
      if (stored.cert && ctx.beforeReplace && ctx.keyStore.tlsWhileOpen)
        checkedBeforeStore = await ctx.beforeReplace(pems).catch(notStored);
      // Until the write is done, either key may be the one stored: the next run keeps that one and removes the other.
      await tx.staging(keyRecord);
      if (ctx.storeCertInToken) {
        if (!ctx.keyStore.storeCertificate)
          throw usageError(
            "the certificate can be stored in a token only beside a key in that token",
            "storeCertInToken",
          );
        await ctx.keyStore.storeCertificate(keyRecord, obtained.cert);
      }
      await ctx.store.write(pems).catch(notStored);
      keyNotes = await tx.commit(keyRecord);
    },
    () =>
      `stored in ${ctx.store.location}${ctx.storeCertInToken ? ` and the certificate in ${ctx.keyStore.location}` : ""}${isKeyUri(keyRecord) ? `; the key stays in the token (${keyRecord})` : ""}`,
  );
  for (const message of keyNotes) run.note(message);
  return { ...obtained, keyRecord, profiled: pems.profileJson !== undefined, checkedBeforeStore };
}

/** The PEMs to store: key (or its URI), certificate, CA chain, and the identity profile when it is not generic. */
function credentialPems(ctx: EnrollContext, obtained: Obtained, keyRecord: string): CredentialPems {
  const profile = ctx.device.profile;
  const profileJson =
    profile && profile.name !== "generic"
      ? `${JSON.stringify({ profile: profile.name, deviceId: ctx.device.id, tenant: obtained.session.tenant, uriDomain: profile.uriDomain } satisfies ProfileRecord, null, 2)}\n`
      : undefined;
  return {
    key: keyRecord,
    certificatePem: toPem(obtained.cert.rawData, "CERTIFICATE"),
    caPem: obtained.caChain.map((c) => toPem(c.rawData, "CERTIFICATE")).join(""),
    profileJson,
  };
}
