import { Command } from "commander";
import { describeCause } from "../../errors.js";
import { applyConfigFile, type ConfigExtras } from "../config.js";
import type * as x509 from "../../keys/x509.js";
import type { PlatformClient, Session } from "../../protocols/types.js";
import {
  checkKeyFlag,
  checkPinFlag,
  caReplacedPath,
  crlCachePath,
  login,
  makeStore,
  openPlatformRun,
  publicKeysReader,
  resolveDeviceId,
  resolvePlatformUrl,
  tokenSession,
  type CommonFlags,
  type KeyFlags,
} from "../context.js";
import { parseCount, parseDuration, parseRenewWindow } from "../inputs.js";
import type { CliState } from "../main.js";
import type { ApiChoice } from "../platform.js";
import type { CredentialStore } from "../../store/types.js";
import { addOptions } from "../options.js";
import { printJson, reportError, say } from "../output.js";

const HELP = `
EXIT CODES (systemd's ExecCondition= contract)
    0  enrollment is needed: no credentials, half state, invalid, expired or inside the renewal
       window (--renew-before), revoked (a CRL lists it), a CA that does not match
       --ca-fingerprint or that the platform has replaced, an interrupted write
    1  nothing to do: the stored credentials are valid (also when revocation could not be
       checked: the message says why, and enrolling again would not tell either)
  255  error (the message says which)

REVOCATION
  With --platform, check asks the platform for its CA and the CA's CRL (dojot: GET /x509/v1/ca/crl;
  EJBCA-REST: GET /ca/<name>/crl), verifies the CRL's signature with the stored CA, and keeps it in
  <out>/<ca-name>.crl. A cached CRL younger than --crl-refresh is used without asking; when the
  platform cannot be reached, a cached CRL still before its next update answers. The platform gets
  at most 30 s and one retry (less if --deadline or --retries say so). Without --platform only the
  cache is read. --revocation distribution-points reads the CRL from the certificate's own http
  CRL distribution points instead, for CAs that publish there (dojot's name EJBCA's host inside
  the platform, which devices cannot reach); --revocation off reads no CRL.

EXAMPLES
  cert-retriever check --device-id f60c28 --out /var/lib/cert-retriever --json

  [Service]
  ExecCondition=/usr/bin/cert-retriever check
  ExecStart=/usr/bin/cert-retriever enroll --non-interactive
`;

/** A condition must not hold up a boot: the platform (or a distribution point) gets at most 30 s and one retry (what it cannot answer is "unknown"). */
function boundedFlags<F extends CommonFlags>(flags: F): F {
  return { ...flags, deadline: `${Math.min(parseDuration(flags.deadline, "--deadline"), CHECK_ONLINE_MS)}ms`, retries: String(Math.min(parseCount(flags.retries, "--retries", 0, 100), 1)) };
}

/**
 * A way to ask the platform something, logging in (password or token, never a prompt) only when
 * asked; `close()` ends it. Any failure is thrown for the caller to report.
 */
