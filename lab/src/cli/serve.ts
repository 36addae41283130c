import { join } from "node:path";
import { isLoopbackHost, sha256ColonHex, softwareCrypto } from "cert-retriever";
import { Command, Option } from "commander";
import type { EstLabOptions } from "../est.js";
import { FAULT_DESCRIPTIONS, FAULT_ROUTES } from "../fault-kinds.js";
import { parseFault } from "../faults.js";
import { EXPOSED_LIMITS } from "../intake.js";
import { parseRateLimit, type RateWindow } from "../rate-limit.js";
import { LabListenError, type LabOptions, LabOptionsError, type RunningLab, startLab } from "../server.js";
import { addCmpOptions, type CmpFlags, cmpOptions } from "./cmp-options.js";
import { type EstFlags, estOptions } from "./est-options.js";
import { DEFAULT_DIR, displayName, parseDuration, parseListen, say, usage } from "./inputs.js";

/** What the lab is, for `--help` of the program. */
export const LAB_HELP = `
The lab platform speaks dojot's EJBCA-REST API behind Kong (POST /auth, GET /ca/<name>,
POST /sign/<device>/pkcs10, GET|PUT /ca/<name>/crl, GET /ca, GET /user/<device>, POST /user,
DELETE /ca/<issuer DN>/certificate/<serial hex>) and, with --api x509 or both,
x509-identity-mgmt's (GET /x509/v1/ca, GET /x509/v1/ca/crl, POST /x509/v1/certificates,
GET|PATCH|DELETE /x509/v1/certificates/<fp>) with the rules of dojot v0.5-v0.6 or v0.7-v0.8, so
the agent can be run and tested without a dojot deployment. DELETE revokes a certificate the
platform issued (reason superseded); the CRL served is EJBCA's latest, renewed when due (every
24 h), or on every request with --force-crl-renew. Its CAs (CN=IOTmidCA, O=EJBCA IOT, C=SE for
EJBCA-REST; the X509 Identity CA for x509-identity-mgmt) and state are kept in --dir and survive
a restart.
With --api est, or beside dojot's API with --est-listen, it serves EST (RFC 7030, as corrected
by RFC 8951) over HTTPS: GET cacerts and csrattrs, POST simpleenroll (HTTP Basic as a lab user,
or a TLS client certificate from the EST issuing CA or an --est-bootstrap-ca) and simplereenroll
(the TLS client certificate being renewed), under /.well-known/est/ and /.well-known/est/<label>/.
Its root (CN=Lab EST Root CA) and issuing CA are kept in --dir; the root's PEM is
<dir>/est-root-ca.crt, and its SHA-256 fingerprint is printed at start, for a client to pin.
The admin user's password comes from CERT_RETRIEVER_LAB_PASSWORD, or is generated on first
start and printed once; the variable on a later start replaces the password the lab had.
Without --dir, the lab lives in ./lab-state. It is a test tool: plain HTTP (EST: HTTPS with the lab's own CA), meant
for 127.0.0.1; beyond it, it bounds the connections it keeps and the request bytes it holds
(503 past a bound).
`;

const faultHelp = () => `
FAULT ROUTES
  auth                POST /auth
  ca                  GET /ca/<name> (EJBCA-REST), GET /x509/v1/ca (x509-identity-mgmt)
  sign                POST /sign/<device>/pkcs10, POST /x509/v1/certificates
  est-cacerts         GET /cacerts
  est-enroll          POST /simpleenroll, /simplereenroll
A transport fault strikes the next request on its route; a fault in a certificate, the next
certificate the route sends. A fault on a route the lab does not serve is refused at start.

FAULT KINDS (--fault ROUTE:KIND[:TIMES])
${Object.entries(FAULT_DESCRIPTIONS)
  .map(([kind, what]) => `  ${kind.padEnd(19)} ${what}`)
  .join("\n")}

EXAMPLES
  cert-retriever-lab serve --listen 127.0.0.1:8000
  cert-retriever-lab serve --api both --fault sign:503:2 --fault ca:hang:1
  cert-retriever-lab serve --api est --listen 127.0.0.1:8443 --est-csrattrs ec-p256
  cert-retriever-lab serve --est-listen 127.0.0.1:8443 --est-pending 1 --est-retry-after 2
`;

