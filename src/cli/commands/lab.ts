import { Command, Option } from "commander";
import { FAULT_DESCRIPTIONS, FAULT_ROUTES } from "../../fault-kinds.js";
import { usage } from "../failures.js";
import { checkDeviceId, parseCount, parseDuration, readPemFile } from "../inputs.js";
import { say } from "../output.js";

const LAB_HELP = `
The lab platform speaks dojot's EJBCA-REST API behind Kong (POST /auth, GET /ca/<name>,
POST /sign/<device>/pkcs10, GET|PUT /ca/<name>/crl) and, with --api x509 or both,
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
start and printed once. It is a test tool: plain HTTP (EST: HTTPS with the lab's own CA), meant
for 127.0.0.1.
`;

const faultHelp = () => `
FAULT KINDS (--fault ROUTE:KIND[:TIMES])
${Object.entries(FAULT_DESCRIPTIONS)
  .map(([kind, what]) => `  ${kind.padEnd(19)} ${what}`)
  .join("\n")}

EXAMPLES
  cert-retriever lab serve --dir ./lab --listen 127.0.0.1:8000
  cert-retriever lab serve --dir ./lab --api both --fault sign:503:2 --fault ca:hang:1
  cert-retriever lab serve --dir ./lab --api est --listen 127.0.0.1:8443 --est-csrattrs ec-p256
  cert-retriever lab serve --dir ./lab --est-listen 127.0.0.1:8443 --est-pending 1 --est-retry-after 2
`;

/** RFC 7030 §3.2.2's operation names, which a CA label must not be. */
const EST_OPERATIONS = ["cacerts", "simpleenroll", "simplereenroll", "fullcmc", "serverkeygen", "csrattrs"];

/** Kong's rate limit on /auth in dojot's compose files (`kong.config.sh`): 5 a minute, 40 an hour. */
const DOJOT_AUTH_LIMIT = "5/min,40/h";

