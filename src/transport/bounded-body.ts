/**
 * The one reader of a reply's body: whatever the server says of its length (a Content-Length may be
 * absent or false), no more than a bound is ever held in memory.
 */

/** A body as either HTTP path gives it: Node's IncomingMessage or undici's readable. */
export interface ReplyBody extends AsyncIterable<Uint8Array> {
  destroy(): void;
}

/**
 * The body's bytes, read as they come; undefined when it grows past `maxBytes`, in which case the
 * rest is never read and the connection is dropped (a kept connection would still carry it).
 */
export async function readBounded(body: ReplyBody, maxBytes: number): Promise<Buffer | undefined> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > maxBytes) {
      body.destroy();
      return undefined;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
