/** Normalises a pin (`sha256:AB:CD…`, `abcd…`) to uppercase hex without colons, or undefined if it is not one. */
export function normalizeFingerprint(pin: string): string | undefined {
  const hex = pin.trim().replace(/^sha256:/i, "").replace(/:/g, "").toUpperCase();
  return /^[0-9A-F]{64}$/.test(hex) ? hex : undefined;
}
