import { readFile } from "node:fs/promises";
import { Command } from "commander";
import { CertRetrieverError, describeCause } from "../../errors.js";
import { COMMAND_EXIT_CODES } from "../exit-codes.js";
import type { RetryInfo } from "../../transport/http.js";
import { applyConfigFile } from "../config.js";
import { isInteractive, login, openPlatformRun, resolveDeviceId, resolvePlatformUrl, tokenSession, type CommonFlags } from "../context.js";
import { usage } from "../failures.js";
import { boundedRead, parseDuration } from "../inputs.js";
import type { ApiChoice } from "../platform.js";
import type { CliState } from "../main.js";
import { addOptions } from "../options.js";
import { exitCodesHelp, holdSecret, printJson, progress, say } from "../output.js";

interface RegisterFlags extends CommonFlags {
  certChain?: string;
  rootCaFingerprint?: string;
  api: ApiChoice;
}

const EXAMPLES = `
A device that already has a certificate (from a factory CA, or born in a secure element) needs no
new one: register it with the platform and bind it to the device. Only x509-identity-mgmt (dojot
v0.7+) can do this, and only for a certificate issued under a root CA the tenant trusts
(POST /x509/v1/trusted-cas). Nothing is written on this device.

EXAMPLES
  The device's certificate, then its intermediate and root CA certificates, in one file:
    cat device.crt factory-int.crt factory-root.crt > chain.pem
    cert-retriever register --platform https://dojot.example.com --device-id f60c28 \\
      --cert-chain chain.pem --username admin --password-file /run/secrets/dojot

  A chain without its root CA: name the trusted root by its fingerprint:
    cert-retriever register --platform https://dojot.example.com --device-id f60c28 \\
      --cert-chain device.crt --root-ca-fingerprint sha256:<hex> --token-file /run/station/token --json
`;

/** `cert-retriever register`: register a certificate the device already has, bound to the device. */
export function registerCommand(state: CliState): Command {
  const cmd = new Command("register")
    .summary("register a certificate the device already has with the platform, bound to the device (dojot v0.7+)")
    .description(
      "Checks the certificate chain in --cert-chain (the device's own certificate first, not a CA, valid now), " +
        "authenticates, and registers the certificate with the platform's x509-identity-mgmt, bound to --device-id. " +
        "The platform accepts it only under a root CA it trusts. Nothing is written on this device.",
    );
  addOptions(cmd, "register")
    .addHelpText("after", EXAMPLES + exitCodesHelp(COMMAND_EXIT_CODES.register))
    .action(async (_flags: RegisterFlags, command: Command) => {
      state.exitCode = await runRegister(command, state);
    });
  return cmd;
}