/** Kong's rate limit on /auth in dojot's compose files (`kong.config.sh`): 5 a minute, 40 an hour. */
const DOJOT_AUTH_LIMIT = "5/min,40/h";

/** What `serve` takes. */
interface ServeFlags extends EstFlags, CmpFlags {
  dir: string;
  listen: string;
  certProfile: "cfree" | "open";
  extensionOverride: boolean;
  autoRegister?: boolean;
  scep?: boolean;
  tokenLifetime: string;
  kongChecksExpiry?: boolean;
  ejbcaRestVersion: "v0.4" | "v0.5";
  certLifetime?: string;
  forceCrlRenew?: boolean;
  fault: string[];
  authRateLimit?: string;
}

/** `cert-retriever-lab serve`: dojot's APIs and EST until interrupted. */
export function serveCommand(): Command {
  const repeat = (v: string, p: string[]) => [...p, v];
  const command = new Command("serve")
    .description(
      "serve dojot's API (or EST) on --listen until interrupted; prints the URL on stdout (and the EST URL on the next line when --est-listen serves EST beside it)",
    )
    .option("--dir <dir>", "where the lab keeps its CAs and state, made on first start", DEFAULT_DIR)
    .option("--listen <host:port>", "address to listen on (port 0 picks a free one)", "127.0.0.1:8000")
    .addOption(
      new Option(
        "--cert-profile <profile>",
        "EJBCA-REST's profile: cfree: RSA 2048-8192 only, as dojot; open: also ECDSA P-256/P-384",
      )
        .choices(["cfree", "open"])
        .default("cfree"),
    )
    .option(
      "--no-extension-override",
      "certificate profiles ignore the CSR's extensions (SANs included), as EJBCA does with 'Allow Extension Override' off",
    )
    .option("--auto-register", "create the end entity on the first signing request for an unknown device")
    .option("--token-lifetime <seconds>", "JWT lifetime", "420")
    .addOption(
      new Option(
        "--ejbca-rest-version <version>",
        "EJBCA-REST's /sign as v0.4.3 answers it (an end entity must be NEW) or as v0.5.0-alpha.1 does (it resets the entity to NEW first)",
      )
        .choices(["v0.4", "v0.5"])
        .default("v0.4"),
    )
    .option(
      "--kong-checks-expiry",
      'Kong refuses an expired JWT (401 {"exp":"token expired"}), as its jwt plugin does with config.claims_to_verify=exp; dojot\'s own Kong configuration lets one through',
    )
    .option(
      "--cert-lifetime <duration>",
      "validity of the certificates the lab issues, e.g. 1h, 90s, 2d (default: 365d for x509-identity-mgmt and EST, 730d for EJBCA-REST's CFREE profile); on a real platform it is a deployment setting, in whole days (X509IDMGMT_CERTIFICATE_VALIDITY for x509-identity-mgmt v0.7+, CERT_VALIDITY_DAYS for v0.5)",
    )
    .option(
      "--force-crl-renew",
      "x509-identity-mgmt makes a new CRL on every GET /x509/v1/ca/crl, so a revocation shows at once (X509IDMGMT_EJBCA_FORCECRLRENEW=true; off by default, as on the platform)",
    )
    .addOption(
      new Option(
        "--api <api>",
        "which API to serve: legacy (EJBCA-REST), x509 (x509-identity-mgmt), both, or est (EST alone, over HTTPS)",
      )
        .choices(["legacy", "x509", "both", "est"])
        .default("legacy"),
    )
    .addOption(
      new Option(
        "--x509-rules <version>",
        "x509-identity-mgmt's rules: v0.5 (CN rule, tenant prefix) or v0.7 (subject passed through, binding)",
      )
        .choices(["v0.5", "v0.7"])
        .default("v0.7"),
    )
    .option(
      "--auth-rate-limit <limits>",
      "limit /auth as dojot's Kong does, e.g. 5/min,40/h (429 with Retry-After); the default beyond loopback",
    )
    .option("--est-listen <host:port>", "also serve EST (HTTPS) there, beside dojot's API")
    .option(
      "--scep",
      "also serve SCEP at /scep with the lab's CA (the challenge password: $CERT_RETRIEVER_LAB_SCEP_CHALLENGE)",
    )
    .option(
      "--est-pending <n|forever>",
      "EST: answer the first N submissions of each CSR with 202 Accepted and Retry-After (manual approval), or always",
    )
    .option("--est-retry-after <seconds>", "EST: the Retry-After of a 202", "1")
    .addOption(
      new Option(
        "--est-csrattrs <attrs>",
        "EST: what /csrattrs asks for (none: 204; rsa-3072 in RFC 9908's form, the size as the attribute's value); a CSR with another key type is then refused",
      )
        .choices(["none", "ec-p256", "ec-p384", "rsa", "rsa-3072"])
        .default("none"),
    )
    .option(
      "--est-bootstrap-ca <file>",
      "EST: a PEM CA whose certificates may authenticate /simpleenroll, e.g. the factory's (repeatable)",
      repeat,
      [],
    )
    .option("--est-label <label>", "EST: a CA label served under /.well-known/est/<label>/ (repeatable)", repeat, [])
    .option(
      "--fault <route:kind[:times]>",
      `misbehave on purpose, for testing clients (repeatable): ROUTE is ${FAULT_ROUTES.join(", ")}; KIND is listed below; TIMES, how often (default: always)`,
      repeat,
      [],
    )
    .addHelpText("after", faultHelp())
    .action(serve);
  return addCmpOptions(command);
}

