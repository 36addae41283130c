import { Command, Option } from "commander";
import type { SignedMessage } from "../../flows/sign.js";
import { SIGN_FORMATS, type SignFormat } from "../../sign/formats.js";
import {
  type CommonFlags,
  checkKeyFlag,
  type KeyFlags,
  keySettings,
  resolveDeviceId,
  storeSettings,
} from "../agent-settings.js";
import { applyConfigFile } from "../config.js";
import { commandExitCodes } from "../exit-codes.js";
import { readMessage, writeOutput } from "../message-input.js";
import { flagName } from "../names.js";
import { addOptions } from "../options.js";
import { exitCodesHelp, printResult, say, tell } from "../output.js";
import { applyRecorded } from "../remembered.js";
import type { CliState } from "../state.js";

interface SignFlags extends CommonFlags, KeyFlags {
  format: SignFormat;
  in?: string;
  to?: string;
  rsaPss?: boolean;
}

const HELP = `
Signs a message (--in FILE, or standard input; 1 MiB at most) with the device's stored key, wherever
it is kept: the key file, the keychain, or a PKCS#11 token, where the key signs without leaving it.
The signed message goes to standard output, or to --to FILE (replaced whole).

  airvantage  the JSON message {"<timestamp>": {datapoints}} with a "signature" datapoint added to
              each timestamp's datapoints: upper-case hex of an ECDSA (DER) or RSA PKCS#1 v1.5
              signature, SHA-256, over {"<timestamp>":{datapoints but signature}}, names sorted,
              no whitespace (RFC 8785), UTF-8
  jws         a compact JWS (RFC 7515): ES256/ES384 (EC keys), RS256 or PS256 (--rsa-pss) for RSA
              keys, the certificate and CA chain in the header's x5c
  raw         the signature's bytes as 'openssl dgst -sha256 -sign' writes them (DER for ECDSA)

A program that signs many messages uses the library (agent.openSigner()), which opens the key once.
docs/signing.md defines each format exactly.

  echo '{"1700000000000": {"dongle.serial": "11111111111"}}' | cert-retriever sign --device-id f60c28 --out /var/lib/cert-retriever
  cert-retriever sign --device-id f60c28 --format raw --in reading.json --to reading.sig
`;

/** `cert-retriever sign`: a message signed with the device's stored key. */
export function signCommand(state: CliState): Command {
  const cmd = new Command("sign").summary(
    "sign a message with the device's stored key (file, keychain or PKCS#11 token): airvantage, jws or raw",
  );
  addOptions(cmd, "sign")
    .addOption(
      new Option("--format <format>", "how the signed message is written").choices(SIGN_FORMATS).default("airvantage"),
    )
    .option("--in <file>", "the message to sign (default: standard input; 1 MiB at most)")
    .option("--to <file>", "write the signed message (raw: the signature) here, replaced whole, instead of stdout")
    .option("--rsa-pss", "an RSA key signs a JWS with RSA-PSS (PS256) rather than PKCS#1 v1.5 (RS256)")
    .addHelpText("after", HELP + exitCodesHelp(commandExitCodes("sign")))
    .action(async (_f: SignFlags, command: Command) => {
      await applyConfigFile(command, say);
      await applyRecorded(command, say);
      const flags = command.opts<SignFlags>();
      state.json ||= Boolean(flags.json);
      const source = (key: string) => command.getOptionValueSource(key);
      const deviceId = await resolveDeviceId(flags, source);
      await checkKeyFlag(flags);
      const message = await readMessage(flags.in, "--in", "sign");
      const { createAgent } = await import("../../agent.js");
      const agent = createAgent({
        device: { id: deviceId },
        store: await storeSettings(flags, deviceId),
        key: keySettings(flags, source),
        clock: state.inject?.clock,
        name: flagName,
      });
      const signer = await agent.openSigner({ pss: Boolean(flags.rsaPss) });
      let signed: SignedMessage;
      try {
        signed = await signer.sign(message, flags.format);
      } finally {
        await signer.close();
      }
      if (!flags.json || flags.to !== undefined) await writeOutput(signed.signed, flags.to);
      tell(
        flags,
        `signed ${message.byteLength} bytes as ${signed.format} (${signed.alg}) with the key of '${deviceId}' ${signer.where}`,
      );
      if (flags.json) printResult("sign", signResult(deviceId, signed, flags.to));
      state.exitCode = 0;
    });
  return cmd;
}

/** What --json says of a signature: the signed message (raw: the signature, base64) unless it went to --to. */
function signResult(deviceId: string, signed: SignedMessage, to: string | undefined): object {
  const base = { deviceId, format: signed.format, alg: signed.alg };
  if (to !== undefined) return { ...base, to };
  return typeof signed.signed === "string"
    ? { ...base, signed: signed.signed }
    : { ...base, signature: Buffer.from(signed.signed).toString("base64") };
}
