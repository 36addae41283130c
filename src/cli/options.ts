import { type Command, Option } from "commander";
import { MQTT_VERSIONS } from "../broker/profiles.js";
import { KEY_TYPES } from "../keys/key-types.js";
import { DEFAULT_PROTOCOL, PROTOCOLS, protocolNames, protocolSettings } from "../protocols/registry.js";
import { flagName, renderText } from "./names.js";

/** The commands that take shared options; each option is defined once, here, with the commands that use it. */
export type CommandName =
  | "enroll"
  | "login"
  | "check"
  | "verify"
  | "export"
  | "register"
  | "status"
  | "sign"
  | "verify-signature";

const PLATFORM: CommandName[] = ["enroll", "login", "register"];
const STORED: CommandName[] = ["enroll", "check", "verify", "export"];
const BROKER: CommandName[] = ["enroll", "verify"];
/** The commands that sign with the stored key and check what it signed. */
const SIGNING: CommandName[] = ["sign", "verify-signature"];
const ALL: CommandName[] = ["enroll", "login", "check", "verify", "export", "register", "status", ...SIGNING];
/** Platform options `check` takes too: it asks the platform for the CA's CRL and the CA. */
const ONLINE: CommandName[] = [...PLATFORM, "check"];
/** Where stored credentials are found: what `status` reads too. */
const FOUND: CommandName[] = [...STORED, "status", ...SIGNING];

interface OptionSpec {
  flags: string;
  description: string;
  /** The commands that use it: only they show it in their help. */
  commands: CommandName[];
  /**
   * Commands that accepted it before their help was trimmed to what they use: they still accept it
   * (a unit or a script that passes it keeps working) but do not show it, and it changes nothing there.
   */
  hiddenIn?: CommandName[];
  /** What it means for one command, where that differs from `description`. */
  describe?: Partial<Record<CommandName, string>>;
  /** The environment variable, CERT_RETRIEVER_<NAME>. */
  env?: string;
  default?: string | string[];
  choices?: string[];
  /** Repeatable: values are collected into an array. */
  repeatable?: boolean;
}

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

