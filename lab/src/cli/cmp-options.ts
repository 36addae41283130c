import { X509Certificate } from "node:crypto";
import type { Command } from "commander";
import type { CmpLabOptions } from "../cmp.js";
import { readCertificates, usage } from "./inputs.js";

/** The CMP server's flags of `serve`. */
export interface CmpFlags {
  cmp?: boolean;
  cmpBootstrapCa: string[];
}

/** `serve`'s CMP flags. */
export function addCmpOptions(command: Command): Command {
  return command
    .option(
      "--cmp",
      "also serve CMP (RFC 9483) at /pkix/ with the lab's CA (the shared secret: $CERT_RETRIEVER_LAB_CMP_SECRET, its reference $CERT_RETRIEVER_LAB_CMP_REFERENCE, default lab-device)",
    )
    .option(
      "--cmp-bootstrap-ca <file>",
      "CMP: a PEM CA whose certificates may sign requests, e.g. the manufacturer's (repeatable)",
      (v: string, p: string[]) => [...p, v],
      [],
    );
}

/**
 * The CMP server's settings: the shared secret from the environment (never argv), by its
 * reference ($CERT_RETRIEVER_LAB_CMP_REFERENCE, default `lab-device`), and the bootstrap CAs.
 */
export async function cmpOptions(flags: CmpFlags): Promise<CmpLabOptions | undefined> {
  if (!flags.cmp) {
    if (flags.cmpBootstrapCa.length > 0) throw usage("--cmp-bootstrap-ca needs --cmp", "add --cmp");
    return undefined;
  }
  const reference = process.env.CERT_RETRIEVER_LAB_CMP_REFERENCE || "lab-device";
  const secret = process.env.CERT_RETRIEVER_LAB_CMP_SECRET;
  const bootstrapCas: Uint8Array[] = [];
  for (const file of flags.cmpBootstrapCa)
    for (const pem of await readCertificates(file, "--cmp-bootstrap-ca"))
      bootstrapCas.push(new Uint8Array(new X509Certificate(pem).raw));
  return { secrets: secret ? { [reference]: secret } : {}, bootstrapCas };
}
