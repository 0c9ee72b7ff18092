/**
 * Why an envelope was refused. The messages are exactly the Display texts of the Rust
 * `helix_mesh::envelope_v2::EnvelopeError` (src/envelope_v2/error.rs), so the web app prints
 * what the CLI prints and the golden vectors' `error` texts compare as they are.
 */

/** Which refusal an {@link EnvelopeError} is (the Rust variant's name in snake case). */
export type EnvelopeErrorCode =
  | "malformed"
  | "version"
  | "not_for_us"
  | "unknown_sender"
  | "bad_signature"
  | "expired"
  | "undecryptable"
  | "too_large"
  | "wrong_kind"
  | "wrong_command"
  | "wrong_seq"
  | "wrong_signer";

/** A refused envelope: `code` says which refusal, `message` is the text a person reads. */
export class EnvelopeError extends Error {
  override readonly name = "EnvelopeError";

  private constructor(
    readonly code: EnvelopeErrorCode,
    message: string,
  ) {
    super(message);
  }

  /** `malformed envelope: <what>`. */
  static malformed(what: string): EnvelopeError {
    return new EnvelopeError("malformed", `malformed envelope: ${what}`);
  }

  /** A version other than 2 (as its decimal text, which may exceed 2^53). */
  static version(v: bigint | number): EnvelopeError {
    return new EnvelopeError(
      "version",
      `envelope version ${String(v)} is not supported (this side reads version 2)`,
    );
  }

  static notForUs(): EnvelopeError {
    return new EnvelopeError("not_for_us", "envelope is addressed to another recipient");
  }

  /** @param short the sender's short id (its first 5 bytes in hex). */
  static unknownSender(short: string): EnvelopeError {
    return new EnvelopeError("unknown_sender", `envelope sender ${short} is not a paired device`);
  }

  static badSignature(): EnvelopeError {
    return new EnvelopeError(
      "bad_signature",
      "forged envelope: the signature does not match its signer and contents",
    );
  }

  static expired(): EnvelopeError {
    return new EnvelopeError("expired", "expired envelope");
  }

  static undecryptable(): EnvelopeError {
    return new EnvelopeError("undecryptable", "envelope does not decrypt with this key");
  }

  /** @param bytes the size of the envelope text (or plaintext, sealing) in bytes. */
  static tooLarge(bytes: number): EnvelopeError {
    return new EnvelopeError("too_large", `envelope of ${bytes} bytes is over the limit`);
  }

  static wrongKind(expected: string, found: string): EnvelopeError {
    return new EnvelopeError(
      "wrong_kind",
      `spliced envelope: kind ${found} where kind ${expected} belongs`,
    );
  }

  static wrongCommand(expected: string, found: string): EnvelopeError {
    return new EnvelopeError(
      "wrong_command",
      `spliced envelope: it belongs to command ${found}, not ${expected}`,
    );
  }

  static wrongSeq(expected: number, found: number): EnvelopeError {
    return new EnvelopeError(
      "wrong_seq",
      `spliced envelope: it carries seq ${found} where seq ${expected} belongs`,
    );
  }

  static wrongSigner(): EnvelopeError {
    return new EnvelopeError("wrong_signer", "spliced envelope: it names another hub as its signer");
  }
}
