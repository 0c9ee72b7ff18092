/**
 * Envelope v2, the envelopes of the cloud route, byte for byte as docs/protocol.md
 * ("Envelopes v2") and the Rust `helix_mesh::envelope_v2`, checked against
 * proto/vectors/envelope-v2.json.
 *
 * - Sealed to one recipient, signed by the sender ({@link seal}, {@link openSealed},
 *   {@link unwrapContentKey}): a command (device → hub), a content key (hub → device), a
 *   pairing request (device → hub) and its answer (hub → device).
 * - Content under a command's content key, signed by the hub ({@link openContent}): the prompt
 *   and each event.
 *
 * Keys are ed25519 public keys as 64 lower-case hex digits; a secret is a 32-byte ed25519 seed.
 * Every refusal is an {@link EnvelopeError} whose message is the Rust side's text.
 */

export { EnvelopeError, type EnvelopeErrorCode } from "./errors";
export { parsePublicKey, publicKeyHex, shortId, type SecretSeed } from "./primitives";
export {
  freshSealRandom,
  openSealed,
  seal,
  unwrapContentKey,
  wrapContentKey,
  type OpenedSealed,
  type SealedHeader,
  type SealRandom,
} from "./sealed";
export { openContent, sealContent, type ContentHeader } from "./content";
export {
  MAX_ENVELOPE,
  MAX_PLAINTEXT,
  VERSION,
  type ContentKind,
  type SealedKind,
} from "./wire";
export { MAX_SAFE_INTEGER } from "./json";
