/**
 * The JSON text of the two envelope shapes and the header bytes their AEAD and signature
 * cover (docs/protocol.md, "Envelopes v2"; Rust: src/envelope_v2/wire.rs).
 *
 * Texts are written with `JSON.stringify` of objects built in the spec's field order, which
 * writes what `serde_json::to_string` writes for these fields (strings and safe integers).
 */

import { base64urlDecode } from "./base64url";
import { isWellFormed, utf8, utf8Length } from "./bytes";
import { EnvelopeError } from "./errors";
import { FieldReader, JsonError, MAX_SAFE_INTEGER, parseJson, type Json } from "./json";

/** The format version both shapes carry in `v`. */
export const VERSION = 2;
/** Largest prompt (1 MiB), as the Rust `MAX_CONTENT_BYTES`. */
export const MAX_CONTENT_BYTES = 1 << 20;
/** Largest plaintext sealed or accepted. */
export const MAX_PLAINTEXT = MAX_CONTENT_BYTES + 64 * 1024;
/** Largest envelope text accepted, in UTF-8 bytes (1,489,576). */
export const MAX_ENVELOPE = Math.floor(MAX_PLAINTEXT / 3) * 4 + 4096;

/** What a sealed envelope carries. */
export type SealedKind = "command" | "content_key" | "pairing_request" | "pairing_answer";
/** What a content envelope carries. */
export type ContentKind = "prompt" | "event";

export const SEALED_KINDS: readonly SealedKind[] = [
  "command",
  "content_key",
  "pairing_request",
  "pairing_answer",
];
export const CONTENT_KINDS: readonly ContentKind[] = ["prompt", "event"];

const SEALED_DOMAIN = "helix-sealed-v2";
const CONTENT_DOMAIN = "helix-content-v2";

/** A sealed envelope's fields, in wire order. */
export interface SealedWire {
  v: number;
  kind: SealedKind;
  sender: string;
  recipient: string;
  context: string;
  seq: number;
  expires_at_ms: number;
  epk: string;
  nonce: string;
  ct: string;
  sig: string;
}

/** A content envelope's fields, in wire order. */
export interface ContentWire {
  v: number;
  kind: ContentKind;
  hub: string;
  context: string;
  seq: number;
  nonce: string;
  ct: string;
  sig: string;
}

const SEALED_FIELDS = [
  "v",
  "kind",
  "sender",
  "recipient",
  "context",
  "seq",
  "expires_at_ms",
  "epk",
  "nonce",
  "ct",
  "sig",
] as const;

const CONTENT_FIELDS = ["v", "kind", "hub", "context", "seq", "nonce", "ct", "sig"] as const;

/** `domain`, then each field preceded by a newline, as UTF-8. */
function join(domain: string, fields: readonly string[]): Uint8Array {
  return utf8([domain, ...fields].join("\n"));
}

/** The bytes a sealed envelope's AEAD binds (as associated data) and its signature covers. */
export function sealedHeaderBytes(w: SealedWire): Uint8Array {
  return join(SEALED_DOMAIN, [
    String(w.v),
    w.kind,
    w.sender,
    w.recipient,
    w.context,
    String(w.seq),
    String(w.expires_at_ms),
    w.epk,
    w.nonce,
  ]);
}

/** The bytes a content envelope's AEAD binds and its signature covers. */
export function contentHeaderBytes(w: ContentWire): Uint8Array {
  return join(CONTENT_DOMAIN, [String(w.v), w.kind, w.hub, w.context, String(w.seq), w.nonce]);
}

/** The text of a sealed envelope: its fields in wire order, no spaces. */
export function sealedText(w: SealedWire): string {
  const ordered: SealedWire = {
    v: w.v,
    kind: w.kind,
    sender: w.sender,
    recipient: w.recipient,
    context: w.context,
    seq: w.seq,
    expires_at_ms: w.expires_at_ms,
    epk: w.epk,
    nonce: w.nonce,
    ct: w.ct,
    sig: w.sig,
  };
  return JSON.stringify(ordered);
}

/** The text of a content envelope: its fields in wire order, no spaces. */
export function contentText(w: ContentWire): string {
  const ordered: ContentWire = {
    v: w.v,
    kind: w.kind,
    hub: w.hub,
    context: w.context,
    seq: w.seq,
    nonce: w.nonce,
    ct: w.ct,
    sig: w.sig,
  };
  return JSON.stringify(ordered);
}

/** Wraps a JSON refusal as `malformed envelope: <parser message>`. */
function json<T>(read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (e instanceof JsonError) throw EnvelopeError.malformed(e.message);
    throw e;
  }
}

