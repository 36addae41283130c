import { Command } from "commander";
import type { CredentialsDescription, KeyLocation, RevocationSeen } from "../../flows/describe.js";
import type { PlatformSettings } from "../../settings.js";
import { type CommonFlags, resolveDeviceId, storeSettings } from "../agent-settings.js";
import { applyConfigFile } from "../config.js";
import { commandExitCodes } from "../exit-codes.js";
import { checkPlatformUrl, parseRenewWindow } from "../inputs.js";
import { flagName } from "../names.js";
import { addOptions } from "../options.js";
import { exitCodesHelp, printResult, printText, say } from "../output.js";
import { applyRecorded } from "../remembered.js";
import type { SourceOf } from "../secrets.js";
import type { CliState } from "../state.js";

const HELP = `
Describes the stored credentials for people, as 'certbot certificates' does: the device, subject
and SANs, issuer and the stored CA chain, serial and fingerprint, validity, when renewal is due
(--renew-before), revocation as check last saw it (the CRL check keeps; nothing is fetched), where
the key is (a file and its mode, a keychain entry, or a PKCS#11 URI: the token is not opened), and
the platform and API given. It contacts nothing and writes nothing. Expired or revoked credentials
are described too (exit 0): check is the command whose exit code says whether to enroll.

  cert-retriever status --device-id f60c28 --out /var/lib/cert-retriever
  cert-retriever status --device-id f60c28 --store keychain --json
`;

/** `cert-retriever status`: the stored credentials described, for people (text) or programs (--json). */
export function statusCommand(state: CliState): Command {
  const cmd = new Command("status").summary(
    "describe the stored credentials: names, chain, dates, renewal, revocation, where the key is",
  );
  addOptions(cmd, "status")
    .addHelpText("after", HELP + exitCodesHelp(commandExitCodes("status")))
    .action(async (_f: CommonFlags, command: Command) => {
      await applyConfigFile(command, say);
      await applyRecorded(command, say);
      const flags = command.opts<CommonFlags>();
      state.json ||= Boolean(flags.json);
      const source = (key: string) => command.getOptionValueSource(key);
      const deviceId = await resolveDeviceId({ ...flags, nonInteractive: true }, source);
      const renewBefore = parseRenewWindow(flags.renewBefore);
      const store = await storeSettings(flags, deviceId);
      const { describeCredentials } = await import("../../agent.js");
      const description = await describeCredentials({
        device: { id: deviceId },
        store,
        platform: namedPlatform(flags, source),
        renewal: { renewBefore },
        clock: state.inject?.clock,
        name: flagName,
      });
      if (flags.json) printResult("status", description);
      else printText(statusText(description));
      state.exitCode = 0;
    });
  return cmd;
}

/**
 * The platform and API the settings name (a flag, the environment, a config file); `--api`'s
 * default names none. The one place status learns them: settings remembered per device feed it too.
 */
function namedPlatform(flags: CommonFlags, source: SourceOf): PlatformSettings {
  const api = source("api") === "default" ? undefined : flags.api;
  // Shown, never contacted: plain http is no risk here, credentials in the URL are refused as everywhere.
  const url = flags.platform === undefined ? undefined : checkPlatformUrl(flags.platform, true, () => {});
  return { url, protocol: api };
}

const DAY_MS = 24 * 60 * 60_000;