async function platformAsker(command: Command, flags: CommonFlags & { api?: ApiChoice }, extras: ConfigExtras, store: CredentialStore) {
  const startedAt = Date.now();
  const source = (key: string) => command.getOptionValueSource(key);
  const bounded = boundedFlags(flags);
  let opened: Awaited<ReturnType<typeof openPlatformRun>> | undefined;
  const ask = async <T>(question: (platform: PlatformClient, session: Session) => Promise<T>): Promise<T> => {
    const baseUrl = await resolvePlatformUrl(flags);
    // EST asks for nothing but /cacerts, which needs no login; the stored chain vouches for the server.
    const est = flags.api === "est";
    const token = est ? undefined : await tokenSession(flags);
    const credentials = token || est ? undefined : await login({ ...flags, nonInteractive: true }, extras, source);
    opened = await openPlatformRun(bounded, startedAt, []);
    const [{ makePlatform, estTrust }, { openSession }] = await Promise.all([import("../platform.js"), import("../../flows/authenticate.js")]);
    const trust = est ? await estTrust((await store.read()).parts.caPem, flags.caFingerprint) : undefined;
    const { softwareCrypto } = await import("../../keys/provider.js");
    const estSettings = trust && { ...trust, platformCa: Boolean(flags.platformCa), basic: false, clientCert: false, crypto: softwareCrypto(), signal: opened.interrupt.signal };
    const platform = await makePlatform(flags.api ?? "auto", { baseUrl, caName: flags.caName, entityPassword: "", http: opened.http, est: estSettings });
    const { session } = await openSession(platform, { username: (await credentials?.username()) ?? "", password: credentials?.password ?? (async () => ""), session: token?.session, sessionSource: token?.source }, new Date());
    return question(platform, session);
  };
  return Object.assign(ask, {
    close: async () => {
      opened?.interrupt.dispose();
      await opened?.http.close();
    },
  });
}

/**
 * Without a platform: the certificate's own CRL distribution points (http), if it names any, asked
 * through the run's HTTP client (its proxy, --platform-ca, deadline and retries, bounded as the platform is).
 */
async function fromDistributionPoints(cert: x509.X509Certificate, flags: CommonFlags): Promise<(() => Promise<Uint8Array>) | undefined> {
  const { crlDistributionUrls, fetchCrlFromDistributionPoints } = await import("../../transport/crl-distribution.js");
  const urls = crlDistributionUrls(cert);
  if (urls.length === 0) return undefined;
  return async () => {
    const { http, interrupt } = await openPlatformRun(boundedFlags(flags), Date.now(), []);
    try {
      return await fetchCrlFromDistributionPoints(urls, http, CHECK_ONLINE_MS);
    } finally {
      interrupt.dispose();
      await http.close();
    }
  };
}

/** The most `check` waits for the platform (CA and CRL), whatever --deadline says. */
const CHECK_ONLINE_MS = 30_000;

/** Exit codes of `check`. */
export const CHECK_EXIT = { NEEDED: 0, NOTHING_TO_DO: 1, ERROR: 255 } as const;

