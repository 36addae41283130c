import { Command } from "commander";
import type { CrlFacts } from "../../flows/revocation.js";
import type { StatusResult } from "../../flows/status.js";
import { protocolNamed } from "../../protocols/registry.js";
import type { AgentSettings } from "../../settings.js";
import {
  type CommonFlags,
  checkKeyFlag,
  checkPinFlag,
  type KeyFlags,
  keySettings,
  networkSettings,
  onInterrupt,
  platformTls,
  resolveDeviceId,
  resolvePlatformUrl,
  storeSettings,
} from "../agent-settings.js";
import { applyConfigFile, type ConfigExtras } from "../config.js";
import { parseDuration, parseRenewWindow } from "../inputs.js";
import { flagName } from "../names.js";
import { addOptions } from "../options.js";
import { printResult, reportError, say, tell } from "../output.js";
import { applyRecorded } from "../remembered.js";
import { login, passwordBesideToken, type SourceOf, tokenSession } from "../secrets.js";
import type { CliState } from "../state.js";

interface CheckFlags extends CommonFlags, KeyFlags {
  crlRefresh: string;
  online?: boolean;
}

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
  <out>/<ca-name>.crl. Valid credentials ask the platform at most once in each --crl-refresh
  period (7d; the device id spreads a fleet over it), with If-None-Match where the platform answers
  it; the cached CRL answers meanwhile, even past its next update (the message says how old it is).
  Inside the renewal window, or with a stored CA that ends within two periods, nothing holds it back;
  --online asks now. When the platform cannot be reached, a cached CRL still before its next update
  answers. The platform gets
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

/** Exit codes of `check`. */
export const CHECK_EXIT = { NEEDED: 0, NOTHING_TO_DO: 1, ERROR: 255 } as const;

/** `cert-retriever check`: is enrollment needed? Reads the store; asks the platform (or a CRL distribution point) only about revocation and the CA, as REVOCATION says. */
export function checkCommand(state: CliState): Command {
  const cmd = new Command("check").summary(
    "exit 0 if enrollment is needed, 1 if not, 255 on error (for ExecCondition=)",
  );
  addOptions(cmd, "check")
    .addHelpText("after", HELP)
    .action(async (_f: CommonFlags, command: Command) => {
      try {
        state.exitCode = await runCheck(command, state);
      } catch (err) {
        state.exitCode = reportError(err, {
          debug: state.debug,
          json: state.json,
          exitCode: CHECK_EXIT.ERROR,
          command: "check",
        });
      }
    });
  return cmd;
}

/** The check: the settings from the flags (the platform's only when it is asked), the agent's status, and its report. */
async function runCheck(command: Command, state: CliState): Promise<number> {
  const startedAt = Date.now();
  const extras = await applyConfigFile(command, say);
  await applyRecorded(command, say);
  const flags = command.opts<CheckFlags>();
  state.json ||= Boolean(flags.json);
  const source = (key: string) => command.getOptionValueSource(key);
  const deviceId = await resolveDeviceId({ ...flags, nonInteractive: true }, source);
  const renewBefore = parseRenewWindow(flags.renewBefore);
  const crlRefreshMs = parseDuration(flags.crlRefresh, "--crl-refresh", true);
  await checkPinFlag(flags);
  await checkKeyFlag(flags);
  const store = await storeSettings(flags, deviceId);
  const plugin = protocolNamed(flags.api ?? "auto");
  // A wrong EST URL is a setting to fix, not a revocation that could not be checked.
  if (plugin.checkUrl && flags.platform) plugin.checkUrl(await resolvePlatformUrl(flags));
  const interrupt = onInterrupt();
  // A platform known only from the device's record is asked when something to log in with is given
  // too (a user or a token): a bare `check --device-id` reads the cached CRL, as it always did.
  const loginGiven = flags.username !== undefined || flags.tokenFile !== undefined;
  const recordedOnly = source("platform") === "recorded" && plugin.lacks?.login === undefined && !loginGiven;
  const online = flags.platform !== undefined && flags.revocation === "auto" && !recordedOnly;
  const settings: AgentSettings = {
    device: { id: deviceId },
    store,
    trust: { pin: flags.caFingerprint },
    key: keySettings(flags, source),
    renewal: { renewBefore, revocation: flags.revocation, crlRefreshMs },
    // What asking the platform (or a distribution point, which needs only the TLS settings) needs is
    // found only when it is asked: what fails then leaves revocation unknown. A condition never prompts.
    platform: async () => {
      interrupt.listen();
      const url = flags.platform === undefined ? undefined : await resolvePlatformUrl(flags);
      return { url, protocol: plugin, caName: flags.caName, tls: await platformTls(flags, plugin) };
    },
    login: () => checkLogin(flags, extras, source, plugin.lacks?.login !== undefined),
    network: networkSettings(flags, startedAt, interrupt.signal, [], state.inject?.lookup),
    clock: state.inject?.clock,
    name: flagName,
  };
  const { createAgent } = await import("../../agent.js");
  const agent = createAgent(settings);
  try {
    return report(await agent.status({ online, contactNow: Boolean(flags.online) }), deviceId, flags);
  } finally {
    interrupt.dispose();
    await agent.close();
  }
}