/** The description as an aligned block, one fact a line. */
function statusText(d: CredentialsDescription): string {
  const now = new Date(d.describedAt);
  const rows: Array<[string, string]> = [
    ["Device", d.deviceId],
    ["Stored in", d.store.kind === "files" ? `${d.store.location} (files)` : d.store.location],
    ["Subject", d.subject],
    ["SANs", d.sans.length > 0 ? d.sans.map((n) => `${SAN_LABELS[n.type] ?? n.type}:${n.value}`).join(", ") : "none"],
    ["Issuer", d.issuer],
    ["Chain", d.chain.map((c) => `${c.subject}${c.selfSigned ? " (root)" : ""}`).join("\n")],
    ...(d.caReplaced
      ? [
          ["CA", "replaced on the platform, as check found: the next enroll enrolls under the new one"] as [
            string,
            string,
          ],
        ]
      : []),
    ["Serial", d.serialNumber],
    ["SHA-256 fingerprint", d.sha256Fingerprint],
    ["Valid from", when(d.notBefore)],
    ["Valid until", `${when(d.notAfter)} (${expiry(d, now)})`],
    [
      "Renewal due",
      d.renewalDue ? `now (since ${when(d.renewFrom)})` : `${when(d.renewFrom)} (${inDays(d.renewFrom, now)})`,
    ],
    ["Revocation", revocationText(d.revocation)],
    ["Key", keyText(d.key)],
    ["Platform", d.platform.url ?? "not recorded"],
    ["API", d.platform.api ?? "not recorded"],
  ];
  const width = Math.max(...rows.map(([label]) => label.length)) + 2;
  return rows
    .map(([label, value]) => `${`${label}:`.padEnd(width)}${value.split("\n").join(`\n${" ".repeat(width)}`)}`)
    .join("\n");
}

/** openssl's names for the kinds of subject alternative name. */
const SAN_LABELS: Record<string, string> = { dns: "DNS", ip: "IP", uri: "URI", email: "email" };

/** An ISO 8601 time as people read it: to the second, in UTC. */
function when(iso: string): string {
  return iso.replace("T", " ").replace(/(\.\d+)?Z$/, " UTC");
}

function days(n: number): string {
  return `${n} day${n === 1 ? "" : "s"}`;
}

/** How far `iso` is ahead of `now`, in whole days. */
function inDays(iso: string, now: Date): string {
  const n = Math.trunc((new Date(iso).getTime() - now.getTime()) / DAY_MS);
  return n === 0 ? "in less than a day" : `in ${days(n)}`;
}

function expiry(d: CredentialsDescription, now: Date): string {
  if (d.validity === "not-yet-valid") return `NOT VALID YET: valid ${inDays(d.notBefore, now)}`;
  if (d.validity === "valid") return `expires ${inDays(d.notAfter, now)}`;
  return `EXPIRED ${d.expiresInDays === 0 ? "less than a day ago" : `${days(-d.expiresInDays)} ago`}`;
}

function revocationText(r: RevocationSeen): string {
  switch (r.state) {
    case "never-checked":
      return `never checked: no CRL in ${r.crlFile} (check --platform keeps the CA's CRL there)`;
    case "unusable":
      return `not known: the CRL in ${r.crlFile} cannot be used (${r.why})`;
    case "revoked":
      return `REVOKED at ${when(r.revokedAt!)}${r.reason ? ` (${r.reason})` : ""}, says the CA's CRL of ${when(r.crlThisUpdate)} (fetched ${when(r.checkedAt)})`;
    case "good":
      return `not revoked, says the CA's CRL of ${when(r.crlThisUpdate)} (fetched ${when(r.checkedAt)}${r.crlNextUpdate ? `, next update ${when(r.crlNextUpdate)}` : ""})`;
    case "outdated":
      return `not revoked as of the CA's CRL of ${when(r.crlThisUpdate)} (fetched ${when(r.checkedAt)}), which is past its next update ${when(r.crlNextUpdate!)}: check fetches a new one when it next asks the platform`;
  }
}

function keyText(key: KeyLocation): string {
  switch (key.kind) {
    case "file":
      return `file ${key.path}${key.mode ? ` (mode ${key.mode})` : ""}`;
    case "keychain":
      return `OS keychain, service ${key.service}, account ${key.account}`;
    case "pkcs11":
      return `PKCS#11 token, ${key.uri} (recorded in ${key.recordedIn})`;
    case "store":
      return key.where;
  }
}
