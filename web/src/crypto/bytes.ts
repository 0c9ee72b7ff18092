/**
 * Byte helpers shared by the envelope and payload code: UTF-8, strict lower-case hex,
 * concatenation and randomness. No cryptography here.
 */

import { bytesToHex, hexToBytes } from "@noble/hashes/utils.js";

const encoder = new TextEncoder();
/** `fatal`: invalid UTF-8 throws; `ignoreBOM`: a leading BOM is kept (JSON then refuses it). */
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** The UTF-8 bytes of `text` (lone surrogates become U+FFFD, as TextEncoder does). */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/**
 * The text of UTF-8 `bytes`.
 * @throws TypeError when the bytes are not valid UTF-8.
 */
export function fromUtf8(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/** How many bytes `text` takes in UTF-8 (what Rust's `str::len` counts). */
export function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Whether `text` is well-formed UTF-16 (no lone surrogate), so UTF-8 can carry it exactly. */
export function isWellFormed(text: string): boolean {
  return !LONE_SURROGATE.test(text);
}

/** Lower-case hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  return bytesToHex(bytes);
}

const LOWER_HEX = /^(?:[0-9a-f]{2})*$/;

/**
 * The bytes of lower-case hex text, or `undefined` when it is not lower-case hex (upper case,
 * odd length, other characters) or not `length` bytes long when given.
 */
export function parseHex(text: string, length?: number): Uint8Array | undefined {
  if (!LOWER_HEX.test(text)) return undefined;
  if (length !== undefined && text.length !== length * 2) return undefined;
  return hexToBytes(text);
}

/** The bytes of `parts` one after another. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Whether two byte strings are equal (not constant time: for public values). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** `length` bytes from the platform's CSPRNG (`crypto.getRandomValues`, 64 KiB per call). */
export function randomBytes(length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let at = 0; at < length; at += 65536) {
    globalThis.crypto.getRandomValues(out.subarray(at, Math.min(length, at + 65536)));
  }
  return out;
}
