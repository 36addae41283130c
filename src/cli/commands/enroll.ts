import { Command, Option } from "commander";
import { isKeyType, KEY_TYPES, type KeyType } from "../../crypto/keys.js";
import { CertRetrieverError, usageError } from "../../errors.js";
import { ExitCode } from "../../exit-codes.js";
import type { RetryInfo } from "../../platform/http.js";
import { checkDeviceId, checkPlatformUrl, checkSans, parseCount, parseDuration, passwordReader, readPemFile } from "../inputs.js";
import { exitCodesHelp, printJson, say } from "../output.js";

interface EnrollFlags {
  platform?: string;
  deviceId?: string;
  username?: string;
  passwordFile?: string;
  passwordStdin?: boolean;
  entityPasswordFile?: string;
  caName: string;
  keyType: string;
  dns: string[];
  ip: string[];
  uri: string[];
  out: string;
  force?: boolean;
  allowHttp?: boolean;
  json?: boolean;
  caFingerprint?: string;
  platformCa?: string;
  clientCert?: string;
  clientKey?: string;
  deadline: string;
  retries: string;
  requestTimeout: string;
}

const collect = (value: string, previous: string[]) => [...previous, value];

const EXAMPLES = `
EXAMPLES
  Enroll device f60c28 against a dojot gateway, the password in a file:
    cert-retriever enroll --platform https://dojot.example.com --device-id f60c28 \\
      --username admin --password-file /run/secrets/dojot

  Against the lab platform, an ECDSA key (needs 'lab serve --cert-profile open'):
    echo "$PASS" | cert-retriever enroll --platform http://127.0.0.1:8000 --device-id dev1 \\
      --username admin --password-stdin --key-type ec-p256 --json

FILES
  <out>/<ca-name>.crt, <out>/<device-id>.key (0600, PKCS#8), <out>/<device-id>.crt; <out> is 0700.
`;

/** `cert-retriever enroll`: the whole sequence, authenticate to store. */
export function enrollCommand(state: { debug: boolean; exitCode: number }): Command {
  return new Command("enroll")
    .summary("obtain this device's key, certificate and CA certificate from the platform")
    .description(
      "Authenticates to the platform, fetches the CA certificate, generates the key on this device, submits a CSR, " +
        "validates the certificate it gets back, and only then stores key, certificate and CA in --out. " +
        "Stops at the first failure with the step's exit code; a failed run writes nothing.",
    )
    .addOption(new Option("--platform <url>", "the platform gateway (dojot's Kong), e.g. https://dojot.example.com").env("CERT_RETRIEVER_PLATFORM"))
    .addOption(new Option("--device-id <id>", "the device id on the platform; becomes the certificate's CN").env("CERT_RETRIEVER_DEVICE_ID"))
    .addOption(new Option("--username <name>", "the platform user").env("CERT_RETRIEVER_USERNAME"))
    .addOption(new Option("--password-file <file>", "read the user's password from this file").env("CERT_RETRIEVER_PASSWORD_FILE"))
    .option("--password-stdin", "read the user's password from standard input")
    .addOption(
      new Option("--entity-password-file <file>", "read the EJBCA end-entity password from this file (default: dojot's 'dojot', or CERT_RETRIEVER_ENTITY_PASSWORD)"),
    )
    .addOption(new Option("--ca-name <name>", "the CA that issues device certificates").default("IOTmidCA").env("CERT_RETRIEVER_CA_NAME"))
    .addOption(
      new Option("--key-type <type>", "the key generated on the device (dojot's CFREE profile takes RSA only)")
        .choices(Object.keys(KEY_TYPES))
        .default("rsa-2048")
        .env("CERT_RETRIEVER_KEY_TYPE"),
    )
    .option("--dns <name>", "a DNS subjectAltName to request (repeatable)", collect, [])
    .option("--ip <address>", "an IP subjectAltName to request (repeatable)", collect, [])
    .option("--uri <uri>", "a URI subjectAltName to request (repeatable)", collect, [])
    .addOption(new Option("--out <dir>", "where the credentials are stored").default("./certs").env("CERT_RETRIEVER_OUT"))
    .addOption(new Option("--ca-fingerprint <sha256:hex>", "pin the CA: stop if its SHA-256 fingerprint differs (checked before any key is made, and against a stored CA)").env("CERT_RETRIEVER_CA_FINGERPRINT"))
    .addOption(new Option("--platform-ca <file>", "PEM CA certificate(s) trusted for the platform's HTTPS, beside the system's").env("CERT_RETRIEVER_PLATFORM_CA"))
    .addOption(new Option("--client-cert <file>", "PEM client certificate for a gateway that requires one").env("CERT_RETRIEVER_CLIENT_CERT"))
    .addOption(new Option("--client-key <file>", "PEM key of --client-cert").env("CERT_RETRIEVER_CLIENT_KEY"))
    .addOption(new Option("--deadline <duration>", "give up (exit 75) when the whole run takes longer, e.g. 90s, 5m").default("5m").env("CERT_RETRIEVER_DEADLINE"))
    .addOption(new Option("--retries <n>", "retries of a request that failed temporarily (refused, reset, timeout, 429, 502-504)").default("4").env("CERT_RETRIEVER_RETRIES"))
    .addOption(new Option("--request-timeout <duration>", "time limit for the headers and for the body of one reply").default("30s").env("CERT_RETRIEVER_REQUEST_TIMEOUT"))
    .option("--force", "enroll even if valid credentials already exist")
    .option("--allow-http", "allow plain http to a host other than this machine (the password travels in clear)")
    .option("--json", "print the result as JSON on stdout")
    .addHelpText("after", EXAMPLES + exitCodesHelp())
    .action(async (flags: EnrollFlags) => {
      state.exitCode = await runEnroll(flags);
    });
}

