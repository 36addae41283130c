/**
 * ECDSA signatures in their two encodings: WebCrypto and JOSE write r||s, each integer padded to
 * the curve's size (IEEE P1363); OpenSSL (`openssl dgst -sign`) writes the DER SEQUENCE of two
 * INTEGERs (RFC 3279). Signing goes through WebCrypto, so a DER signature is made from r||s here.
 */

/** One DER INTEGER of an unsigned big-endian number: leading zeros dropped, a zero put back before a high bit. */
function derInteger(bytes: Uint8Array): Uint8Array {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const body = bytes.subarray(start);
  const pad = body[0]! & 0x80 ? 1 : 0;
  const out = new Uint8Array(2 + pad + body.length);
  out[0] = 0x02;
  out[1] = pad + body.length;
  out.set(body, 2 + pad);
  return out;
}

/** r||s (P1363) -> the DER SEQUENCE of r and s that OpenSSL writes. */
export function derFromP1363(raw: Uint8Array): Uint8Array {
  const half = raw.length / 2;
  const r = derInteger(raw.subarray(0, half));
  const s = derInteger(raw.subarray(half));
  const length = r.length + s.length;
  // Up to P-521 (2 x 66 bytes + headers), the length fits in one or two bytes.
  const head = length < 0x80 ? [0x30, length] : [0x30, 0x81, length];
  const out = new Uint8Array(head.length + length);
  out.set(head, 0);
  out.set(r, head.length);
  out.set(s, head.length + r.length);
  return out;
}
