/**
 * The primitives both envelope shapes compose, all from noble: X25519 from ed25519 keys,
 * HKDF-SHA256, ChaCha20-Poly1305, ed25519 signatures over header bytes and ciphertext.
 * (The Rust counterpart: src/envelope_v2/crypto.rs.)
 */

import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";

import { concat, parseHex, toHex } from "./bytes";
import { EnvelopeError } from "./errors";

/** A device's or hub's secret: the 32-byte ed25519 seed (iroh's `SecretKey` bytes). */
export type SecretSeed = Uint8Array;

/**
 * The public key of an ed25519 seed, as 64 lower-case hex digits (iroh's `PublicKey` text).
 * @throws Error when `secret` is not 32 bytes.
 */
export function publicKeyHex(secret: SecretSeed): string {
  return toHex(publicKeyBytes(secret));
}

/**
 * The 32-byte public key of an ed25519 seed.
 * @throws Error when `secret` is not 32 bytes.
 */
export function publicKeyBytes(secret: SecretSeed): Uint8Array {
  return ed25519.getPublicKey(checkSeed(secret));
}

function checkSeed(secret: SecretSeed): Uint8Array {
  if (!(secret instanceof Uint8Array) || secret.length !== 32) {
    throw new TypeError("an ed25519 secret key is 32 bytes");
  }
  return secret;
}

/**
 * The 32 bytes of a public key written as 64 lower-case hex digits that decode to a point of
 * the curve, or `undefined` for anything else (as iroh's `PublicKey::from_str` on hex).
 */
export function parsePublicKey(hex: string): Uint8Array | undefined {
  const bytes = parseHex(hex, 32);
  if (bytes === undefined) return undefined;
  return ed25519.utils.isValidPublicKey(bytes, false) ? bytes : undefined;
}

/** A key's short id in messages: its first 5 bytes in hex (iroh's `fmt_short`). */
export function shortId(publicHex: string): string {
  return publicHex.slice(0, 10);
}

/** The X25519 public key of an ed25519 public key (libsodium's `pk_to_curve25519`). */
export function x25519Public(edPublic: Uint8Array): Uint8Array {
  try {
    return ed25519.utils.toMontgomery(edPublic);
  } catch {
    throw EnvelopeError.malformed("recipient key is not a valid ed25519 key");
  }
}

/** The X25519 secret scalar of an ed25519 seed (libsodium's `sk_to_curve25519`). */
export function x25519Secret(secret: SecretSeed): Uint8Array {
  return ed25519.utils.toMontgomerySecret(checkSeed(secret));
}

/** The X25519 public key of an ephemeral secret (clamped). */
export function x25519Base(ephemeral: Uint8Array): Uint8Array {
  return x25519.getPublicKey(ephemeral);
}

/**
 * X25519 of `secret` (clamped) and `publicKey`.
 * @throws EnvelopeError undecryptable when the public key is of low order (noble refuses it).
 */
export function x25519Shared(secret: Uint8Array, publicKey: Uint8Array): Uint8Array {
  try {
    return x25519.getSharedSecret(secret, publicKey);
  } catch {
    throw EnvelopeError.undecryptable();
  }
}

/** HKDF-SHA256: salt `epk ‖ recipient's X25519 key`, the shared secret as IKM, the header as info. */
export function sealingKey(
  shared: Uint8Array,
  epk: Uint8Array,
  recipientX: Uint8Array,
  header: Uint8Array,
): Uint8Array {
  return hkdf(sha256, shared, concat(epk, recipientX), header, 32);
}

/** ChaCha20-Poly1305 of `plaintext` under `key` and `nonce`, with `aad`; the tag appended. */
export function encrypt(
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array,
): Uint8Array {
  return chacha20poly1305(key, nonce, aad).encrypt(plaintext);
}

/**
 * Opens ChaCha20-Poly1305 ciphertext.
 * @throws EnvelopeError undecryptable when the tag does not match.
 */
export function decrypt(
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  ciphertext: Uint8Array,
): Uint8Array {
  try {
    return chacha20poly1305(key, nonce, aad).decrypt(ciphertext);
  } catch {
    throw EnvelopeError.undecryptable();
  }
}

/** The ed25519 signature of `header ‖ ct` by `secret`. */
export function sign(secret: SecretSeed, header: Uint8Array, ct: Uint8Array): Uint8Array {
  return ed25519.sign(concat(header, ct), checkSeed(secret));
}

/**
 * Verifies the signature of `header ‖ ct` by `signer` strictly, as ed25519-dalek's
 * `verify_strict` (iroh's `PublicKey::verify`): canonical encodings only, and neither the key
 * nor the signature's R of small order.
 * @throws EnvelopeError bad signature otherwise (also for a signature that is not 64 bytes).
 */
export function verify(
  signer: Uint8Array,
  header: Uint8Array,
  ct: Uint8Array,
  sig: Uint8Array | undefined,
): void {
  if (sig === undefined || sig.length !== 64 || smallOrder(sig.subarray(0, 32))) {
    throw EnvelopeError.badSignature();
  }
  let ok = false;
  try {
    ok = ed25519.verify(sig, concat(header, ct), signer, { zip215: false });
  } catch {
    ok = false;
  }
  if (!ok) throw EnvelopeError.badSignature();
}

/** Whether a point's encoding is of small order (an undecodable one counts as bad too). */
function smallOrder(encoded: Uint8Array): boolean {
  try {
    return ed25519.Point.fromBytes(encoded, false).isSmallOrder();
  } catch {
    return true;
  }
}
