/**
 * The sealed shape: to one recipient, signed by the sender (commands, content keys, pairing
 * requests and answers). Rust: src/envelope_v2/sealed.rs.
 */

import { base64urlEncode } from "./base64url";
import { randomBytes, toHex } from "./bytes";
import { EnvelopeError } from "./errors";
import {
  decrypt,
  encrypt,
  parsePublicKey,
  publicKeyBytes,
  publicKeyHex,
  sealingKey,
  shortId,
  sign,
  verify,
  x25519Base,
  x25519Public,
  x25519Secret,
  x25519Shared,
  type SecretSeed,
} from "./primitives";
import {
  MAX_PLAINTEXT,
  VERSION,
  checkContext,
  checkInt,
  decodeField,
  decodeFixed,
  decodeSignature,
  parseSealed,
  sealedHeaderBytes,
  sealedText,
  type SealedKind,
  type SealedWire,
} from "./wire";

/** The readable part of a sealed envelope (besides sender and recipient). */
export interface SealedHeader {
  kind: SealedKind;
  /** The command id (the pairing id for pairing requests and answers). */
  context: string;
  /** 0 for the kinds defined so far. */
  seq: number;
  /** Refused from this time on (ms since the epoch); 0: never expires. */
  expiresAtMs: number;
}

/** An opened sealed envelope. */
export interface OpenedSealed {
  /** The sender's public key, 64 lower-case hex digits. */
  sender: string;
  header: SealedHeader;
  plaintext: Uint8Array;
}

/** The random inputs of one sealed envelope (fixed only by golden vectors; never reuse one). */
export interface SealRandom {
  /** The ephemeral X25519 secret, 32 bytes (clamped when used). */
  ephemeral: Uint8Array;
  /** The ChaCha20-Poly1305 nonce, 12 bytes. */
  nonce: Uint8Array;
}

/** Fresh randomness for one sealed envelope, from `crypto.getRandomValues`. */
export function freshSealRandom(): SealRandom {
  return { ephemeral: randomBytes(32), nonce: randomBytes(12) };
}

/**
 * Seals `plaintext` for `recipient`, signed by `sender`.
 * @param sender the sender's 32-byte ed25519 seed.
 * @param recipient the recipient's public key, 64 lower-case hex digits.
 * @param random the ephemeral secret and nonce; fresh ones when absent.
 * @returns the envelope's text.
 * @throws EnvelopeError when the plaintext is too large, a header integer is out of bounds,
 *   or the recipient is not a valid key.
 */
export function seal(
  sender: SecretSeed,
  recipient: string,
  header: SealedHeader,
  plaintext: Uint8Array,
  random: SealRandom = freshSealRandom(),
): string {
  if (plaintext.length > MAX_PLAINTEXT) throw EnvelopeError.tooLarge(plaintext.length);
  checkInt("seq", header.seq);
  checkInt("expires_at_ms", header.expiresAtMs);
  checkContext(header.context);
  if (random.ephemeral.length !== 32 || random.nonce.length !== 12) {
    throw new TypeError("a seal's randomness is a 32-byte ephemeral secret and a 12-byte nonce");
  }
  const recipientEd = parsePublicKey(recipient);
  if (recipientEd === undefined) {
    throw EnvelopeError.malformed("recipient key is not a valid ed25519 key");
  }
  const recipientX = x25519Public(recipientEd);
  const epk = x25519Base(random.ephemeral);
  const shared = x25519Shared(random.ephemeral, recipientX);
  const wire: SealedWire = {
    v: VERSION,
    kind: header.kind,
    sender: publicKeyHex(sender),
    recipient,
    context: header.context,
    seq: header.seq,
    expires_at_ms: header.expiresAtMs,
    epk: base64urlEncode(epk),
    nonce: base64urlEncode(random.nonce),
    ct: "",
    sig: "",
  };
  const aad = sealedHeaderBytes(wire);
  const key = sealingKey(shared, epk, recipientX, aad);
  const ct = encrypt(key, random.nonce, aad, plaintext);
  wire.sig = base64urlEncode(sign(sender, aad, ct));
  wire.ct = base64urlEncode(ct);
  return sealedText(wire);
}

/**
 * Opens a sealed envelope addressed to `recipient`, from a sender `senderAllowed` accepts,
 * unexpired at `nowMs`. Checks in the spec's order: shape, recipient, sender, signature,
 * expiry, then decryption.
 * @param recipient this side's 32-byte ed25519 seed.
 * @param senderAllowed called with the sender's hex key (a paired device; for a content key
 *   or a pairing answer, the hub).
 * @throws EnvelopeError the first refusal.
 */
export function openSealed(
  recipient: SecretSeed,
  text: string,
  nowMs: number,
  senderAllowed: (sender: string) => boolean,
): OpenedSealed {
  const wire = parseSealed(text);
  const meEd = publicKeyBytes(recipient);
  const me = toHex(meEd);
  if (wire.recipient !== me) throw EnvelopeError.notForUs();
  const sender = parsePublicKey(wire.sender);
  if (sender === undefined) throw EnvelopeError.malformed("sender is not a key");
  if (!senderAllowed(wire.sender)) throw EnvelopeError.unknownSender(shortId(wire.sender));
  const ct = decodeField("ct", wire.ct);
  const aad = sealedHeaderBytes(wire);
  verify(sender, aad, ct, decodeSignature(wire.sig));
  if (wire.expires_at_ms !== 0 && wire.expires_at_ms <= nowMs) throw EnvelopeError.expired();
  const epk = decodeFixed("epk", wire.epk, 32);
  const nonce = decodeFixed("nonce", wire.nonce, 12);
  const shared = x25519Shared(x25519Secret(recipient), epk);
  const key = sealingKey(shared, epk, x25519Public(meEd), aad);
  const plaintext = decrypt(key, nonce, aad, ct);
  return {
    sender: wire.sender,
    header: {
      kind: wire.kind,
      context: wire.context,
      seq: wire.seq,
      expiresAtMs: wire.expires_at_ms,
    },
    plaintext,
  };
}

/**
 * The hub wraps a command's content key for one device (never expires: history stays
 * readable). The web app only needs it for tests; the hub does this in Rust.
 */
export function wrapContentKey(
  hub: SecretSeed,
  device: string,
  commandId: string,
  key: Uint8Array,
  random: SealRandom = freshSealRandom(),
): string {
  const header: SealedHeader = { kind: "content_key", context: commandId, seq: 0, expiresAtMs: 0 };
  return seal(hub, device, header, key, random);
}

/**
 * A device unwraps the content key of `commandId`, sealed to it by `hub`.
 * @param device this device's 32-byte ed25519 seed.
 * @param hub the hub's public key (the only sender accepted).
 * @returns the 32-byte content key.
 * @throws EnvelopeError as {@link openSealed}, then a wrong kind or command, or a key that is
 *   not 32 bytes.
 */
export function unwrapContentKey(
  device: SecretSeed,
  hub: string,
  commandId: string,
  text: string,
): Uint8Array {
  const opened = openSealed(device, text, 0, (k) => k === hub);
  if (opened.header.kind !== "content_key") {
    throw EnvelopeError.wrongKind("content_key", opened.header.kind);
  }
  if (opened.header.context !== commandId) {
    throw EnvelopeError.wrongCommand(commandId, opened.header.context);
  }
  if (opened.plaintext.length !== 32) throw EnvelopeError.malformed("a content key is 32 bytes");
  return opened.plaintext;
}