async function serve(flags: ServeFlags): Promise<void> {
  const options = await labOptions(flags);
  warnIfExposed(flags, options);
  const running = await startLab(options).catch((err: unknown) => {
    if (err instanceof LabOptionsError) throw usage(err.message);
    if (!(err instanceof LabListenError)) throw err;
    const est = options.est;
    const flag =
      flags.estListen && err.message.startsWith(`${est?.host}:${est?.port} `)
        ? `--est-listen ${flags.estListen}`
        : `--listen ${flags.listen}`;
    throw usage(`cannot listen on ${flag}: ${err.message}`, "choose another port, or 0 for a free one");
  });
  // The signals are taken before the URL is printed: a caller that stops the lab as soon as it
  // reads the URL must find it listening for them (on Linux a pipe's write is synchronous).
  const stopped = new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  announce(flags, running);
  await stopped;
  await running.close();
}

/** The lab's settings from the flags; every mistake is refused here, before anything is made. */
async function labOptions(flags: ServeFlags): Promise<LabOptions> {
  const { host, port } = parseListen(flags.listen);
  const est = await estOptions(flags);
  const tokenLifetime = Number.parseInt(flags.tokenLifetime, 10);
  if (!(tokenLifetime > 0))
    throw usage(`--token-lifetime '${flags.tokenLifetime}' is not a positive number of seconds`);
  return {
    dir: flags.dir,
    host,
    port,
    crypto: softwareCrypto(),
    certProfile: flags.certProfile,
    autoRegister: Boolean(flags.autoRegister),
    adminPassword: process.env.CERT_RETRIEVER_LAB_PASSWORD || undefined,
    tokenLifetime,
    claimsToVerify: flags.kongChecksExpiry ? ["exp"] : [],
    ejbcaRestVersion: flags.ejbcaRestVersion,
    faults: flags.fault.map(checked(parseFault)),
    authRateLimit: authRateLimit(flags, exposedHosts(flags.api, host, est).length > 0),
    api: flags.api,
    x509Rules: flags.x509Rules,
    extensionOverride: flags.extensionOverride,
    certLifetime: flags.certLifetime === undefined ? undefined : parseDuration(flags.certLifetime, "--cert-lifetime"),
    forceCrlRenew: Boolean(flags.forceCrlRenew),
    est,
    scep: flags.scep ? { challenge: process.env.CERT_RETRIEVER_LAB_SCEP_CHALLENGE || undefined } : undefined,
    cmp: await cmpOptions(flags),
  };
}

/** `parse`, with its Error as a usage mistake. */
function checked<T>(parse: (text: string) => T): (text: string) => T {
  return (text) => {
    try {
      return parse(text);
    } catch (err) {
      throw usage((err as Error).message, undefined, err);
    }
  };
}