/**
 * Refuses what is too long, not an object with an integer `v`, or not version 2, before the
 * shape is read, so a future version gets its own message rather than a parser's.
 */
function outer(text: string): Json {
  const bytes = utf8Length(text);
  if (bytes > MAX_ENVELOPE) throw EnvelopeError.tooLarge(bytes);
  return json(() => {
    const value = parseJson(text);
    const v = new FieldReader(value, "an envelope object", ["v"], false).uint("v", "u64");
    if (v !== BigInt(VERSION)) throw EnvelopeError.version(v);
    return value;
  });
}

/** Checks a header integer against 2^53 − 1 (after the shape, as the Rust side does). */
function safe(name: string, value: bigint): number {
  if (value > BigInt(MAX_SAFE_INTEGER)) throw EnvelopeError.malformed(`${name} is over 2^53 - 1`);
  return Number(value);
}

/**
 * Parses a sealed envelope's text: size, JSON, version, exactly the sealed shape (no unknown,
 * missing or duplicate field), integers at most 2^53 − 1.
 * @throws EnvelopeError
 */
export function parseSealed(text: string): SealedWire {
  const value = outer(text);
  const { seq, expires, wire } = json(() => {
    const r = new FieldReader(value, "an envelope object", SEALED_FIELDS, true);
    r.uint("v", "u8");
    const kind = r.variant("kind", SEALED_KINDS);
    const sender = r.string("sender");
    const recipient = r.string("recipient");
    const context = r.string("context");
    const seq = r.uint("seq", "u64");
    const expires = r.uint("expires_at_ms", "u64");
    const wire = {
      v: VERSION,
      kind,
      sender,
      recipient,
      context,
      epk: r.string("epk"),
      nonce: r.string("nonce"),
      ct: r.string("ct"),
      sig: r.string("sig"),
    };
    return { seq, expires, wire };
  });
  return {
    ...wire,
    seq: safe("seq", seq),
    expires_at_ms: safe("expires_at_ms", expires),
  };
}

/**
 * Parses a content envelope's text: size, JSON, version, exactly the content shape, seq at
 * most 2^53 − 1.
 * @throws EnvelopeError
 */
export function parseContent(text: string): ContentWire {
  const value = outer(text);
  const { seq, wire } = json(() => {
    const r = new FieldReader(value, "an envelope object", CONTENT_FIELDS, true);
    r.uint("v", "u8");
    const kind = r.variant("kind", CONTENT_KINDS);
    const hub = r.string("hub");
    const context = r.string("context");
    const seq = r.uint("seq", "u64");
    const wire = {
      v: VERSION,
      kind,
      hub,
      context,
      nonce: r.string("nonce"),
      ct: r.string("ct"),
      sig: r.string("sig"),
    };
    return { seq, wire };
  });
  return { ...wire, seq: safe("seq", seq) };
}

/**
 * A base64url (no padding) field.
 * @throws EnvelopeError `malformed envelope: <field> is not base64url`.
 */
export function decodeField(field: string, value: string): Uint8Array {
  const bytes = base64urlDecode(value);
  if (bytes === undefined) throw EnvelopeError.malformed(`${field} is not base64url`);
  return bytes;
}

/**
 * A signature field's bytes, or `undefined` when it is not base64url: a signature that does
 * not decode is a bad signature, not a malformed envelope (as on the Rust side).
 */
export function decodeSignature(sig: string): Uint8Array | undefined {
  return base64urlDecode(sig);
}

/**
 * A base64url field of exactly `length` bytes.
 * @throws EnvelopeError `malformed envelope: <field> is not <n> bytes` (or not base64url).
 */
export function decodeFixed(field: string, value: string, length: number): Uint8Array {
  const bytes = decodeField(field, value);
  if (bytes.length !== length) throw EnvelopeError.malformed(`${field} is not ${length} bytes`);
  return bytes;
}

/**
 * Checks a header integer before sealing: a non-negative integer at most 2^53 − 1.
 * @throws EnvelopeError `malformed envelope: <field> is over 2^53 - 1` (or not an integer).
 */
export function checkInt(field: string, value: number): void {
  if (!Number.isInteger(value) || value < 0) {
    throw EnvelopeError.malformed(`${field} is not a non-negative integer`);
  }
  if (value > MAX_SAFE_INTEGER) throw EnvelopeError.malformed(`${field} is over 2^53 - 1`);
}

/**
 * Checks a context before sealing: text that UTF-8 carries exactly (no lone surrogate, which
 * `JSON.stringify` would write as an escape the Rust side refuses).
 */
export function checkContext(context: string): void {
  if (!isWellFormed(context)) throw EnvelopeError.malformed("context is not valid Unicode");
}
