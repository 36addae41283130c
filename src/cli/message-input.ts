/** The message a signing command reads (a file, or stdin), bounded, and where it writes what it makes (stdout, or a file replaced whole). */
import { open } from "node:fs/promises";
import { CertRetrieverError, describeCause } from "../errors.js";
import { replaceFile, storageError } from "../fs/safe-dir.js";
import { MESSAGE_LIMIT } from "../sign/formats.js";
import { configError } from "./hints.js";
import { cliIo } from "./io.js";

/** A message over the limit, said as a failure of `step` naming where it came from. */
function tooLarge(step: "sign" | "verify-signature", where: string): CertRetrieverError {
  return new CertRetrieverError(`${step} failed: ${where} is larger than ${MESSAGE_LIMIT} bytes (1 MiB), the limit`, {
    step,
    reason: "message-malformed",
    hint: "sign each message on its own; the limit keeps a runaway input from filling the memory",
  });
}

/** Reads `path` (or stdin when absent or `-`) whole, refusing more than 1 MiB; `flag` names it in messages. */
export async function readMessage(
  path: string | undefined,
  flag: string,
  step: "sign" | "verify-signature",
): Promise<Uint8Array> {
  if (path === undefined || path === "-") return readStdin(step);
  const handle = await open(path, "r").catch((err: unknown) => {
    throw configError(
      `cannot read ${flag} ${path}: ${describeCause(err)}`,
      `check the path given to ${flag}`,
      err,
      path,
    );
  });
  try {
    const buffer = Buffer.alloc(MESSAGE_LIMIT + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > MESSAGE_LIMIT) throw tooLarge(step, `${flag} ${path}`);
    }
    return buffer.subarray(0, length);
  } finally {
    await handle.close();
  }
}

/** Standard input, to its end or just past the limit (then it is no longer read). */
async function readStdin(step: "sign" | "verify-signature"): Promise<Uint8Array> {
  const { stdin } = cliIo();
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of stdin as AsyncIterable<Buffer | string>) {
    const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    chunks.push(bytes);
    length += bytes.length;
    if (length > MESSAGE_LIMIT) {
      stdin.destroy?.();
      throw tooLarge(step, "the message on standard input");
    }
  }
  return Buffer.concat(chunks);
}

/** Writes `data` to `to`, replaced whole (staged beside it, renamed over it), or to stdout as it is. */
export async function writeOutput(data: string | Uint8Array, to: string | undefined): Promise<void> {
  if (to === undefined) {
    cliIo().stdout.write(typeof data === "string" ? data : Buffer.from(data));
    return;
  }
  await replaceFile(to, data, 0o644).catch((err: unknown) => {
    throw storageError(`cannot write --to ${to}: ${describeCause(err)}`, err, to);
  });
}