/** `cert-retriever lab`: the dojot-compatible lab platform and its devices. */
export function labCommand(state: { exitCode: number }): Command {
  const lab = new Command("lab").summary("a dojot-compatible lab platform for demos and tests").addHelpText("after", LAB_HELP);

  lab
    .command("serve")
    .description("serve dojot's API (or EST) on --listen until interrupted; prints the URL on stdout (and the EST URL on the next line when --est-listen serves EST beside it)")
    .requiredOption("--dir <dir>", "where the lab keeps its CA and state")
    .option("--listen <host:port>", "address to listen on (port 0 picks a free one)", "127.0.0.1:8000")
    .addOption(new Option("--cert-profile <profile>", "EJBCA-REST's profile: cfree: RSA 2048-8192 only, as dojot; open: also ECDSA P-256/P-384").choices(["cfree", "open"]).default("cfree"))
    .option("--no-extension-override", "certificate profiles ignore the CSR's extensions (SANs included), as EJBCA does with 'Allow Extension Override' off")
    .option("--auto-register", "create the end entity on the first signing request for an unknown device")
    .option("--token-lifetime <seconds>", "JWT lifetime", "420")
    .option(
      "--cert-lifetime <duration>",
      "validity of the certificates the lab issues, e.g. 1h, 90s, 2d (default: 365d for x509-identity-mgmt and EST, 730d for EJBCA-REST's CFREE profile); on a real platform it is a deployment setting, in whole days (X509IDMGMT_CERTIFICATE_VALIDITY for x509-identity-mgmt v0.7+, CERT_VALIDITY_DAYS for v0.5)",
    )
    .option("--force-crl-renew", "x509-identity-mgmt makes a new CRL on every GET /x509/v1/ca/crl, so a revocation shows at once (X509IDMGMT_EJBCA_FORCECRLRENEW=true; off by default, as on the platform)")
    .addOption(new Option("--api <api>", "which API to serve: legacy (EJBCA-REST), x509 (x509-identity-mgmt), both, or est (EST alone, over HTTPS)").choices(["legacy", "x509", "both", "est"]).default("legacy"))
    .addOption(new Option("--x509-rules <version>", "x509-identity-mgmt's rules: v0.5 (CN rule, tenant prefix) or v0.7 (subject passed through, binding)").choices(["v0.5", "v0.7"]).default("v0.7"))
    .option("--auth-rate-limit <limits>", "limit /auth as dojot's Kong does, e.g. 5/min,40/h (429 with Retry-After); the default beyond loopback")
    .option("--est-listen <host:port>", "also serve EST (HTTPS) there, beside dojot's API")
    .option("--est-pending <n|forever>", "EST: answer the first N submissions of each CSR with 202 Accepted and Retry-After (manual approval), or always")
    .option("--est-retry-after <seconds>", "EST: the Retry-After of a 202", "1")
    .addOption(new Option("--est-csrattrs <attrs>", "EST: what /csrattrs asks for (none: 204; rsa-3072 in RFC 9908's form, the size as the attribute's value); a CSR with another key type is then refused").choices(["none", "ec-p256", "ec-p384", "rsa", "rsa-3072"]).default("none"))
    .option("--est-bootstrap-ca <file>", "EST: a PEM CA whose certificates may authenticate /simpleenroll, e.g. the factory's (repeatable)", (v: string, p: string[]) => [...p, v], [])
    .option("--est-label <label>", "EST: a CA label served under /.well-known/est/<label>/ (repeatable)", (v: string, p: string[]) => [...p, v], [])
    .option("--fault <route:kind[:times]>", `misbehave on purpose, for testing clients (repeatable): ROUTE is ${FAULT_ROUTES.join(", ")}; KIND is listed below; TIMES, how often (default: always)`, (v: string, prev: string[]) => [...prev, v], [])
    .addHelpText("after", faultHelp())
    .action(async (flags: ServeFlags) => {
      const { host, port } = parseListen(flags.listen);
      const est = await estOptions(flags);
      const tokenLifetime = Number.parseInt(flags.tokenLifetime, 10);
      if (!(tokenLifetime > 0)) throw usage(`--token-lifetime '${flags.tokenLifetime}' is not a positive number of seconds`);
      const certLifetime = flags.certLifetime === undefined ? undefined : parseDuration(flags.certLifetime, "--cert-lifetime");
      const [{ startLab }, { softwareCrypto }, { parseFault }] = await Promise.all([
        import("../../lab/server.js"),
        import("../../crypto/provider.js"),
        import("../../lab/faults.js"),
      ]);
      const { parseRateLimit } = await import("../../lab/rate-limit.js");
      const { isLoopbackHost } = await import("../../loopback.js");
      const outside = [...(flags.api === "est" ? [] : [host]), ...(flags.api === "est" ? [host] : est?.host !== undefined ? [est.host] : [])].filter((h) => !isLoopbackHost(h));
      const exposed = outside.length > 0;
      if (exposed) {
        const transport = flags.api === "est" ? "" : ", plain http";
        const unlimited = est ? " and EST's unlimited password checks" : "";
        say(`warning: the lab listens on ${[...new Set(outside)].join(" and ")}, beyond this machine: its admin password, its CA keys${transport}${unlimited} are for tests only`);
      }
      // Reachable by others, it limits /auth as dojot's Kong does unless told otherwise.
      const limit = flags.authRateLimit ?? (exposed ? DOJOT_AUTH_LIMIT : undefined);
      if (exposed && !flags.authRateLimit) say(`lab: /auth limited to ${DOJOT_AUTH_LIMIT} as dojot's Kong does (--auth-rate-limit to change it)`);
      let authRateLimit;
      try {
        authRateLimit = limit ? parseRateLimit(limit) : undefined;
      } catch (err) {
        throw usage((err as Error).message, undefined, err);
      }
      const faults = flags.fault.map((f) => {
        try {
          return parseFault(f);
        } catch (err) {
          throw usage((err as Error).message, undefined, err);
        }
      });
      const { LabListenError } = await import("../../lab/server.js");
      const { displayName } = await import("../../pipeline/certificate.js");
      const running = await startLab({
        dir: flags.dir,
        host,
        port,
        crypto: softwareCrypto(),
        certProfile: flags.certProfile,
        autoRegister: Boolean(flags.autoRegister),
        adminPassword: process.env.CERT_RETRIEVER_LAB_PASSWORD || undefined,
        tokenLifetime,
        faults,
        authRateLimit,
        api: flags.api,
        x509Rules: flags.x509Rules,
        extensionOverride: flags.extensionOverride,
        certLifetime,
        forceCrlRenew: Boolean(flags.forceCrlRenew),
        est,
      }).catch((err: unknown) => {
        if (!(err instanceof LabListenError)) throw err;
        const flag = flags.estListen && err.message.startsWith(`${est?.host}:${est?.port} `) ? `--est-listen ${flags.estListen}` : `--listen ${flags.listen}`;
        throw usage(`cannot listen on ${flag}: ${err.message}`, "choose another port, or 0 for a free one");
      });
      if (running.generatedPassword) {
        say(`lab: created user 'admin' with password ${running.generatedPassword} (shown once; set CERT_RETRIEVER_LAB_PASSWORD to choose it)`);
      }
      if (flags.api !== "est") {
        const cas = [flags.api !== "x509" && running.ca, flags.api !== "legacy" && running.x509Ca].filter((c) => c).map((c) => displayName((c as typeof running.ca).cert.subjectName));
        say(`lab: CA ${cas.join(" and ")} in ${flags.dir}; API ${flags.api}${flags.api === "legacy" ? "" : ` (x509 rules ${flags.x509Rules})`}; profile ${flags.certProfile}${flags.extensionOverride ? "" : ", CSR extensions ignored"}${certLifetime === undefined ? "" : `; certificates valid ${flags.certLifetime}`}${flags.forceCrlRenew ? "; a new CRL on every request" : ""}`);
        process.stdout.write(`${running.url}\n`);
      }
      if (running.estUrl && running.estCa) {
        const { sha256Fingerprint } = await import("../../pipeline/certificate.js");
        const { join } = await import("node:path");
        const root = running.estCa.root.cert;
        say(`lab: EST (RFC 7030) at ${running.estUrl}${certLifetime === undefined ? "" : `; certificates valid ${flags.certLifetime}`}`);
        say(`lab: EST root CA ${displayName(root.subjectName)}, sha256:${sha256Fingerprint(root)}; its PEM is ${join(flags.dir, "est-root-ca.crt")} (pin it with --ca-fingerprint, or give it to --platform-ca)`);
        process.stdout.write(`${running.estUrl}\n`);
      }
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
      await running.close();
      state.exitCode = 0;
    });

  lab
    .command("server-cert")
    .description("issue a TLS server certificate for a broker from the lab CA: <out>/server.key (0600) and <out>/server.crt, plus <out>/ca.crt")
    .requiredOption("--dir <dir>", "the lab's directory (its CA)")
    .requiredOption("--out <dir>", "where to write server.key, server.crt and ca.crt")
    .option("--dns <name>", "a DNS name of the broker (repeatable)", (v: string, p: string[]) => [...p, v], [])
    .option("--ip <address>", "an IP address of the broker (repeatable)", (v: string, p: string[]) => [...p, v], [])
    .option("--key-owner <user>", "give the key to this user (e.g. mosquitto, which reads it after dropping privileges)")
    .addOption(new Option("--api <api>", "whose CA signs it: legacy (IOTmidCA), x509 (X509 Identity CA, as dojot v0.5+ brokers have) or est (the EST issuing CA; ca.crt then holds it and the EST root)").choices(["legacy", "x509", "est"]).default("legacy"))
    .action(async (flags: { dir: string; out: string; dns: string[]; ip: string[]; keyOwner?: string; api: "legacy" | "x509" | "est" }) => {
      const { checkSans } = await import("../inputs.js");
      checkSans(flags.dns, flags.ip, []);
      if (flags.dns.length + flags.ip.length === 0) throw usage("give the broker's names with --dns and/or --ip", "e.g. --dns localhost --ip 127.0.0.1");
      const [{ loadOrCreateCa, loadOrCreateEstCa, issueServerCertificate }, { softwareCrypto }, { FilesStore }, { toPem }] = await Promise.all([
        import("../../lab/ca.js"),
        import("../../crypto/provider.js"),
        import("../../store/files-store.js"),
        import("../../crypto/keys.js"),
      ]);
      const { existsSync } = await import("node:fs");
      const { join } = await import("node:path");
      if (!existsSync(join(flags.dir, "ca.key"))) throw usage(`no lab CA in ${flags.dir}: start the lab once with 'cert-retriever lab serve --dir ${flags.dir}'`);
      const crypto = softwareCrypto();
      const est = flags.api === "est" ? await loadOrCreateEstCa(flags.dir, crypto) : undefined;
      const ca = est ? est.issuing : await loadOrCreateCa(flags.dir, crypto, flags.api as "legacy" | "x509");
      const chain = est ? [est.issuing, est.root] : [ca];
      const names = [...flags.dns.map((value) => ({ type: "dns" as const, value })), ...flags.ip.map((value) => ({ type: "ip" as const, value }))];
      const issued = await issueServerCertificate(ca, names, crypto);
      // The same crash-safe writer as device credentials: server.key 0600, server.crt, ca.crt.
      const store = new FilesStore(flags.out, "server", "ca");
      const opened = await store.open();
      let ok = false;
      try {
        await store.write({ key: issued.key, certificatePem: issued.cert, caPem: chain.map((c) => toPem(c.cert.rawData, "CERTIFICATE")).join("") });
        ok = true;
      } finally {
        await opened.close(ok);
      }
      if (flags.keyOwner) {
        const { execFileSync } = await import("node:child_process");
        try {
          execFileSync("chown", [flags.keyOwner, store.paths.key, store.paths.dir]);
        } catch {
          throw usage(`cannot give ${store.paths.key} to user '${flags.keyOwner}'`, "does the user exist, and are you root?");
        }
      }
      say(`lab: broker certificate for ${names.map((n) => n.value).join(", ")}: ${store.paths.key}, ${store.paths.certificate}, ${store.paths.ca}`);
      state.exitCode = 0;
    });

  const device = lab.command("device").description("register lab devices (EJBCA end entities)");
  for (const action of ["add", "reset"] as const) {
    device
      .command(action)
      .description(action === "add" ? "register a device (end entity in NEW state, password 'dojot')" : "put a device back to NEW so it can be issued again")
      .requiredOption("--dir <dir>", "the lab's directory")
      .argument("<id>", "device id")
      .action(async (id: string, flags: { dir: string }) => {
        const { setDevice } = await import("../../lab/server.js");
        await setDevice(flags.dir, checkDeviceId(id), action).catch((err: Error) => {
          throw usage(err.message);
        });
        say(`lab: device '${id}' ${action === "add" ? "registered" : "reset"} (NEW)`);
        state.exitCode = 0;
      });
  }
  return lab;
}

