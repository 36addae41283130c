import { Command, Option } from "commander";
import { isKeyType, KEY_TYPES, type KeyType } from "../../crypto/keys.js";
import { usageError } from "../../errors.js";
import { checkDeviceId, checkPlatformUrl, checkSans, passwordReader } from "../inputs.js";
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
    .option("--force", "enroll even if valid credentials already exist")
    .option("--allow-http", "allow plain http to a host other than this machine (the password travels in clear)")
    .option("--json", "print the result as JSON on stdout")
    .addHelpText("after", EXAMPLES + exitCodesHelp())
    .action(async (flags: EnrollFlags) => {
      state.exitCode = await runEnroll(flags);
    });
}

async function runEnroll(flags: EnrollFlags): Promise<number> {
  // Everything is checked before the first request.
  const baseUrl = checkPlatformUrl(flags.platform, Boolean(flags.allowHttp), say);
  const deviceId = checkDeviceId(flags.deviceId);
  if (!flags.username) throw usageError("a platform user is required", "pass --username or set CERT_RETRIEVER_USERNAME");
  if (!isKeyType(flags.keyType)) throw usageError(`unknown key type '${flags.keyType}'`);
  const keyType: KeyType = flags.keyType;
  const sans = checkSans(flags.dns, flags.ip, flags.uri);
  const password = passwordReader({ file: flags.passwordFile, stdin: flags.passwordStdin, env: process.env.CERT_RETRIEVER_PASSWORD });
  const entityEnv = process.env.CERT_RETRIEVER_ENTITY_PASSWORD;
  const entityPassword = flags.entityPasswordFile || entityEnv !== undefined
    ? await passwordReader({ file: flags.entityPasswordFile, env: entityEnv }, "end-entity password")()
    : "dojot";

  // Heavy modules load only once the input is known to be good.
  const [{ enroll }, { DojotLegacyClient }, { softwareCrypto }] = await Promise.all([
    import("../../pipeline/enroll.js"),
    import("../../platform/dojot-legacy.js"),
    import("../../crypto/provider.js"),
  ]);
  const result = await enroll(
    {
      platform: new DojotLegacyClient({ baseUrl, caName: flags.caName, entityPassword }),
      crypto: softwareCrypto(),
      deviceId,
      username: flags.username,
      password,
      caName: flags.caName,
      keyType,
      sans,
      outDir: flags.out,
      force: Boolean(flags.force),
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
  if (flags.json) printJson(result);
  return 0;
}