/** The hosts the lab listens on that are not this machine. */
function exposedHosts(api: LabOptions["api"], host: string, est: EstLabOptions | undefined): string[] {
  const hosts = api === "est" ? [host] : [host, ...(est?.host !== undefined ? [est.host] : [])];
  return [...new Set(hosts.filter((h) => !isLoopbackHost(h)))];
}

/** Kong's limit on /auth: as asked, or dojot's own when others can reach the lab. */
function authRateLimit(flags: ServeFlags, exposed: boolean): RateWindow[] | undefined {
  const limit = flags.authRateLimit ?? (exposed ? DOJOT_AUTH_LIMIT : undefined);
  return limit === undefined ? undefined : checked(parseRateLimit)(limit);
}

/** Beyond loopback: what is for tests only, and what the lab limits there. */
function warnIfExposed(flags: ServeFlags, options: LabOptions): void {
  const outside = exposedHosts(options.api, options.host, options.est);
  if (outside.length === 0) return;
  const transport = options.api === "est" ? "" : ", plain http";
  const unlimited = options.est ? " and EST's unlimited password checks" : "";
  say(
    `warning: the lab listens on ${outside.join(" and ")}, beyond this machine: its admin password, its CA keys${transport}${unlimited} are for tests only`,
  );
  if (!flags.authRateLimit)
    say(`lab: /auth limited to ${DOJOT_AUTH_LIMIT} as dojot's Kong does (--auth-rate-limit to change it)`);
  const { connections, perAddress, bufferedBytes } = EXPOSED_LIMITS;
  say(
    `lab: at most ${connections} connections (${perAddress} from one address) and ${bufferedBytes / 1024 / 1024} MiB of request bodies at once; past that, 503`,
  );
}

/** Says what runs where; the URLs go to stdout, for scripts. */
function announce(flags: ServeFlags, running: RunningLab): void {
  if (running.generatedPassword) {
    say(
      `lab: created user 'admin' with password ${running.generatedPassword} (shown once; set CERT_RETRIEVER_LAB_PASSWORD to choose it)`,
    );
  } else if (running.adminPassword === "created") {
    say("lab: created user 'admin' with the password in CERT_RETRIEVER_LAB_PASSWORD");
  } else if (running.adminPassword === "replaced") {
    say(
      `lab: user 'admin' now has the password in CERT_RETRIEVER_LAB_PASSWORD (the one ${flags.dir} held before is replaced; start without the variable to keep a password)`,
    );
  } else {
    say(`lab: user 'admin' keeps the password ${flags.dir} holds (CERT_RETRIEVER_LAB_PASSWORD on a start replaces it)`);
  }
  const lifetime = flags.certLifetime === undefined ? "" : `; certificates valid ${flags.certLifetime}`;
  if (flags.api !== "est") {
    const cas = [flags.api !== "x509" && running.ca, flags.api !== "legacy" && running.x509Ca]
      .filter((c) => c)
      .map((c) => displayName((c as RunningLab["ca"]).cert.subjectName));
    const rules = flags.api === "legacy" ? "" : ` (x509 rules ${flags.x509Rules})`;
    const profile = `${flags.certProfile}${flags.extensionOverride ? "" : ", CSR extensions ignored"}`;
    say(
      `lab: CA ${cas.join(" and ")} in ${flags.dir}; API ${flags.api}${rules}; profile ${profile}${lifetime}${flags.forceCrlRenew ? "; a new CRL on every request" : ""}`,
    );
    process.stdout.write(`${running.url}\n`);
  }
  if (running.estUrl && running.estCa) {
    const root = running.estCa.root.cert;
    say(`lab: EST (RFC 7030) at ${running.estUrl}${lifetime}`);
    say(
      `lab: EST root CA ${displayName(root.subjectName)}, sha256:${sha256ColonHex(root.rawData)}; its PEM is ${join(flags.dir, "est-root-ca.crt")} (pin it with --ca-fingerprint, or give it to --platform-ca)`,
    );
    process.stdout.write(`${running.estUrl}\n`);
  }
}
