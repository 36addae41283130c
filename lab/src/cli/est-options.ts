import { type EstLabOptions, parseBootstrapCas } from "../est.js";
import { parseCount, parseListen, readCertificates, usage } from "./inputs.js";

/** RFC 7030 §3.2.2's operation names, which a CA label must not be. */
const EST_OPERATIONS = ["cacerts", "simpleenroll", "simplereenroll", "fullcmc", "serverkeygen", "csrattrs"];

/** The flags of `serve` that say whether and how EST is served. */
export interface EstFlags {
  api: "legacy" | "x509" | "both" | "est";
  x509Rules: "v0.5" | "v0.7";
  fault: string[];
  estListen?: string;
  estPending?: string;
  estRetryAfter: string;
  estCsrattrs: "none" | "ec-p256" | "ec-p384" | "rsa" | "rsa-3072";
  estBootstrapCa: string[];
  estLabel: string[];
}

/** The EST server's settings from the --est-* flags, or undefined when EST is not served. */
export async function estOptions(flags: EstFlags): Promise<EstLabOptions | undefined> {
  if (flags.api === "est" && flags.estListen)
    throw usage(
      "--est-listen serves EST beside dojot's API; with --api est, EST is served on --listen",
      "drop --est-listen, or choose --api legacy, x509 or both",
    );
  if (flags.api !== "est" && !flags.estListen) {
    const stray =
      flags.estPending !== undefined ||
      flags.estRetryAfter !== "1" ||
      flags.estCsrattrs !== "none" ||
      flags.estBootstrapCa.length > 0 ||
      flags.estLabel.length > 0 ||
      flags.fault.some((f) => f.startsWith("est-"));
    if (stray)
      throw usage(
        "the --est-* options and est-* faults need an EST server",
        "add --est-listen HOST:PORT, or serve EST alone with --api est",
      );
    return undefined;
  }
  const listen = flags.estListen ? parseListen(flags.estListen, "--est-listen") : {};
  const pending =
    flags.estPending === undefined || flags.estPending === "forever"
      ? flags.estPending
      : parseCount(flags.estPending, "--est-pending", 0, 1000);
  for (const label of flags.estLabel) checkLabel(label);
  return {
    ...listen,
    pending,
    retryAfter: parseCount(flags.estRetryAfter, "--est-retry-after", 1, 86_400),
    csrAttrs: flags.estCsrattrs,
    bootstrapCas: await bootstrapCas(flags.estBootstrapCa),
    labels: flags.estLabel,
  };
}

/** RFC 7030 §3.2.2: a label is one path segment, and not an operation's name. */
function checkLabel(label: string): void {
  if (!/^[A-Za-z0-9._~-]+$/.test(label) || EST_OPERATIONS.includes(label)) {
    throw usage(
      `--est-label '${label}' is not a CA label`,
      `use letters, digits, '.', '_', '~' and '-', and none of ${EST_OPERATIONS.join(", ")}`,
    );
  }
}

/** The certificates of every --est-bootstrap-ca file, each checked to be one. */
async function bootstrapCas(files: string[]): Promise<string[]> {
  const pems: string[] = [];
  for (const file of files) pems.push(...(await readCertificates(file, "--est-bootstrap-ca")));
  try {
    parseBootstrapCas(pems);
  } catch (err) {
    throw usage(`--est-bootstrap-ca: ${(err as Error).message}`, "give the factory CA's certificate in PEM", err);
  }
  return pems;
}
