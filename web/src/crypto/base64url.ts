/**
 * Base64url without padding (RFC 4648 §5), strict as Rust's `data_encoding::BASE64URL_NOPAD`:
 * no padding, no whitespace, no other alphabet, and unused trailing bits must be zero, so every
 * byte string has exactly one text and every accepted text one byte string.
 */

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

const VALUES: ReadonlyMap<string, number> = new Map(
  Array.from(ALPHABET, (c, i) => [c, i] as const),
);

/** The base64url text (no padding) of `bytes`. */
export function base64urlEncode(bytes: Uint8Array): string {
  let out = "";
  let i = 0;
  for (; i + 3 <= bytes.length; i += 3) {
    const n = ((bytes[i] ?? 0) << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    out += sextet(n >> 18) + sextet(n >> 12) + sextet(n >> 6) + sextet(n);
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = (bytes[i] ?? 0) << 16;
    out += sextet(n >> 18) + sextet(n >> 12);
  } else if (rest === 2) {
    const n = ((bytes[i] ?? 0) << 16) | ((bytes[i + 1] ?? 0) << 8);
    out += sextet(n >> 18) + sextet(n >> 12) + sextet(n >> 6);
  }
  return out;
}

function sextet(n: number): string {
  return ALPHABET.charAt(n & 63);
}

/**
 * The bytes of base64url text (no padding), or `undefined` when the text is not canonical
 * base64url: another character, padding, a length of 1 mod 4, or non-zero trailing bits.
 */
export function base64urlDecode(text: string): Uint8Array | undefined {
  if (text.length % 4 === 1) return undefined;
  const out = new Uint8Array(Math.floor((text.length * 3) / 4));
  let acc = 0;
  let bits = 0;
  let at = 0;
  for (const c of text) {
    const v = VALUES.get(c);
    if (v === undefined) return undefined;
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (acc >> bits) & 0xff;
    }
  }
  // The bits left over (2 or 4) must be zero, or two texts would decode to the same bytes.
  if ((acc & ((1 << bits) - 1)) !== 0) return undefined;
  return out;
}
