/** WebCrypto's ECDSA signature (r || s) as the DER Ecdsa-Sig-Value X.509 and CMP want. */
export function ecdsaDer(raw: Uint8Array): Uint8Array {
  const half = raw.length / 2;
  const int = (bytes: Uint8Array): Buffer => {
    let i = 0;
    while (i < bytes.length - 1 && bytes[i] === 0) i++;
    const v = bytes.subarray(i);
    const body = v[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), v]) : Buffer.from(v);
    return Buffer.concat([Buffer.from([0x02, body.length]), body]);
  };
  const content = Buffer.concat([int(raw.subarray(0, half)), int(raw.subarray(half))]);
  const length = content.length < 0x80 ? Buffer.from([content.length]) : Buffer.from([0x81, content.length]);
  return Buffer.concat([Buffer.from([0x30]), length, content]);
}