/** Every shared option. The config file takes the same names in camelCase (`deviceId`, `caName`). */
export const OPTION_SPECS: OptionSpec[] = [
  {
    flags: "--platform <url>",
    description: "the platform gateway (dojot's Kong), e.g. https://dojot.example.com, or the EST server (--api est)",
    commands: [...ONLINE, "status"],
    describe: {
      check:
        "the platform, asked for its CA and the CA's CRL (revocation) once in each --crl-refresh period (or with --online); without it only the cache is read",
      status: "the platform the device enrolls with, shown as it is given (status contacts nothing)",
    },
    env: "PLATFORM",
  },
  {
    flags: "--api <api>",
    description: apiDescription(),
    commands: ["enroll", "register", "check", "status"],
    describe: { status: "the platform's API the device enrolls with, shown as it is given (status contacts nothing)" },
    hiddenIn: ["login"],
    env: "API",
    default: DEFAULT_PROTOCOL,
    choices: protocolNames(),
  },
  { flags: "--username <name>", description: "the platform user", commands: ONLINE, env: "USERNAME" },
  {
    flags: "--password-file <file>",
    description: "read the user's password from this file",
    commands: ONLINE,
    env: "PASSWORD_FILE",
  },
  { flags: "--password-stdin", description: "read the user's password from standard input", commands: PLATFORM },
  {
    flags: "--token-file <file>",
    description:
      "use the token that 'cert-retriever login' wrote, instead of logging in (with --username and a password too, log in when the token has expired)",
    commands: ONLINE,
    describe: { login: "write the token here (mode 0600), for later 'enroll --token-file' runs" },
    env: "TOKEN_FILE",
  },
  {
    flags: "--platform-ca <file>",
    description: "PEM CA certificate(s) trusted for the platform's HTTPS, beside the system's",
    commands: ONLINE,
    env: "PLATFORM_CA",
  },
  {
    flags: "--client-cert <file>",
    description:
      "PEM client certificate for a gateway that requires one; with --api est, a bootstrap (factory) certificate that authenticates the first enrollment, with or without --username; with --api cmp and no --username, a bootstrap certificate (IDevID; the file may hold its chain after it) whose key signs the first enrollment instead of the shared secret",
    commands: ONLINE,
    env: "CLIENT_CERT",
  },
  {
    flags: "--client-key <file>",
    description:
      "PEM key of --client-cert; with --api cmp, also the bootstrap key already in a PKCS#11 token, by its URI with id= or object= (pkcs11:…;id=…), which signs there and is never removed",
    commands: ONLINE,
    env: "CLIENT_KEY",
  },
  {
    flags: "--allow-http",
    description: "allow plain http to a host other than this machine (the password travels in clear)",
    commands: ONLINE,
  },
  {
    flags: "--deadline <duration>",
    description: "give up (exit 75) when the whole run takes longer, e.g. 90s, 5m (a unit is required)",
    commands: ONLINE,
    env: "DEADLINE",
    default: "5m",
  },
  {
    flags: "--retries <n>",
    description: "retries of a request that failed temporarily (refused, reset, timeout, 429, 502-504)",
    commands: ONLINE,
    env: "RETRIES",
    default: "4",
  },
  {
    flags: "--request-timeout <duration>",
    description: "time limit for the headers and for the body of one reply",
    commands: ONLINE,
    env: "REQUEST_TIMEOUT",
    default: "30s",
  },
  {
    flags: "--device-id <id>",
    description: "the device id on the platform; becomes the certificate's CN and the file names",
    commands: [...FOUND, "register"],
    describe: { register: "the device id on the platform, which the certificate is bound to" },
    env: "DEVICE_ID",
  },
  {
    flags: "--device-id-file <file>",
    description: "read the device id from the first line of this file",
    commands: [...FOUND, "register"],
    env: "DEVICE_ID_FILE",
  },
  {
    flags: "--ca-name <name>",
    description: "the CA that issues device certificates",
    commands: FOUND,
    env: "CA_NAME",
    default: "IOTmidCA",
  },
  {
    flags: "--ca-fingerprint <sha256:hex>",
    description:
      "pin the CA: stop if its SHA-256 fingerprint differs (checked before any key is made, and against a stored CA)",
    commands: ["enroll", "check"],
    hiddenIn: ["verify", "export"],
    describe: { check: "enrollment is needed if the stored CA's SHA-256 fingerprint differs from this pin" },
    env: "CA_FINGERPRINT",
  },
  {
    flags: "--out <dir>",
    description: "where the credentials are stored (files), or where the lock lives (keychain)",
    commands: FOUND,
    describe: {
      check: "where the stored credentials are (files)",
      status: "where the stored credentials are (files), or where check keeps the CA's CRL (keychain)",
      verify: "where the stored credentials are (files)",
    },
    env: "OUT",
    default: "./certs",
  },
  {
    flags: "--store <kind>",
    description: "files: PEM files in --out; keychain: the OS keychain (Secret Service on Linux)",
    commands: FOUND,
    env: "STORE",
    default: "files",
    choices: ["files", "keychain"],
  },
  {
    flags: "--renew-before <window>",
    description:
      "renew a certificate this long before it expires (30d, 12h: a unit is required), or when this share of its lifetime is left (33%: at two thirds of it)",
    commands: ["enroll", "check", "status"],
    hiddenIn: ["verify", "export"],
    describe: {
      status:
        "the renewal window that says when renewal is due, as check and enroll take it: 30d, 12h (a unit is required), or 33% of the lifetime left",
    },
    env: "RENEW_BEFORE",
    default: "33%",
  },
  {
    flags: "--revocation <mode>",
    description:
      "auto: a certificate the CA's CRL lists as revoked is enrolled again (check fetches the CRL from --platform, enroll reads check's cached copy); distribution-points: check fetches it from the certificate's own http CRL distribution points instead; off: no CRL is read",
    commands: ["enroll", "check"],
    env: "REVOCATION",
    default: "auto",
    choices: ["auto", "distribution-points", "off"],
  },
  {
    flags: "--crl-refresh <duration>",
    description:
      "the traffic budget: with valid credentials, ask the platform (login, CA, CRL) at most once in each period this long, at a time the device id spreads; the cached CRL answers meanwhile, even past its next update",
    commands: ["check"],
    env: "CRL_REFRESH",
    default: "7d",
  },
  {
    flags: "--online",
    description: "ask the platform now (login, CA, CRL), whatever --crl-refresh says",
    commands: ["check"],
  },
  {
    flags: "--exec <command>",
    description:
      "after new credentials are stored, run this command line (by /bin/sh -c, as given; the new files in its environment, as CERT_RETRIEVER_CERT_FILE and the like); exit 18 if it fails",
    commands: ["enroll"],
    env: "EXEC",
  },
  {
    flags: "--reload-unit <unit>",
    description:
      "after new credentials are stored, systemctl try-reload-or-restart this unit (e.g. mosquitto.service); exit 18 if it fails",
    commands: ["enroll"],
    env: "RELOAD_UNIT",
  },
  {
    flags: "--hook-timeout <duration>",
    description: "time limit for --exec and for --reload-unit",
    commands: ["enroll"],
    env: "HOOK_TIMEOUT",
    default: "60s",
  },
  {
    flags: "--keep-previous",
    description:
      "do not revoke the certificate a renewal replaced (by default it is revoked on x509-identity-mgmt once the new one is stored)",
    commands: ["enroll"],
    env: "KEEP_PREVIOUS",
  },
  {
    flags: "--key-type <type>",
    description:
      "the key generated on the device (default: ec-p256 for x509-identity-mgmt, rsa-2048 for EJBCA-REST, whose CFREE profile takes RSA only)",
    commands: ["enroll"],
    env: "KEY_TYPE",
    choices: Object.keys(KEY_TYPES),
  },
  {
    flags: "--cert-chain <file>",
    description: "PEM file: the device's certificate first, then its CA certificates (ideally up to the root)",
    commands: ["register"],
    env: "CERT_CHAIN",
  },
  {
    flags: "--root-ca-fingerprint <sha256:hex>",
    description:
      "the SHA-256 fingerprint of the trusted root CA that issued the chain, when --cert-chain does not end with it",
    commands: ["register"],
    env: "ROOT_CA_FINGERPRINT",
  },
  {
    flags: "--key <pkcs11-uri|file>",
    description:
      "keep the key in a PKCS#11 token (secure element, TPM, SoftHSM), named by an RFC 7512 URI such as 'pkcs11:token=device'; the PIN from the URI's pin-source=file:PATH, CERT_RETRIEVER_PKCS11_PIN, the systemd credential 'pin', or a prompt; with id= (e.g. 'pkcs11:token=device;id=%42%01'), enroll certifies the key already in the token with that id instead of generating one, and never removes it. Or a PEM private key file: enroll certifies that key instead of generating one",
    commands: ["enroll", "check", "verify", "sign"],
    // export reads where the key is from the store: a key in a token stays there.
    hiddenIn: ["export"],
    describe: {
      check: "the token key's URI, if not the one recorded with the credentials",
      verify: "the token key's URI, if not the one recorded with the credentials",
      sign: "the token key's URI, if not the one recorded with the credentials",
    },
    env: "KEY",
  },
  {
    flags: "--pkcs11-module <path>",
    description: "the PKCS#11 module, when the --key URI has no module-path= (else PKCS11_MODULE_PATH)",
    commands: ["enroll", "check", "verify", "sign"],
    hiddenIn: ["export"],
    env: "PKCS11_MODULE",
  },
  {
    flags: "--to <dir>",
    description: "where the copies are written (made 0700 if missing; the key file 0600)",
    commands: ["export"],
  },
  {
    flags: "--format <format>",
    description:
      "pem: the files as the store keeps them (<device-id>.key, <device-id>.crt, <ca-name>.crt); der: <device-id>.key.der (PKCS#8), <device-id>.crt.der and the CA chain as <ca-name>.p7b (PKCS#7)",
    commands: ["export"],
    default: "pem",
    choices: ["pem", "der"],
  },
  {
    flags: "--store-cert-in-token",
    description:
      "also put the certificate into the token, beside its key (same label and id), for other PKCS#11 programs",
    commands: ["enroll"],
  },
  {
    flags: "--dns <name>",
    description: "a DNS subjectAltName to request (repeatable)",
    commands: ["enroll"],
    repeatable: true,
    default: [],
  },
  {
    flags: "--ip <address>",
    description: "an IP subjectAltName to request (repeatable)",
    commands: ["enroll"],
    repeatable: true,
    default: [],
  },
  {
    flags: "--uri <uri>",
    description: "a URI subjectAltName to request (repeatable)",
    commands: ["enroll"],
    repeatable: true,
    default: [],
  },
  ...protocolOptionSpecs(),
  {
    flags: "--profile <profile>",
    description:
      "identity profile: generic, dojot-mosca (iotagent-mosca: dojot <= v0.4, and v0.5-v0.6 where Mosca serves), dojot-vernemq (VerneMQ: dojot v0.5+), amqtt, airvantage; recorded with the credentials",
    commands: BROKER,
    describe: {
      verify:
        "the identity profile (default: the one recorded at enrollment): generic, dojot-mosca, dojot-vernemq, amqtt, airvantage",
    },
    env: "PROFILE",
    choices: ["generic", "dojot-mosca", "dojot-vernemq", "amqtt", "airvantage"],
  },
  {
    flags: "--uri-domain <domain>",
    description: "amqtt: the broker's uri_domain, for the spiffe://<domain>/device/<id> URI SAN",
    commands: ["enroll"],
    hiddenIn: ["verify"],
    env: "URI_DOMAIN",
  },
  {
    flags: "--client-id <id>",
    description: "the MQTT client id (default: the profile's)",
    commands: BROKER,
    env: "CLIENT_ID",
  },
  {
    flags: "--topic <topic>",
    description: "publish one QoS 1 message here (default: the profile's topic, if it has one)",
    commands: BROKER,
    env: "TOPIC",
  },
  {
    flags: "--servername <name>",
    description: "the TLS server name (SNI) and the name the broker's certificate must carry",
    commands: BROKER,
    env: "SERVERNAME",
  },
  {
    flags: "--mqtt-version <version>",
    description:
      "the MQTT version: 5, 3.1.1, or auto (5, then 3.1.1 if the broker refuses 5 or leaves it unanswered for 3 s); default: the profile's (3.1.1 for dojot-mosca and amqtt, else auto)",
    commands: BROKER,
    env: "MQTT_VERSION",
    choices: [...MQTT_VERSIONS],
  },
  {
    flags: "--broker-timeout <duration>",
    description: "the broker check's time limit for each stage",
    commands: BROKER,
    env: "BROKER_TIMEOUT",
    default: "10s",
  },
  {
    flags: "--json",
    description:
      "print the result as JSON on stdout (on failure: an error object with step, reason, exit code, message and hint)",
    commands: ALL,
  },
  {
    flags: "--quiet",
    description:
      "print only errors, warnings and notes on stderr: no step lines, no progress, no summary (stdout and --json are unchanged)",
    commands: ["enroll", "login", "check", "verify", "export", "register", ...SIGNING],
    env: "QUIET",
  },
  {
    flags: "--non-interactive",
    description: "never prompt: a missing value is an error (also without a terminal)",
    commands: ["enroll", "login", "verify", "export", "register", "sign"],
    hiddenIn: ["check", "status"],
  },
  {
    flags: "--config <file>",
    description:
      "settings file (JSON); default: $XDG_CONFIG_HOME/cert-retriever/config.json (else the same under ~/.config), then /etc/cert-retriever/config.json, where they exist",
    commands: ALL,
    env: "CONFIG",
  },
];

