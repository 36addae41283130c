/**
 * Reading a secret's file without ever blocking a thread. Opening a FIFO waits for a writer, and
 * reading one waits for its bytes; done the usual way, either wait blocks one of libuv's threads,
 * which nothing can interrupt, and which keeps the process (process.exit too) from ending. So the
 * file is opened non-blocking, and a pipe is read as a socket is: a wait that can be abandoned.
 */
import { close, closeSync, constants, fstat, open, openSync, readFile, readlink, type Stats } from "node:fs";
import { Socket } from "node:net";
import { promisify } from "node:util";

const openAsync = promisify(open);
const fstatAsync = promisify(fstat);
const readFileAsync = promisify(readFile);
const readlinkAsync = promisify(readlink);

/** The most a secret's file may hold: a password, a PIN or a token is far smaller, and an endless writer stops here. */
const MAX_BYTES = 64 * 1024;

/** Why a secret's file could not be read, as an errno-style error (the caller words the message). */
function failure(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}

/**
 * The text of a secret's file: a regular file, or a pipe (a FIFO, or `<(command)` from a shell)
 * read until its writer closes it; anything else is refused. The wait for a pipe's writer and
 * its bytes ends when `signal` aborts (with its reason), and leaves nothing behind.
 */
export async function readSecretFile(path: string, signal?: AbortSignal): Promise<string> {
  const fd = await openAsync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  let st: Stats;
  try {
    st = await fstatAsync(fd);
  } catch (err) {
    close(fd, () => {});
    throw err;
  }
  if (st.isFIFO()) return readPipe(fd, path, await isNamed(fd), signal);
  try {
    if (!st.isFile()) throw failure("EINVAL", "it is neither a file nor a pipe");
    if (st.size > MAX_BYTES) throw failure("EFBIG", `it holds more than ${MAX_BYTES / 1024} KiB`);
    return (await readFileAsync(fd)).toString("utf8");
  } finally {
    close(fd, () => {});
  }
}

/**
 * Reads a pipe until its writer closes it. A FIFO (`named`) is held open for writing too until the
 * first bytes arrive: without a writer, a pipe reads as ended, and the writer of a FIFO may come
 * later (one that opens it and closes it without writing is not seen: the deadline ends that wait).
 * An unnamed pipe (`<(command)`) has its writer from the start, and is read as it is: a command
 * that ends without writing gives an empty password at once.
 */
function readPipe(fd: number, path: string, named: boolean, signal?: AbortSignal): Promise<string> {
  let keep = named ? ownWriter(fd, path) : undefined;
  const release = () => {
    if (keep !== undefined) closeSync(keep);
    keep = undefined;
  };
  const pipe = new Socket({ fd, readable: true, writable: false });
  return new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const end = (err: unknown, text?: string) => {
      signal?.removeEventListener("abort", onAbort);
      release();
      pipe.destroy();
      if (err === undefined) resolve(text!);
      else reject(err);
    };
    const onAbort = () => end(signal!.reason);
    pipe.on("data", (chunk: Buffer) => {
      release();
      size += chunk.length;
      if (size > MAX_BYTES) end(failure("EFBIG", `it holds more than ${MAX_BYTES / 1024} KiB`));
      else chunks.push(chunk);
    });
    pipe.on("end", () => end(undefined, Buffer.concat(chunks).toString("utf8")));
    pipe.on("error", (err) => end(err));
    if (signal?.aborted) onAbort();
    else signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Whether the pipe behind `fd` is a FIFO (it has a name) rather than a shell's `<(command)`; a FIFO if /proc cannot tell. */
async function isNamed(fd: number): Promise<boolean> {
  const target = await readlinkAsync(`/proc/self/fd/${fd}`).catch(() => "");
  return !target.startsWith("pipe:");
}

/** Opens the pipe behind `fd` for writing, without waiting (there is a reader: us); undefined if it cannot be. */
function ownWriter(fd: number, path: string): number | undefined {
  for (const at of [`/proc/self/fd/${fd}`, path]) {
    try {
      return openSync(at, constants.O_WRONLY | constants.O_NONBLOCK);
    } catch {
      // no /proc: the path; if that fails too, the pipe is read as it is
    }
  }
  return undefined;
}
