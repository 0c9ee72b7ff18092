/**
 * The content shape: under a command's 32-byte content key, signed by the hub (the prompt and
 * each event). Rust: src/envelope_v2/content.rs.
 */

import { base64urlEncode } from "./base64url";
import { randomBytes } from "./bytes";
import { EnvelopeError } from "./errors";
import {
  decrypt,
  encrypt,
  parsePublicKey,
  publicKeyHex,
  sign,
  verify,
  type SecretSeed,
} from "./primitives";
import {
  MAX_PLAINTEXT,
  VERSION,
  checkContext,
  checkInt,
  contentHeaderBytes,
  contentText,
  decodeField,
  decodeFixed,
  decodeSignature,
  parseContent,
  type ContentKind,
  type ContentWire,
} from "./wire";

/** What a content envelope must be to be accepted: the caller says what it follows. */
export interface ContentHeader {
  kind: ContentKind;
  /** The hub that signs the command's content, 64 lower-case hex digits. */
  hub: string;
  /** The command id. */
  context: string;
  /** 0 for the prompt, the event's seq (from 1) for an event. */
  seq: number;
}

function checkKey(key: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.length !== 32) {
    throw new TypeError("a content key is 32 bytes");
  }
}

/**
 * The hub encrypts one piece of a command's content under its key and signs it. The web app
 * never writes content (the hub does); this is for tests and vectors.
 * @param hub the hub's 32-byte ed25519 seed.
 * @param key the command's 32-byte content key.
 * @param nonce 12 bytes, fresh when absent (never reuse one under a key).
 * @returns the envelope's text.
 */
export function sealContent(
  hub: SecretSeed,
  key: Uint8Array,
  kind: ContentKind,
  context: string,
  seq: number,
  plaintext: Uint8Array,
  nonce: Uint8Array = randomBytes(12),
): string {
  if (plaintext.length > MAX_PLAINTEXT) throw EnvelopeError.tooLarge(plaintext.length);
  checkInt("seq", seq);
  checkContext(context);
  checkKey(key);
  if (nonce.length !== 12) throw new TypeError("a nonce is 12 bytes");
  const wire: ContentWire = {
    v: VERSION,
    kind,
    hub: publicKeyHex(hub),
    context,
    seq,
    nonce: base64urlEncode(nonce),
    ct: "",
    sig: "",
  };
  const aad = contentHeaderBytes(wire);
  const ct = encrypt(key, nonce, aad, plaintext);
  wire.sig = base64urlEncode(sign(hub, aad, ct));
  wire.ct = base64urlEncode(ct);
  return contentText(wire);
}

/**
 * Opens a content envelope, refusing it unless it is exactly `expect` (kind, hub, command and
 * seq) and signed by that hub. Checks in the spec's order.
 * @param key the command's 32-byte content key (from {@link unwrapContentKey}).
 * @returns the plaintext (a payload's JSON).
 * @throws EnvelopeError the first refusal.
 */
export function openContent(key: Uint8Array, expect: ContentHeader, text: string): Uint8Array {
  checkKey(key);
  const hub = parsePublicKey(expect.hub);
  if (hub === undefined) throw new TypeError("the expected hub is not a public key");
  const wire = parseContent(text);
  if (wire.kind !== expect.kind) throw EnvelopeError.wrongKind(expect.kind, wire.kind);
  if (wire.hub !== expect.hub) throw EnvelopeError.wrongSigner();
  if (wire.context !== expect.context) throw EnvelopeError.wrongCommand(expect.context, wire.context);
  if (wire.seq !== expect.seq) throw EnvelopeError.wrongSeq(expect.seq, wire.seq);
  const ct = decodeField("ct", wire.ct);
  const aad = contentHeaderBytes(wire);
  verify(hub, aad, ct, decodeSignature(wire.sig));
  const nonce = decodeFixed("nonce", wire.nonce, 12);
  return decrypt(key, nonce, aad, ct);
}