/** A condition never prompts: the token, else the user and password from where they are given. EST asks for nothing that needs a login. */
async function checkLogin(flags: CheckFlags, extras: ConfigExtras, source: SourceOf, noLogin: boolean) {
  if (noLogin) return undefined;
  const token = await tokenSession(flags);
  // Beside a token, a user and password given are for when the token has expired.
  if (token && !(await passwordBesideToken(flags, extras))) return { token };
  const credentials = await login({ ...flags, nonInteractive: true }, extras, source);
  return { username: credentials.username, password: credentials.password, token };
}

/** Says what status found (and with --json prints it); returns the exit code. */
async function report(status: StatusResult, deviceId: string, flags: CheckFlags): Promise<number> {
  if (status.needed) {
    tell(flags, `enrollment needed: ${status.reason}`);
    if (flags.json) printResult("check", { needed: true, deviceId, state: status.state, reason: status.reason });
    return CHECK_EXIT.NEEDED;
  }
  const { describeRevocation } = await import("../../flows/revocation.js");
  const revocation = status.revocation;
  const checked =
    revocation === undefined
      ? "revocation not checked (--revocation off)"
      : revocation.state === "unknown"
        ? `revocation could not be checked: ${revocation.why}`
        : describeRevocation(revocation, status.cert);
  tell(
    flags,
    `nothing to do: '${deviceId}' has valid credentials in ${status.location} until ${status.cert.notAfter.toISOString()} (renewal due from ${status.renewFrom.toISOString()}); ${checked}${status.contact ? `; the platform is asked next from ${status.contact.next.toISOString()}` : ""}`,
  );
  if (revocation?.state === "good" && revocation.crl.note) say(`note: ${revocation.crl.note}`);
  if (status.contact?.note) say(`note: ${status.contact.note}`);
  if (flags.json) {
    const crl = revocation && "crl" in revocation ? revocation.crl : undefined;
    printResult("check", {
      needed: false,
      deviceId,
      notAfter: status.cert.notAfter.toISOString(),
      renewFrom: status.renewFrom.toISOString(),
      revocation: revocation?.state ?? "not-checked",
      ...(revocation?.state === "unknown" ? { revocationUnknownWhy: revocation.why } : {}),
      ...(crl ? crlAge(crl) : {}),
      ...(status.contact ? { nextContact: status.contact.next.toISOString() } : {}),
    });
  }
  return CHECK_EXIT.NOTHING_TO_DO;
}

/** How old the CRL that answered is, for --json. */
function crlAge(crl: CrlFacts): Record<string, unknown> {
  return {
    crlFrom: crl.from,
    crlThisUpdate: crl.thisUpdate.toISOString(),
    ...(crl.nextUpdate ? { crlNextUpdate: crl.nextUpdate.toISOString() } : {}),
    crlPastNextUpdate: crl.pastNextUpdate,
    crlFetchedAt: crl.fetchedAt.toISOString(),
  };
}
