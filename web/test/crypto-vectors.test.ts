// The golden vectors of proto/vectors/envelope-v2.json, which the Rust side checks too: from
// each vector's inputs this side writes exactly its envelope, opens every one, and refuses
// every refusal with exactly its error text.
import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";

import { parseHex, toHex } from "../src/crypto/bytes";
import {
  EnvelopeError,
  openContent,
  openSealed,
  publicKeyHex,
  seal,
  sealContent,
  unwrapContentKey,
  type ContentKind,
  type SealedKind,
} from "../src/crypto/envelope";

interface KeyPair {
  public: string;
  secret: string;
}
interface SealedVector {
  name: string;
  kind: SealedKind;
  sender: string;
  recipient: string;
  context: string;
  seq: number;
  expires_at_ms: number;
  ephemeral_secret: string;
  nonce: string;
  plaintext: string;
  envelope: string;
}
interface ContentVector {
  name: string;
  kind: ContentKind;
  hub: string;
  content_key: string;
  context: string;
  seq: number;
  nonce: string;
  plaintext: string;
  envelope: string;
}
interface Refusal {
  name: string;
  open: "sealed" | "content";
  envelope: string;
  envelope_of: string;
  error: string;
  splice?: { field: string; from: string };
  // sealed
  recipient?: string;
  sender?: string;
  now_ms?: number;
  // content
  hub?: string;
  kind?: ContentKind;
  context?: string;
  seq?: number;
  content_key?: string;
}
interface Vectors {
  description: string;
  keys: Record<string, KeyPair>;
  sealed: SealedVector[];
  content: ContentVector[];
  refusals: Refusal[];
}

const file = new URL("../../proto/vectors/envelope-v2.json", import.meta.url);
const vectors = JSON.parse(readFileSync(file, "utf8")) as Vectors;

function bytes(hex: string): Uint8Array {
  const b = parseHex(hex);
  if (b === undefined) throw new Error(`not hex: ${hex}`);
  return b;
}

function key(name: string | undefined): KeyPair {
  const k = name === undefined ? undefined : vectors.keys[name];
  if (k === undefined) throw new Error(`no key ${String(name)}`);
  return k;
}

const secret = (name: string | undefined) => bytes(key(name).secret);
const publicOf = (name: string | undefined) => key(name).public;

function errorOf(run: () => unknown): EnvelopeError {
  try {
    run();
  } catch (e) {
    if (e instanceof EnvelopeError) return e;
    throw e;
  }
  throw new Error("accepted");
}

describe("the vector file", () => {
  test("has every shape and kind", () => {
    expect(vectors.sealed.map((v) => v.kind)).toEqual(
      expect.arrayContaining(["command", "content_key", "pairing_request", "pairing_answer"]),
    );
    expect(new Set(vectors.content.map((v) => v.kind))).toEqual(new Set(["prompt", "event"]));
    expect(vectors.refusals.length).toBeGreaterThan(0);
  });

  test.each(Object.entries(vectors.keys))("key %s: its public key is its seed's", (_, k) => {
    expect(publicKeyHex(bytes(k.secret))).toBe(k.public);
  });
});

describe("sealed vectors", () => {
  test.each(vectors.sealed.map((v) => [v.name, v] as const))("%s: sealing writes exactly the envelope", (_, v) => {
    const envelope = seal(
      secret(v.sender),
      publicOf(v.recipient),
      { kind: v.kind, context: v.context, seq: v.seq, expiresAtMs: v.expires_at_ms },
      bytes(v.plaintext),
      { ephemeral: bytes(v.ephemeral_secret), nonce: bytes(v.nonce) },
    );
    expect(envelope).toBe(v.envelope);
  });

  test.each(vectors.sealed.map((v) => [v.name, v] as const))("%s: opens to its plaintext", (_, v) => {
    const sender = publicOf(v.sender);
    const opened = openSealed(secret(v.recipient), v.envelope, 0, (k) => k === sender);
    expect(toHex(opened.plaintext)).toBe(v.plaintext);
    expect(opened.sender).toBe(sender);
    expect(opened.header).toEqual({
      kind: v.kind,
      context: v.context,
      seq: v.seq,
      expiresAtMs: v.expires_at_ms,
    });
  });

  test.each(vectors.sealed.filter((v) => v.kind === "content_key").map((v) => [v.name, v] as const))(
    "%s: unwraps as the command's content key",
    (_, v) => {
      const k = unwrapContentKey(secret(v.recipient), publicOf(v.sender), v.context, v.envelope);
      expect(toHex(k)).toBe(v.plaintext);
    },
  );
});

describe("content vectors", () => {
  test.each(vectors.content.map((v) => [v.name, v] as const))("%s: sealing writes exactly the envelope", (_, v) => {
    const envelope = sealContent(
      secret(v.hub),
      bytes(v.content_key),
      v.kind,
      v.context,
      v.seq,
      bytes(v.plaintext),
      bytes(v.nonce),
    );
    expect(envelope).toBe(v.envelope);
  });

  test.each(vectors.content.map((v) => [v.name, v] as const))("%s: opens to its plaintext", (_, v) => {
    const plain = openContent(
      bytes(v.content_key),
      { kind: v.kind, hub: publicOf(v.hub), context: v.context, seq: v.seq },
      v.envelope,
    );
    expect(toHex(plain)).toBe(v.plaintext);
  });
});

describe("refusals", () => {
  test.each(vectors.refusals.map((r) => [r.name, r] as const))("%s: refused with its text", (_, r) => {
    const error =
      r.open === "sealed"
        ? errorOf(() => {
            const sender = publicOf(r.sender);
            openSealed(secret(r.recipient), r.envelope, r.now_ms ?? 0, (k) => k === sender);
          })
        : errorOf(() =>
            openContent(
              bytes(r.content_key ?? ""),
              {
                kind: r.kind ?? "event",
                hub: publicOf(r.hub),
                context: r.context ?? "",
                seq: r.seq ?? 0,
              },
              r.envelope,
            ),
          );
    expect(error.message).toBe(r.error);
  });

  // The refusal envelopes are the named vector's, with one field spliced in from another
  // (written back with sorted keys, as serde_json's Value does): rebuilding them from the
  // named vectors gives the same JSON object.
  test.each(vectors.refusals.map((r) => [r.name, r] as const))("%s: is its vector, spliced", (_, r) => {
    const all = [...vectors.sealed, ...vectors.content];
    const of = (name: string) => {
      const v = all.find((x) => x.name === name);
      if (v === undefined) throw new Error(`no vector ${name}`);
      return JSON.parse(v.envelope) as Record<string, unknown>;
    };
    const rebuilt = of(r.envelope_of);
    if (r.splice !== undefined) rebuilt[r.splice.field] = of(r.splice.from)[r.splice.field];
    expect(JSON.parse(r.envelope)).toEqual(rebuilt);
  });
});
