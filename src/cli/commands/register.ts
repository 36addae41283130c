import { readFile } from "node:fs/promises";
import { Command } from "commander";
import { CertRetrieverError, describeCause } from "../../errors.js";
import type { CheckedChain } from "../../flows/register.js";
import { protocolNamed } from "../../protocols/registry.js";
import type { RetryInfo } from "../../transport/http.js";
import {
  type CommonFlags,
  networkSettings,
  onInterrupt,
  platformTls,
  refuseLacking,
  resolveDeviceId,
  resolvePlatformUrl,
} from "../agent-settings.js";
import { applyConfigFile } from "../config.js";
import { commandExitCodes } from "../exit-codes.js";
import { usage } from "../hints.js";
import { boundedRead, parseDuration } from "../inputs.js";
import { flagName } from "../names.js";
import { addOptions } from "../options.js";
import { exitCodesHelp, holdSecret, printResult, say, tell } from "../output.js";
import { events } from "../progress.js";
import { login, passwordBesideToken, tokenSession } from "../secrets.js";
import type { CliState } from "../state.js";

interface RegisterFlags extends CommonFlags {
  certChain?: string;
  rootCaFingerprint?: string;
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
    .addHelpText("after", EXAMPLES + exitCodesHelp(commandExitCodes("register")))
    .action(async (_flags: RegisterFlags, command: Command) => {
      state.exitCode = await runRegister(command, state);
    });
  return cmd;
}

/** The run: the chain and the settings checked before the first request; then the agent registers. */
async function runRegister(command: Command, state: CliState): Promise<number> {
  const startedAt = Date.now();
  const extras = await applyConfigFile(command, say);
  const flags = command.opts<RegisterFlags>();
  state.json ||= Boolean(flags.json);
  const source = (key: string) => command.getOptionValueSource(key);
  const { plugin, baseUrl, deviceId, chain, root } = await checkRegisterFlags(flags, source);
  const token = await tokenSession(flags);
  // Beside a token, a user and password given are for when the token has expired.
  const credentials =
    token && !(await passwordBesideToken(flags, extras)) ? undefined : await login(flags, extras, source);
  if (token) holdSecret(token.jwt);
  const tls = await platformTls(flags);
  const retries: RetryInfo[] = [];
  const interrupt = onInterrupt();
  const deadline = startedAt + parseDuration(flags.deadline, "--deadline");
  const { createAgent } = await import("../../agent.js");
  const agent = createAgent({
    // The CA name matters only to tell EJBCA-REST apart (`GET /ca/<name>`): dojot's default.
    platform: { url: baseUrl, protocol: plugin, tls },
    device: { id: deviceId },
    login: credentials
      ? {
          username: credentials.username,
          password: boundedRead(credentials.password, interrupt.signal, deadline),
          retryLogin: credentials.retryLogin,
          onToken: credentials.onToken,
          token,
        }
      : { token },
    network: networkSettings(flags, startedAt, interrupt.signal, retries, state.inject?.lookup),
    clock: state.inject?.clock,
    name: flagName,
  });
  interrupt.listen();
  try {
    const result = await agent.register({
      chain,
      rootCaFingerprint: root,
      onEvent: events(state, flags),
    });
    tell(
      flags,
      result.status === "registered"
        ? `registered certificate ${result.fingerprint} for device '${deviceId}'`
        : `certificate ${result.fingerprint} was registered for device '${deviceId}' already; nothing to do`,
    );
    if (flags.json) printResult("register", { ...result, retries });
    return 0;
  } finally {
    interrupt.dispose();
    await agent.close();
  }
}

/** Everything checked, and everything missing asked for, before the first request: the chain above all. */
async function checkRegisterFlags(
  flags: RegisterFlags,
  source: (key: string) => string | undefined,
): Promise<{
  plugin: ReturnType<typeof protocolNamed>;
  baseUrl: URL;
  deviceId: string;
  chain: CheckedChain;
  root?: string;
}> {
  if (!flags.certChain)
    throw usage(
      "register needs --cert-chain FILE (or CERT_RETRIEVER_CERT_CHAIN): the device's certificate and its CA certificates, PEM",
    );
  const [{ normalizeFingerprint }, { checkChain }, { softwareCrypto }] = await Promise.all([
    import("../../keys/fingerprint.js"),
    import("../../flows/register.js"),
    import("../../keys/provider.js"),
  ]);
  const normalized = flags.rootCaFingerprint === undefined ? undefined : normalizeFingerprint(flags.rootCaFingerprint);
  if (flags.rootCaFingerprint !== undefined && !normalized) {
    throw usage(
      `--root-ca-fingerprint '${flags.rootCaFingerprint}' is not a SHA-256 fingerprint`,
      "give it as sha256:<64 hex digits> (colons allowed)",
    );
  }
  const plugin = protocolNamed(flags.api ?? "auto");
  refuseLacking(plugin, "register", flags.api ?? "auto");
  const baseUrl = await resolvePlatformUrl(flags);
  const deviceId = await resolveDeviceId(flags, source, (id) =>
    plugin.checkSettings?.({ purpose: "register", deviceId: id }, flagName),
  );
  const root = normalized && normalized.match(/../g)!.join(":");
  const chain = await checkChain(await readChain(flags.certChain), flags.certChain, {
    deviceId,
    caFingerprint: root,
    now: new Date(),
    crypto: softwareCrypto(),
  }).catch((err: unknown) => {
    throw withChainHint(err);
  });
  return { plugin, baseUrl, deviceId, chain, root };
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
  return hint
    ? new CertRetrieverError(err.message, {
        step: err.step,
        reason: err.reason,
        facts: err.facts,
        cause: err.cause,
        hint,
      })
    : err;
}

/** The chain file's text; one that cannot be read is a settings error (exit 3). */
async function readChain(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    throw new CertRetrieverError(`cannot read --cert-chain ${path}: ${describeCause(err)}`, {
      cause: err,
      step: "config",
      reason: "config",
      facts: { path },
      hint: "check the path given to --cert-chain",
    });
  }
}