/** `cert-retriever check`: is enrollment needed? Reads the store; asks the platform (or a CRL distribution point) only about revocation and the CA, as REVOCATION says. */
export function checkCommand(state: CliState): Command {
  const cmd = new Command("check").summary("exit 0 if enrollment is needed, 1 if not, 255 on error (for ExecCondition=)");
  addOptions(cmd, "check")
    .addHelpText("after", HELP)
    .action(async (_f: CommonFlags, command: Command) => {
      try {
        const extras = await applyConfigFile(command, say);
        const flags = command.opts<CommonFlags & KeyFlags & { crlRefresh: string; api?: ApiChoice }>();
        state.json ||= Boolean(flags.json);
        const deviceId = await resolveDeviceId({ ...flags, nonInteractive: true }, (key) => command.getOptionValueSource(key));
        const renewBefore = parseRenewWindow(flags.renewBefore);
        const refreshMs = parseDuration(flags.crlRefresh, "--crl-refresh", true);
        await checkPinFlag(flags);
        await checkKeyFlag(flags);
        const store = await makeStore(flags, deviceId);
        // A wrong EST URL is a setting to fix, not a revocation that could not be checked.
        if (flags.api === "est" && flags.platform) (await import("../../protocols/est/client.js")).estBaseUrl(await resolvePlatformUrl(flags));
        const [{ inspectCredentials }, { softwareCrypto }, { revocationOf, describeRevocation, markCaReplaced }, { sameBytes }] = await Promise.all([
          import("../../flows/inspect.js"),
          import("../../keys/provider.js"),
          import("../../flows/revocation.js"),
          import("../../keys/fingerprint.js"),
        ]);
        const crypto = softwareCrypto();
        const now = new Date();
        const online = flags.platform && flags.revocation === "auto" ? await platformAsker(command, flags, extras, store) : undefined;
        let caReplaced: string | undefined;
        try {
          const verdict = await inspectCredentials(store, {
            deviceId,
            crypto,
            publicKeysOf: publicKeysReader(flags, (key) => command.getOptionValueSource(key)),
            caFingerprint: flags.caFingerprint,
            renewBefore,
            now,
            revocation:
              flags.revocation === "off"
                ? undefined
                : async (cert, ca) =>
                    revocationOf(cert, ca, {
                      crypto,
                      now,
                      cachePath: crlCachePath(flags),
                      refreshMs,
                      // The CA first: a CA the platform replaced makes the CRL moot (and enrollment needed).
                      fetch: online
                        ? () =>
                            online(async (platform, session) => {
                              const fetched = await platform.fetchCa(session);
                              if (!sameBytes(fetched.der, ca.rawData)) {
                                caReplaced = "the platform's CA is no longer the stored one";
                                throw new Error(caReplaced);
                              }
                              if (!platform.fetchCrl) throw new Error(`${(await import("../../protocols/types.js")).API_TRAITS[platform.api()].title} serves no CRL (--revocation distribution-points reads one from the certificate's own distribution points)`);
                              return platform.fetchCrl(session);
                            })
                        : flags.revocation === "distribution-points"
                          ? await fromDistributionPoints(cert, flags)
                          : undefined,
                    }),
          });
          if (verdict.state === "valid" && caReplaced) {
            // enroll sees this only through the mark: without it, the unit would be started every day for nothing.
            await markCaReplaced(caReplacedPath(flags), verdict.ca).catch(async (err: unknown) => {
              throw (await import("../../fs/safe-dir.js")).storageError(`${caReplaced}, but that could not be noted for enroll in ${caReplacedPath(flags)} (${describeCause(err)})`, err);
            });
            say(`enrollment needed: ${caReplaced}`);
            if (flags.json) printJson({ needed: true, deviceId, state: "ca-changed", reason: caReplaced });
            state.exitCode = CHECK_EXIT.NEEDED;
          } else if (verdict.state === "valid") {
            const revocation = verdict.revocation;
            const checked =
              revocation === undefined ? "revocation not checked (--revocation off)" : revocation.state === "unknown" ? `revocation could not be checked: ${revocation.why}` : describeRevocation(revocation, verdict.cert);
            say(`nothing to do: '${deviceId}' has valid credentials in ${store.location} until ${verdict.cert.notAfter.toISOString()} (renewal due from ${verdict.renewFrom.toISOString()}); ${checked}`);
            if (revocation?.state === "good" && revocation.crl.note) say(`note: ${revocation.crl.note}`);
            if (flags.json) {
              printJson({ needed: false, deviceId, notAfter: verdict.cert.notAfter.toISOString(), renewFrom: verdict.renewFrom.toISOString(), revocation: revocation?.state ?? "not-checked", ...(revocation?.state === "unknown" ? { revocationUnknownWhy: revocation.why } : {}) });
            }
            state.exitCode = CHECK_EXIT.NOTHING_TO_DO;
          } else {
            if (verdict.state === "revoked" && verdict.cacheError) {
              throw (await import("../../fs/safe-dir.js")).storageError(`${verdict.reason}, but ${verdict.cacheError}, where enroll reads it`, undefined);
            }
            say(`enrollment needed: ${verdict.reason}`);
            if (flags.json) printJson({ needed: true, deviceId, state: verdict.state, reason: verdict.reason });
            state.exitCode = CHECK_EXIT.NEEDED;
          }
        } finally {
          await online?.close();
        }
      } catch (err) {
        state.exitCode = reportError(err, { debug: state.debug, json: state.json, exitCode: CHECK_EXIT.ERROR });
      }
    });
  return cmd;
}