/** `--api`'s help: each protocol by its names (canonical first) and what it is, from the registry. */
function apiDescription(): string {
  const each = PROTOCOLS.map((p) => `${[p.name, ...p.aliases].join(" or ")} (${renderText(p.summary)})`);
  return `the platform's API: ${each.slice(0, -1).join(", ")}, or ${each.at(-1)}`;
}

/** The settings protocols declare, as options of the command that enrolls. */
function protocolOptionSpecs(): OptionSpec[] {
  return protocolSettings().map((s) => ({
    flags: `${flagName(s.name)} <${s.argument}>`,
    description: renderText(s.description),
    commands: ["enroll"],
    env: s.env,
  }));
}

/** Adds the options `name` uses to `cmd`, described as they work there, and the hidden ones it still accepts. */
export function addOptions(cmd: Command, name: CommandName): Command {
  for (const spec of OPTION_SPECS.filter((s) => s.commands.includes(name) || s.hiddenIn?.includes(name))) {
    const option = new Option(spec.flags, spec.describe?.[name] ?? spec.description);
    if (!spec.commands.includes(name)) option.hideHelp();
    if (spec.env) option.env(`CERT_RETRIEVER_${spec.env}`);
    if (spec.choices) option.choices(spec.choices);
    if (spec.repeatable) option.argParser(collect);
    if (spec.default !== undefined) option.default(spec.default);
    cmd.addOption(option);
  }
  return cmd;
}

/** The attribute name commander gives an option: `--device-id` -> `deviceId`. */
export function attributeName(flags: string): string {
  const long = /--([a-z0-9-]+)/.exec(flags)![1]!;
  return long.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Config keys that hold secrets: accepted only from a file that is 0600. */
export const SECRET_CONFIG_KEYS = ["password"] as const;
