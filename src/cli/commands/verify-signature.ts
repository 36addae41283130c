import { Command, Option } from "commander";
import type { SignatureCheck } from "../../flows/verify-signature.js";
import { SIGN_FORMATS, type SignFormat } from "../../sign/formats.js";
import { type CommonFlags, resolveDeviceId, storeSettings } from "../agent-settings.js";
import { applyConfigFile } from "../config.js";
import { commandExitCodes } from "../exit-codes.js";
import { readPemFile } from "../inputs.js";
import { readMessage } from "../message-input.js";
import { flagName } from "../names.js";
import { addOptions } from "../options.js";
import { exitCodesHelp, printResult, say, tell } from "../output.js";
import { applyRecorded } from "../remembered.js";
import type { CliState } from "../state.js";

interface VerifySignatureFlags extends CommonFlags {
  format: SignFormat;
  in?: string;
  signature?: string;
  cert?: string;
  ca?: string;
}

const HELP = `
Checks a signed message (--in FILE, or standard input; 1 MiB at most), as a platform would: the
signature, then the signer's certificate: valid now, issued by its CA chain, and not revoked by the
CA's CRL that 'check' cached beside the stored credentials. The certificate is the device's stored
one (--device-id, --out, --store), or --cert FILE (then its CA chain follows it there, or is --ca
FILE); a JWS with no device named is checked by the certificate in its own x5c, issued by --ca FILE.
For --format raw, --in is the message and --signature FILE its signature. Each refusal has its own
exit code (below); docs/signing.md defines each format.

  cert-retriever verify-signature --device-id f60c28 --out /var/lib/cert-retriever < signed.json
  cert-retriever verify-signature --format jws --ca IOTmidCA.crt --in message.jws
  cert-retriever verify-signature --format raw --in reading.json --signature reading.sig --device-id f60c28
`;

/** `cert-retriever verify-signature`: is this message signed by the device's key, and is its certificate good? */
export function verifySignatureCommand(state: CliState): Command {
  const cmd = new Command("verify-signature").summary(
    "check a signed message against the device's certificate (or --cert), its CA chain, the clock and a cached CRL",
  );
  addOptions(cmd, "verify-signature")
    .addOption(new Option("--format <format>", "how the message is signed").choices(SIGN_FORMATS).default("airvantage"))
    .option("--in <file>", "the signed message (raw: the message) (default: standard input; 1 MiB at most)")
    .option("--signature <file>", "raw: the signature's bytes, as 'openssl dgst -sha256 -sign' writes them")
    .option("--cert <file>", "PEM: the signer's certificate (then, optionally, its CA chain) instead of the stored one")
    .option("--ca <file>", "PEM: the CA chain the certificate must be issued by (default: the stored CA)")
    .addHelpText("after", HELP + exitCodesHelp(commandExitCodes("verify-signature")))
    .action(async (_f: VerifySignatureFlags, command: Command) => {
      await applyConfigFile(command, say);
      await applyRecorded(command, say);
      const flags = command.opts<VerifySignatureFlags>();
      state.json ||= Boolean(flags.json);
      const source = (key: string) => command.getOptionValueSource(key);
      const pem = /-----BEGIN CERTIFICATE-----/;
      const certificatePem = flags.cert === undefined ? undefined : await readPemFile(flags.cert, "--cert", pem);
      const caPem = flags.ca === undefined ? undefined : await readPemFile(flags.ca, "--ca", pem);
      // With --cert, or a JWS checked by its own x5c against --ca, no device is needed unless one is named.
      const named = flags.deviceId !== undefined || flags.deviceIdFile !== undefined;
      const byItself = certificatePem !== undefined || (flags.format === "jws" && caPem !== undefined);
      const deviceId = named || !byItself ? await resolveDeviceId(flags, source) : "-";
      const message = await readMessage(flags.in, "--in", "verify-signature");
      const signature =
        flags.signature === undefined
          ? undefined
          : await readMessage(flags.signature, "--signature", "verify-signature");
      const { createAgent } = await import("../../agent.js");
      const agent = createAgent({
        device: { id: deviceId },
        store: deviceId === "-" ? undefined : await storeSettings(flags, deviceId),
        clock: state.inject?.clock,
        name: flagName,
      });
      const check = await agent.verifySignature({ format: flags.format, message, signature, certificatePem, caPem });
      tell(flags, describeCheck(check));
      if (flags.json) printResult("verify-signature", check);
      state.exitCode = 0;
    });
  return cmd;
}

/** A good signature in a line: who signed, with what, until when, under which CA, and what the CRL said. */
function describeCheck(c: SignatureCheck): string {
  const count = c.signatures === 1 ? "signature" : `${c.signatures} signatures`;
  return `${count} good (${c.format}, ${c.alg}): signed by '${c.signer.subject}', certificate valid until ${c.signer.notAfter}, issued by '${c.chain[0] ?? "?"}'; revocation: ${c.revocation}`;
}