/** What `lab serve` takes. */
interface ServeFlags {
  dir: string;
  listen: string;
  certProfile: "cfree" | "open";
  extensionOverride: boolean;
  autoRegister?: boolean;
  tokenLifetime: string;
  certLifetime?: string;
  forceCrlRenew?: boolean;
  fault: string[];
  authRateLimit?: string;
  api: "legacy" | "x509" | "both" | "est";
  x509Rules: "v0.5" | "v0.7";
  estListen?: string;
  estPending?: string;
  estRetryAfter: string;
  estCsrattrs: "none" | "ec-p256" | "ec-p384" | "rsa" | "rsa-3072";
  estBootstrapCa: string[];
  estLabel: string[];
}

/** The EST server's settings from the --est-* flags, or undefined when EST is not served. */
async function estOptions(flags: ServeFlags): Promise<import("../../lab/est.js").EstLabOptions | undefined> {
  if (flags.api === "est" && flags.estListen) throw usage("--est-listen serves EST beside dojot's API; with --api est, EST is served on --listen", "drop --est-listen, or choose --api legacy, x509 or both");
  if (flags.api !== "est" && !flags.estListen) {
    const stray = flags.estPending !== undefined || flags.estRetryAfter !== "1" || flags.estCsrattrs !== "none" || flags.estBootstrapCa.length > 0 || flags.estLabel.length > 0 || flags.fault.some((f) => f.startsWith("est-"));
    if (stray) throw usage("the --est-* options and est-* faults need an EST server", "add --est-listen HOST:PORT, or serve EST alone with --api est");
    return undefined;
  }
  const listen = flags.estListen ? parseListen(flags.estListen, "--est-listen") : {};
  const pending = flags.estPending === undefined || flags.estPending === "forever" ? flags.estPending : parseCount(flags.estPending, "--est-pending", 0, 1000);
  for (const label of flags.estLabel) {
    // RFC 7030 §3.2.2: a label is one path segment, and not an operation's name.
    if (!/^[A-Za-z0-9._~-]+$/.test(label) || EST_OPERATIONS.includes(label)) {
      throw usage(`--est-label '${label}' is not a CA label`, `use letters, digits, '.', '_', '~' and '-', and none of ${EST_OPERATIONS.join(", ")}`);
    }
  }
  const bootstrapCas: string[] = [];
  for (const file of flags.estBootstrapCa) {
    const pem = await readPemFile(file, "--est-bootstrap-ca", /-----BEGIN CERTIFICATE-----/);
    bootstrapCas.push(...(await import("../../crypto/keys.js")).certificatePems(pem));
  }
  const { parseBootstrapCas } = await import("../../lab/est.js");
  try {
    parseBootstrapCas(bootstrapCas);
  } catch (err) {
    throw usage(`--est-bootstrap-ca: ${(err as Error).message}`, "give the factory CA's certificate in PEM", err);
  }
  return {
    ...listen,
    pending,
    retryAfter: parseCount(flags.estRetryAfter, "--est-retry-after", 1, 86_400),
    csrAttrs: flags.estCsrattrs,
    bootstrapCas,
    labels: flags.estLabel,
  };
}

function parseListen(value: string, flag = "--listen"): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number.parseInt(m[3]!, 10) : NaN;
  if (!m || port > 65535) throw usage(`${flag} '${value}' is not HOST:PORT`, `use e.g. ${flag} 127.0.0.1:0`);
  return { host: (m[1] ?? m[2])!, port };
}
