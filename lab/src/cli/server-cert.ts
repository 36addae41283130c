import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { FilesStore, softwareCrypto, toPem } from "cert-retriever";
import { Command, Option } from "commander";
import { issueServerCertificate, type LabCa, loadOrCreateCa, loadOrCreateEstCa } from "../ca.js";
import { brokerNames, DEFAULT_DIR, say, usage } from "./inputs.js";

/** What `server-cert` takes. */
interface ServerCertFlags {
  dir: string;
  out: string;
  dns: string[];
  ip: string[];
  keyOwner?: string;
  api: "legacy" | "x509" | "est";
}

/** `cert-retriever-lab server-cert`: a broker's TLS certificate from one of the lab's CAs. */
export function serverCertCommand(): Command {
  const repeat = (v: string, p: string[]) => [...p, v];
  return new Command("server-cert")
    .description(
      "issue a TLS server certificate for a broker from the lab CA: <out>/server.key (0600) and <out>/server.crt, plus <out>/ca.crt",
    )
    .option("--dir <dir>", "the lab's directory (its CA)", DEFAULT_DIR)
    .requiredOption("--out <dir>", "where to write server.key, server.crt and ca.crt")
    .option("--dns <name>", "a DNS name of the broker (repeatable)", repeat, [])
    .option("--ip <address>", "an IP address of the broker (repeatable)", repeat, [])
    .option(
      "--key-owner <user>",
      "give the key to this user (e.g. mosquitto, which reads it after dropping privileges)",
    )
    .addOption(
      new Option(
        "--api <api>",
        "whose CA signs it: legacy (IOTmidCA), x509 (X509 Identity CA, as dojot v0.5+ brokers have) or est (the EST issuing CA; ca.crt then holds it and the EST root)",
      )
        .choices(["legacy", "x509", "est"])
        .default("legacy"),
    )
    .action(serverCert);
}

async function serverCert(flags: ServerCertFlags): Promise<void> {
  const names = brokerNames(flags.dns, flags.ip);
  if (!existsSync(join(flags.dir, "ca.key")))
    throw usage(`no lab CA in ${flags.dir}: start the lab once with 'cert-retriever-lab serve --dir ${flags.dir}'`);
  const crypto = softwareCrypto();
  const est = flags.api === "est" ? await loadOrCreateEstCa(flags.dir, crypto) : undefined;
  const ca = est ? est.issuing : await loadOrCreateCa(flags.dir, crypto, flags.api as "legacy" | "x509");
  const chain: LabCa[] = est ? [est.issuing, est.root] : [ca];
  const issued = await issueServerCertificate(ca, names, crypto);
  // The agent's crash-safe writer, as for a device's credentials: server.key 0600, server.crt, ca.crt.
  const store = new FilesStore(flags.out, "server", "ca");
  const opened = await store.open();
  let ok = false;
  try {
    await store.write({
      key: issued.key,
      certificatePem: issued.cert,
      caPem: chain.map((c) => toPem(c.cert.rawData, "CERTIFICATE")).join(""),
    });
    ok = true;
  } finally {
    await opened.close(ok);
  }
  if (flags.keyOwner) {
    try {
      execFileSync("chown", [flags.keyOwner, store.paths.key, store.paths.dir]);
    } catch {
      throw usage(
        `cannot give ${store.paths.key} to user '${flags.keyOwner}'`,
        "does the user exist, and are you root?",
      );
    }
  }
  say(
    `lab: broker certificate for ${names.map((n) => n.value).join(", ")}: ${store.paths.key}, ${store.paths.certificate}, ${store.paths.ca}`,
  );
}