async function runRegister(command: Command, state: CliState): Promise<number> {
  const startedAt = Date.now();
  const extras = await applyConfigFile(command, say);
  const flags = command.opts<RegisterFlags>();
  state.json ||= Boolean(flags.json);
  // Everything is checked, and everything missing asked for, before the first request.
  if (!flags.certChain) throw usage("register needs --cert-chain FILE (or CERT_RETRIEVER_CERT_CHAIN): the device's certificate and its CA certificates, PEM");
  const [{ normalizeFingerprint }, { checkChain, registerExisting }, { x509DeviceIdProblem }, { softwareCrypto }] = await Promise.all([
    import("../../flows/pin.js"),
    import("../../flows/register.js"),
    import("../../protocols/x509-identity-mgmt/client.js"),
    import("../../keys/provider.js"),
  ]);
  const root = flags.rootCaFingerprint === undefined ? undefined : normalizeFingerprint(flags.rootCaFingerprint);
  if (flags.rootCaFingerprint !== undefined && !root) {
    throw usage(`--root-ca-fingerprint '${flags.rootCaFingerprint}' is not a SHA-256 fingerprint`, "give it as sha256:<64 hex digits> (colons allowed)");
  }
  if (flags.api === "est") {
    throw new CertRetrieverError("--api est: EST (RFC 7030) has no request to register a certificate its CA did not issue; that needs x509-identity-mgmt (dojot v0.7+)", {
      step: "usage",
      reason: "not-supported",
    });
  }
  if (flags.api === "dojot-legacy") {
    throw new CertRetrieverError("--api dojot-legacy: EJBCA-REST (dojot <= v0.4) cannot register a certificate it did not issue; that needs x509-identity-mgmt (dojot v0.7+)", {
      step: "usage",
      reason: "not-supported",
    });
  }
  const baseUrl = await resolvePlatformUrl(flags);
  const deviceId = await resolveDeviceId(flags, (key) => command.getOptionValueSource(key));
  const badId = x509DeviceIdProblem(deviceId, "v0.7");
  if (badId) throw usage(badId, "use the platform's device id (dojot's are hex)");
  const crypto = softwareCrypto();
  const chain = await checkChain(await readChain(flags.certChain), flags.certChain, {
    deviceId,
    caFingerprint: root && root.match(/../g)!.join(":"),
    now: new Date(),
    crypto,
  }).catch((err: unknown) => {
    throw withChainHint(err);
  });
  const token = await tokenSession(flags);
  const source = (key: string) => command.getOptionValueSource(key);
  const credentials = token ? undefined : await login(flags, extras, source);
  if (token) holdSecret(token.session.jwt);
  const retries: RetryInfo[] = [];
  const { http, interrupt } = await openPlatformRun(flags, startedAt, retries);
  try {
    const { makePlatform } = await import("../platform.js");
    const { DojotX509Client } = await import("../../protocols/x509-identity-mgmt/client.js");
    const x509 = new DojotX509Client({ baseUrl, http });
    // The CA name matters only to tell EJBCA-REST apart (`GET /ca/<name>`): dojot's default.
    const platform = flags.api === "dojot" ? x509 : await makePlatform("auto", { baseUrl, caName: "IOTmidCA", entityPassword: "", http });
    const result = await registerExisting(
      {
        platform,
        x509,
        deviceId,
        chain,
        caFingerprint: root && root.match(/../g)!.join(":"),
        username: credentials?.username ?? flags.username ?? "",
        password: boundedRead(credentials?.password ?? (async () => ""), interrupt.signal, startedAt + parseDuration(flags.deadline, "--deadline")),
        retryLogin: credentials?.retryLogin,
        session: token?.session,
        sessionSource: token?.source,
        signal: interrupt.signal,
      },
      progress(isInteractive(flags)),
    );
    say(
      result.status === "registered"
        ? `registered certificate ${result.fingerprint} for device '${deviceId}'`
        : `certificate ${result.fingerprint} was registered for device '${deviceId}' already; nothing to do`,
    );
    if (flags.json) printJson({ ...result, retries });
    return 0;
  } finally {
    interrupt.dispose();
    await http.close();
  }
}

/** A hint for what the chain file lacks, naming the flags that fix it. */
function withChainHint(err: unknown): unknown {
  if (!(err instanceof CertRetrieverError) || err.hint) return err;
  const hint =
    err.reason === "config"
      ? "--cert-chain takes a PEM file of certificates (-----BEGIN CERTIFICATE-----), the device's own first"
      : err.reason === "usage"
        ? "append the root CA certificate to --cert-chain, or give its fingerprint with --root-ca-fingerprint"
        : undefined;
  return hint ? new CertRetrieverError(err.message, { step: err.step, reason: err.reason, facts: err.facts, cause: err.cause, hint }) : err;
}

/** The chain file's text; one that cannot be read is a settings error (exit 3). */
async function readChain(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    throw new CertRetrieverError(`cannot read --cert-chain ${path}: ${describeCause(err)}`, { cause: err, step: "config", reason: "config", facts: { path }, hint: "check the path given to --cert-chain" });
  }
}
