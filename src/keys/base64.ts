/** Decodes strict base64 (newlines allowed, as EJBCA splits at 64 columns), or undefined if it is not base64. */
export function decodeBase64(text: string): Uint8Array | undefined {
  const compact = text.replace(/[\r\n]/g, "");
  if (compact.length === 0 || compact.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(compact)) {
    return undefined;
  }
  return new Uint8Array(Buffer.from(compact, "base64"));
}