async function runEnroll(flags: EnrollFlags): Promise<number> {
  const startedAt = Date.now();
  // Everything is checked before the first request.
  const baseUrl = checkPlatformUrl(flags.platform, Boolean(flags.allowHttp), say);
  const deviceId = checkDeviceId(flags.deviceId);
  if (!flags.username) throw usageError("a platform user is required", "pass --username or set CERT_RETRIEVER_USERNAME");
  if (!isKeyType(flags.keyType)) throw usageError(`unknown key type '${flags.keyType}'`);
  const keyType: KeyType = flags.keyType;
  const sans = checkSans(flags.dns, flags.ip, flags.uri);
  const deadlineMs = parseDuration(flags.deadline, "--deadline");
  const attempts = parseCount(flags.retries, "--retries", 0, 100) + 1;
  const requestTimeout = parseDuration(flags.requestTimeout, "--request-timeout");
  await checkOutDir(flags.out);
  const { normalizeFingerprint } = await import("../../pipeline/pin.js");
  if (flags.caFingerprint !== undefined && !normalizeFingerprint(flags.caFingerprint)) {
    throw usageError(`--ca-fingerprint '${flags.caFingerprint}' is not a SHA-256 fingerprint`, "give it as sha256:<64 hex digits> (colons allowed), as the last run printed it");
  }
  if (Boolean(flags.clientCert) !== Boolean(flags.clientKey)) throw usageError("--client-cert and --client-key go together");
  const password = passwordReader({ file: flags.passwordFile, stdin: flags.passwordStdin, env: process.env.CERT_RETRIEVER_PASSWORD });
  const entityEnv = process.env.CERT_RETRIEVER_ENTITY_PASSWORD;
  const entityPassword = flags.entityPasswordFile || entityEnv !== undefined
    ? await passwordReader({ file: flags.entityPasswordFile, env: entityEnv }, "end-entity password")()
    : "dojot";
  const tls = {
    ca: flags.platformCa ? [await readPemFile(flags.platformCa, "--platform-ca", /-----BEGIN CERTIFICATE-----/)] : [],
    cert: flags.clientCert ? await readPemFile(flags.clientCert, "--client-cert", /-----BEGIN CERTIFICATE-----/) : undefined,
    key: flags.clientKey ? await readPemFile(flags.clientKey, "--client-key", /-----BEGIN ([A-Z]+ )?PRIVATE KEY-----/) : undefined,
  };

  // Heavy modules load only once the input is known to be good.
  const [{ enroll }, { DojotLegacyClient }, { softwareCrypto }, { HttpClient }] = await Promise.all([
    import("../../pipeline/enroll.js"),
    import("../../platform/dojot-legacy.js"),
    import("../../crypto/provider.js"),
    import("../../platform/http.js"),
  ]);
  const retries: RetryInfo[] = [];
  const interrupt = onInterrupt();
  const http = new HttpClient({
    timeouts: { connect: Math.min(10_000, requestTimeout), headers: requestTimeout, body: requestTimeout },
    attempts,
    deadline: startedAt + deadlineMs,
    tls,
    signal: interrupt.signal,
    onRetry: (info) => {
      retries.push(info);
      say(`retry: ${info.step} attempt ${info.attempt} of ${info.attempts} failed (${info.reason}); trying again in ${(info.waitMs / 1000).toFixed(1)} s`);
    },
  });
  try {
    const result = await enroll(
      {
        platform: new DojotLegacyClient({ baseUrl, caName: flags.caName, entityPassword, http }),
        crypto: softwareCrypto(),
        deviceId,
        username: flags.username,
        password,
        caName: flags.caName,
        keyType,
        sans,
        outDir: flags.out,
        force: Boolean(flags.force),
        caFingerprint: flags.caFingerprint,
        clockSkewMs: () => http.clockSkewMs,
        signal: interrupt.signal,
      },
      (event) => {
        if (event.type === "step") say(`[${event.index}/${event.total}] ${event.step}: ${event.detail} (${event.ms} ms)`);
        else say(`note: ${event.message}`);
      },
    );
    if (result.status === "already-enrolled") {
      say(`device '${deviceId}' already has valid credentials in ${flags.out} (valid until ${result.notAfter}); nothing to do (use --force to enroll again)`);
    } else {
      say(`enrolled device '${deviceId}': ${result.files.key}, ${result.files.certificate}, ${result.files.ca}`);
    }
    if (flags.json) printJson({ ...result, retries });
    return 0;
  } finally {
    interrupt.dispose();
    await http.close();
  }
}

/** The output directory must be a directory if it exists. */
async function checkOutDir(out: string): Promise<void> {
  const { stat } = await import("node:fs/promises");
  const info = await stat(out).catch(() => undefined);
  if (info && !info.isDirectory()) throw usageError(`--out ${out} exists and is not a directory`);
}

/** An abort signal raised by SIGINT or SIGTERM, whose reason is the error (exit 130 or 143) to report. */
function onInterrupt(): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const handlers = (["SIGINT", "SIGTERM"] as const).map((sig) => {
    const handler = () =>
      controller.abort(
        new CertRetrieverError(`interrupted by ${sig}; nothing was written and the previous credentials are unchanged`, {
          step: "usage",
          exitCode: sig === "SIGINT" ? ExitCode.INTERRUPTED : ExitCode.TERMINATED,
        }),
      );
    process.on(sig, handler);
    return [sig, handler] as const;
  });
  return { signal: controller.signal, dispose: () => handlers.forEach(([sig, h]) => process.off(sig, h)) };
}
