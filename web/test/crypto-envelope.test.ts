// Envelope v2 beyond the vectors: round trips, every refusal in the spec's table, tampering,
// expiry, wrong recipients, bounds, garbage.
import { describe, expect, test } from "vitest";

import { base64urlEncode } from "../src/crypto/base64url";
import { randomBytes, utf8 } from "../src/crypto/bytes";
import {
  EnvelopeError,
  MAX_ENVELOPE,
  MAX_PLAINTEXT,
  MAX_SAFE_INTEGER,
  openContent,
  openSealed,
  publicKeyHex,
  seal,
  sealContent,
  shortId,
  unwrapContentKey,
  wrapContentKey,
  type ContentHeader,
  type SealedHeader,
} from "../src/crypto/envelope";
import { encrypt, sign } from "../src/crypto/primitives";
import { contentHeaderBytes, sealedHeaderBytes, sealedText, type SealedWire } from "../src/crypto/wire";

const COMMAND = "0b9f7a52-6a3c-4f3e-9c55-3f1c0d2e8a11";
const OTHER_COMMAND = "5d1c2b7e-0f4a-4e8b-9a61-7c3e2d1f0a99";

const seed = (n: number) => new Uint8Array(32).fill(n);
const device = seed(1);
const hub = seed(2);
const otherHub = seed(3);
const otherDevice = seed(4);
const pub = publicKeyHex;

const command = (expiresAtMs: number, seq = 0): SealedHeader => ({
  kind: "command",
  context: COMMAND,
  seq,
  expiresAtMs,
});

const expectEvent = (signer: Uint8Array, seq: number, context = COMMAND): ContentHeader => ({
  kind: "event",
  hub: pub(signer),
  context,
  seq,
});

const fromDevice = (k: string) => k === pub(device);

function refusal(run: () => unknown): EnvelopeError {
  try {
    run();
  } catch (e) {
    if (e instanceof EnvelopeError) return e;
    throw e;
  }
  throw new Error("accepted");
}

/** Rewrites one field of an envelope's JSON (values typed loosely on purpose). */
function edit(text: string, change: (o: Record<string, unknown>) => void): string {
  const o = JSON.parse(text) as Record<string, unknown>;
  change(o);
  return JSON.stringify(o);
}

describe("sealed envelopes", () => {
  test("round trip: the recipient reads what the sender sealed, and nothing is in clear", () => {
    const text = seal(device, pub(hub), command(1000), utf8("the prompt"));
    expect(text).not.toContain("prompt");
    const opened = openSealed(hub, text, 999, fromDevice);
    expect(new TextDecoder().decode(opened.plaintext)).toBe("the prompt");
    expect(opened.header).toEqual(command(1000));
    expect(opened.sender).toBe(pub(device));
  });

  test("round trip: any plaintext, any seq, every kind", () => {
    const kinds = ["command", "content_key", "pairing_request", "pairing_answer"] as const;
    for (let i = 0; i < 40; i++) {
      const plaintext = randomBytes(Math.floor(Math.random() * 2048));
      const seq = i === 0 ? MAX_SAFE_INTEGER : Math.floor(Math.random() * MAX_SAFE_INTEGER);
      const header: SealedHeader = { kind: kinds[i % 4] ?? "command", context: `ctx-${i}`, seq, expiresAtMs: 0 };
      const opened = openSealed(hub, seal(device, pub(hub), header, plaintext), 0, fromDevice);
      expect(opened.plaintext).toEqual(plaintext);
      expect(opened.header).toEqual(header);
    }
  });

  test("fresh randomness: sealing twice gives two different envelopes", () => {
    const a = seal(device, pub(hub), command(0), utf8("p"));
    const b = seal(device, pub(hub), command(0), utf8("p"));
    expect(a).not.toBe(b);
    const [ea, eb] = [a, b].map((t) => JSON.parse(t) as { epk: string; nonce: string });
    expect(ea?.epk).not.toBe(eb?.epk);
    expect(ea?.nonce).not.toBe(eb?.nonce);
  });

  test("the fields are in the spec's order, without spaces", () => {
    const text = seal(device, pub(hub), command(5), new Uint8Array());
    expect(Object.keys(JSON.parse(text) as object)).toEqual([
      "v", "kind", "sender", "recipient", "context", "seq", "expires_at_ms", "epk", "nonce", "ct", "sig",
    ]);
    expect(text).not.toMatch(/[ \n]/);
    expect(text.startsWith(`{"v":2,"kind":"command","sender":"${pub(device)}"`)).toBe(true);
  });

  test("addressed to another recipient", () => {
    const text = seal(device, pub(hub), command(0), utf8("p"));
    expect(refusal(() => openSealed(otherHub, text, 0, fromDevice)).message).toBe(
      "envelope is addressed to another recipient",
    );
    expect(refusal(() => openSealed(otherHub, text, 0, fromDevice)).code).toBe("not_for_us");
  });

  test("a sender that is not paired is named by its short id", () => {
    const text = seal(device, pub(hub), command(0), utf8("p"));
    const e = refusal(() => openSealed(hub, text, 0, () => false));
    expect(e.message).toBe(`envelope sender ${pub(device).slice(0, 10)} is not a paired device`);
    expect(shortId(pub(device))).toBe(pub(device).slice(0, 10));
  });

  test("expiry: refused from expires_at_ms on; 0 never expires", () => {
    const text = seal(device, pub(hub), command(1000), utf8("p"));
    expect(openSealed(hub, text, 999, fromDevice).plaintext).toEqual(utf8("p"));
    expect(refusal(() => openSealed(hub, text, 1000, fromDevice)).message).toBe("expired envelope");
    expect(refusal(() => openSealed(hub, text, 5000, fromDevice)).code).toBe("expired");
    const never = seal(device, pub(hub), command(0), utf8("p"));
    expect(openSealed(hub, never, MAX_SAFE_INTEGER, fromDevice).plaintext).toEqual(utf8("p"));
  });

  test("a later expiry written in breaks the signature", () => {
    const text = seal(device, pub(hub), command(1000), utf8("p"));
    const later = edit(text, (o) => (o["expires_at_ms"] = 5000));
    expect(refusal(() => openSealed(hub, later, 1500, fromDevice)).message).toBe(
      "forged envelope: the signature does not match its signer and contents",
    );
  });

  test.each([
    ["kind", "pairing_request"],
    ["context", OTHER_COMMAND],
    ["seq", 1],
    ["expires_at_ms", 7],
    ["epk", base64urlEncode(randomBytes(32))],
    ["nonce", base64urlEncode(randomBytes(12))],
    ["ct", base64urlEncode(randomBytes(26))],
    ["sig", base64urlEncode(randomBytes(64))],
  ])("changing %s is refused as forged", (field, value) => {
    const text = seal(device, pub(hub), command(0), utf8("the prompt"));
    const changed = edit(text, (o) => (o[field] = value));
    expect(refusal(() => openSealed(hub, changed, 0, fromDevice)).code).toBe("bad_signature");
  });

  test("another sender's name written in: unknown sender, or forged if that one is paired too", () => {
    const text = seal(device, pub(hub), command(0), utf8("p"));
    const renamed = edit(text, (o) => (o["sender"] = pub(otherDevice)));
    expect(refusal(() => openSealed(hub, renamed, 0, fromDevice)).code).toBe("unknown_sender");
    expect(refusal(() => openSealed(hub, renamed, 0, () => true)).code).toBe("bad_signature");
  });

  test("a signature that is not base64url or not 64 bytes is forged, not malformed", () => {
    const text = seal(device, pub(hub), command(0), utf8("p"));
    for (const sig of ["!!", "", "AAAA", base64urlEncode(randomBytes(63))]) {
      const bad = edit(text, (o) => (o["sig"] = sig));
      expect(refusal(() => openSealed(hub, bad, 0, fromDevice)).code).toBe("bad_signature");
    }
  });

  test("ct that is not base64url is malformed (before the signature)", () => {
    const text = seal(device, pub(hub), command(0), utf8("p"));
    const bad = edit(text, (o) => (o["ct"] = "ab+/"));
    expect(refusal(() => openSealed(hub, bad, 0, fromDevice)).message).toBe(
      "malformed envelope: ct is not base64url",
    );
  });

  /** An envelope whose epk and nonce are what the test says, correctly signed over them. */
  function signedWith(epk: string, nonce: string): string {
    const wire: SealedWire = {
      v: 2, kind: "command", sender: pub(device), recipient: pub(hub), context: COMMAND,
      seq: 0, expires_at_ms: 0, epk, nonce, ct: "", sig: "",
    };
    const header = sealedHeaderBytes(wire);
    const ct = encrypt(new Uint8Array(32), new Uint8Array(12), header, utf8("x"));
    wire.ct = base64urlEncode(ct);
    wire.sig = base64urlEncode(sign(device, header, ct));
    return sealedText(wire);
  }

  test("epk and nonce of the wrong size or not base64url, signed: malformed, after the signature", () => {
    const good32 = base64urlEncode(randomBytes(32));
    const good12 = base64urlEncode(randomBytes(12));
    const cases: [string, string, string][] = [
      [base64urlEncode(randomBytes(31)), good12, "malformed envelope: epk is not 32 bytes"],
      ["*", good12, "malformed envelope: epk is not base64url"],
      [good32, base64urlEncode(randomBytes(16)), "malformed envelope: nonce is not 12 bytes"],
      [good32, "MDAw=", "malformed envelope: nonce is not base64url"],
    ];
    for (const [epk, nonce, message] of cases) {
      expect(refusal(() => openSealed(hub, signedWith(epk, nonce), 0, fromDevice)).message).toBe(message);
    }
  });

  test("a signed envelope that does not decrypt", () => {
    const text = signedWith(base64urlEncode(randomBytes(32)), base64urlEncode(randomBytes(12)));
    expect(refusal(() => openSealed(hub, text, 0, fromDevice)).message).toBe(
      "envelope does not decrypt with this key",
    );
  });

  test("a low-order ephemeral key does not decrypt", () => {
    const text = signedWith(base64urlEncode(new Uint8Array(32)), base64urlEncode(randomBytes(12)));
    expect(refusal(() => openSealed(hub, text, 0, fromDevice)).code).toBe("undecryptable");
  });

  test("the checks come in the spec's order", () => {
    const text = seal(device, pub(hub), command(1000), utf8("p"));
    // Another recipient and an unpaired sender: the recipient first.
    expect(refusal(() => openSealed(otherHub, text, 5000, () => false)).code).toBe("not_for_us");
    // Unpaired and expired: the sender first.
    expect(refusal(() => openSealed(hub, text, 5000, () => false)).code).toBe("unknown_sender");
    // Forged and expired: the signature first.
    const forged = edit(text, (o) => (o["context"] = OTHER_COMMAND));
    expect(refusal(() => openSealed(hub, forged, 5000, fromDevice)).code).toBe("bad_signature");
  });
});

describe("malformed and out-of-bounds envelopes", () => {
  const text = () => seal(device, pub(hub), command(0), utf8("p"));
  const open = (t: string) => refusal(() => openSealed(hub, t, 0, fromDevice));

  test("another version", () => {
    expect(open(edit(text(), (o) => (o["v"] = 3))).message).toBe(
      "envelope version 3 is not supported (this side reads version 2)",
    );
    // Decided before the shape: a v3 envelope of another shape gets the version message.
    expect(open('{"v":3,"whatever":true}').code).toBe("version");
    expect(open('{"v":18446744073709551615}').message).toBe(
      "envelope version 18446744073709551615 is not supported (this side reads version 2)",
    );
  });

  test("over the limit, counted in UTF-8 bytes", () => {
    expect(open("x".repeat(MAX_ENVELOPE + 1)).message).toBe(
      `envelope of ${MAX_ENVELOPE + 1} bytes is over the limit`,
    );
    const euros = "€".repeat(Math.ceil(MAX_ENVELOPE / 3) + 1); // 3 bytes each
    expect(open(euros).message).toBe(`envelope of ${euros.length * 3} bytes is over the limit`);
    expect(MAX_ENVELOPE).toBe(1_489_576);
  });

  test.each([
    ["not JSON", "hello"],
    ["empty", ""],
    ["an array (serde would read it by position; the spec says an object)", "[2]"],
    ["a string", '"v"'],
    ["no v", "{}"],
    ["v as a string", '{"v":"2"}'],
    ["v fractional", '{"v":2.0}'],
    ["v with an exponent", '{"v":2e0}'],
    ["v negative", '{"v":-2}'],
    ["trailing text", '{"v":2} x'],
  ])("%s is malformed", (_, t) => {
    const e = open(t);
    expect(e.code).toBe("malformed");
    expect(e.message.startsWith("malformed envelope: ")).toBe(true);
  });

  test("an unknown field", () => {
    expect(open(edit(text(), (o) => (o["extra"] = 1))).message).toMatch(
      /^malformed envelope: unknown field `extra`, expected one of `v`, `kind`/,
    );
  });

  test("a missing field", () => {
    expect(open(edit(text(), (o) => delete o["sig"])).message).toMatch(
      /^malformed envelope: missing field `sig`/,
    );
  });

  test("a duplicate field (JSON.parse would keep the last)", () => {
    const t = text().replace('"seq":0', '"seq":0,"seq":0');
    expect(open(t).message).toMatch(/^malformed envelope: duplicate field `seq`/);
  });

  test("an unknown kind", () => {
    expect(open(edit(text(), (o) => (o["kind"] = "event"))).message).toMatch(
      /^malformed envelope: unknown variant `event`/,
    );
  });

  test("integers over 2^53 - 1, fractional or negative", () => {
    const big = (field: string, value: string) =>
      text().replace(new RegExp(`"${field}":\\d+`), `"${field}":${value}`);
    expect(open(big("seq", "9007199254740992")).message).toBe("malformed envelope: seq is over 2^53 - 1");
    expect(open(big("expires_at_ms", "9007199254740992")).message).toBe(
      "malformed envelope: expires_at_ms is over 2^53 - 1",
    );
    expect(open(big("seq", "1.0")).code).toBe("malformed");
    expect(open(big("seq", "-1")).code).toBe("malformed");
    expect(open(big("seq", "1e3")).code).toBe("malformed");
    // 2^53 - 1 itself is in bounds (the signature then fails: the header changed).
    expect(open(big("seq", "9007199254740991")).code).toBe("bad_signature");
  });

  test("a sender that is not a key", () => {
    for (const sender of [pub(device).toUpperCase(), "ab", "ff".repeat(32)]) {
      expect(open(edit(text(), (o) => (o["sender"] = sender))).message).toBe(
        "malformed envelope: sender is not a key",
      );
    }
  });

  test("garbage never throws anything but an EnvelopeError", () => {
    const alphabet = '{}[]":,0123456789abcdefv-_ \\\u00e9\ud83d\ude00';
    const pieces = [text().slice(0, 120), '{"v":2', '"kind":"command"', "null", "true", "1e999"];
    for (let i = 0; i < 400; i++) {
      let t = "";
      const n = Math.floor(Math.random() * 60);
      for (let j = 0; j < n; j++) {
        t += Math.random() < 0.1
          ? (pieces[Math.floor(Math.random() * pieces.length)] ?? "")
          : alphabet.charAt(Math.floor(Math.random() * alphabet.length));
      }
      expect(() => openSealed(hub, t, 0, fromDevice)).toThrow(EnvelopeError);
      expect(() => openContent(seed(9), expectEvent(hub, 1), t)).toThrow(EnvelopeError);
    }
  });

  test("changing any one character never yields another accepted message", () => {
    const sealed = seal(device, pub(hub), command(0), utf8("the prompt"));
    const k = randomBytes(32);
    const content = sealContent(hub, k, "event", COMMAND, 1, utf8("the output"));
    const replacements = "Aa0_-9zZ";
    for (const [t, plain] of [[sealed, "the prompt"], [content, "the output"]] as const) {
      for (let i = 0; i < t.length; i++) {
        const r = replacements.charAt(i % replacements.length);
        const tampered = t.slice(0, i) + r + t.slice(i + 1);
        if (tampered === t) continue;
        for (const open of [
          () => openSealed(hub, tampered, 0, fromDevice),
          () => openContent(k, expectEvent(hub, 1), tampered),
        ]) {
          try {
            const out = open();
            const bytes = out instanceof Uint8Array ? out : out.plaintext;
            expect(new TextDecoder().decode(bytes)).toBe(plain);
          } catch (e) {
            expect(e).toBeInstanceOf(EnvelopeError);
          }
        }
      }
    }
  });
});

describe("sealing refuses what the other side would refuse", () => {
  test("header integers out of bounds", () => {
    for (const [h, message] of [
      [command(0, MAX_SAFE_INTEGER + 1), "malformed envelope: seq is over 2^53 - 1"],
      [command(MAX_SAFE_INTEGER + 1), "malformed envelope: expires_at_ms is over 2^53 - 1"],
      [command(0, -1), "malformed envelope: seq is not a non-negative integer"],
      [command(1.5), "malformed envelope: expires_at_ms is not a non-negative integer"],
    ] as const) {
      expect(refusal(() => seal(device, pub(hub), h, utf8("p"))).message).toBe(message);
    }
    expect(refusal(() => sealContent(hub, seed(5), "event", COMMAND, 2 ** 53, utf8("p"))).message).toBe(
      "malformed envelope: seq is over 2^53 - 1",
    );
  });

  test("a recipient that is not a key", () => {
    for (const r of ["", "00", pub(hub).toUpperCase(), "ff".repeat(32)]) {
      expect(refusal(() => seal(device, r, command(0), utf8("p"))).message).toBe(
        "malformed envelope: recipient key is not a valid ed25519 key",
      );
    }
  });

  test("a plaintext over the limit", () => {
    const big = new Uint8Array(MAX_PLAINTEXT + 1);
    expect(refusal(() => seal(device, pub(hub), command(0), big)).message).toBe(
      `envelope of ${MAX_PLAINTEXT + 1} bytes is over the limit`,
    );
    expect(refusal(() => sealContent(hub, seed(5), "event", COMMAND, 1, big)).code).toBe("too_large");
  });

  test("a context with a lone surrogate", () => {
    expect(
      refusal(() => seal(device, pub(hub), { ...command(0), context: "a\ud800" }, utf8("p"))).code,
    ).toBe("malformed");
  });

  test("a largest plaintext seals and opens", () => {
    const big = randomBytes(MAX_PLAINTEXT);
    const text = sealContent(hub, seed(5), "event", COMMAND, 1, big);
    expect(new TextEncoder().encode(text).length).toBeLessThanOrEqual(MAX_ENVELOPE);
    expect(openContent(seed(5), expectEvent(hub, 1), text)).toEqual(big);
  });
});

describe("content keys", () => {
  const k = randomBytes(32);
  const wrapped = wrapContentKey(hub, pub(device), COMMAND, k);

  test("unwrap only for their device, command and hub", () => {
    expect(unwrapContentKey(device, pub(hub), COMMAND, wrapped)).toEqual(k);
    expect(refusal(() => unwrapContentKey(otherDevice, pub(hub), COMMAND, wrapped)).code).toBe("not_for_us");
    expect(refusal(() => unwrapContentKey(device, pub(hub), OTHER_COMMAND, wrapped)).message).toBe(
      `spliced envelope: it belongs to command ${COMMAND}, not ${OTHER_COMMAND}`,
    );
    expect(refusal(() => unwrapContentKey(device, pub(otherHub), COMMAND, wrapped)).message).toBe(
      `envelope sender ${pub(hub).slice(0, 10)} is not a paired device`,
    );
  });

  test("never expire", () => {
    expect(JSON.parse(wrapped)).toMatchObject({ kind: "content_key", expires_at_ms: 0, seq: 0 });
  });

  test("a command sealed by the hub is not a content key", () => {
    const cmd = seal(hub, pub(device), command(0), new Uint8Array(32).fill(7));
    expect(refusal(() => unwrapContentKey(device, pub(hub), COMMAND, cmd)).message).toBe(
      "spliced envelope: kind command where kind content_key belongs",
    );
  });

  test("a content key is 32 bytes", () => {
    const short = seal(hub, pub(device), { kind: "content_key", context: COMMAND, seq: 0, expiresAtMs: 0 }, new Uint8Array(31));
    expect(refusal(() => unwrapContentKey(device, pub(hub), COMMAND, short)).message).toBe(
      "malformed envelope: a content key is 32 bytes",
    );
  });
});

describe("content envelopes", () => {
  const k = randomBytes(32);
  const event = sealContent(hub, k, "event", COMMAND, 3, utf8("out"));

  test("round trip: any plaintext, any seq", () => {
    for (let i = 0; i < 30; i++) {
      const plaintext = randomBytes(Math.floor(Math.random() * 2048));
      const seq = 1 + Math.floor(Math.random() * (MAX_SAFE_INTEGER - 1));
      const text = sealContent(hub, k, "event", COMMAND, seq, plaintext);
      expect(openContent(k, expectEvent(hub, seq), text)).toEqual(plaintext);
    }
    const prompt = sealContent(hub, k, "prompt", COMMAND, 0, utf8("{}"));
    expect(openContent(k, { kind: "prompt", hub: pub(hub), context: COMMAND, seq: 0 }, prompt)).toEqual(utf8("{}"));
  });

  test("the fields are in the spec's order", () => {
    expect(Object.keys(JSON.parse(event) as object)).toEqual(["v", "kind", "hub", "context", "seq", "nonce", "ct", "sig"]);
  });

  test("bound to kind, hub, command and seq", () => {
    const cases: [ContentHeader, string][] = [
      [expectEvent(hub, 4), "spliced envelope: it carries seq 3 where seq 4 belongs"],
      [expectEvent(hub, 3, OTHER_COMMAND), `spliced envelope: it belongs to command ${COMMAND}, not ${OTHER_COMMAND}`],
      [{ ...expectEvent(hub, 3), kind: "prompt" }, "spliced envelope: kind event where kind prompt belongs"],
      [expectEvent(otherHub, 3), "spliced envelope: it names another hub as its signer"],
    ];
    for (const [expected, message] of cases) {
      expect(refusal(() => openContent(k, expected, event)).message).toBe(message);
    }
  });

  test("the checks come in the spec's order: kind, hub, command, seq", () => {
    const all: ContentHeader = { kind: "prompt", hub: pub(otherHub), context: OTHER_COMMAND, seq: 9 };
    expect(refusal(() => openContent(k, all, event)).code).toBe("wrong_kind");
    expect(refusal(() => openContent(k, { ...all, kind: "event" }, event)).code).toBe("wrong_signer");
    expect(refusal(() => openContent(k, { ...all, kind: "event", hub: pub(hub) }, event)).code).toBe("wrong_command");
    expect(refusal(() => openContent(k, { ...expectEvent(hub, 9) }, event)).code).toBe("wrong_seq");
  });

  test("another hub's signature over a header naming this hub is forged", () => {
    const forged = sealContent(otherHub, k, "event", COMMAND, 3, utf8("evil"));
    const spliced = edit(event, (o) => {
      const f = JSON.parse(forged) as Record<string, unknown>;
      o["ct"] = f["ct"];
      o["nonce"] = f["nonce"];
      o["sig"] = f["sig"];
    });
    expect(refusal(() => openContent(k, expectEvent(hub, 3), spliced)).message).toBe(
      "forged envelope: the signature does not match its signer and contents",
    );
  });

  test("a device holding the key cannot forge an event: it has no hub signature", () => {
    // Encrypt a header naming the hub under the shared key, sign with the device's key.
    const wire = { v: 2, kind: "event" as const, hub: pub(hub), context: COMMAND, seq: 4, nonce: base64urlEncode(randomBytes(12)), ct: "", sig: "" };
    const header = contentHeaderBytes(wire);
    const ct = encrypt(k, new Uint8Array(12), header, utf8("evil"));
    wire.ct = base64urlEncode(ct);
    wire.sig = base64urlEncode(sign(device, header, ct));
    expect(refusal(() => openContent(k, expectEvent(hub, 4), JSON.stringify(wire))).code).toBe("bad_signature");
  });

  test("the right signature under another key does not decrypt", () => {
    expect(refusal(() => openContent(randomBytes(32), expectEvent(hub, 3), event)).message).toBe(
      "envelope does not decrypt with this key",
    );
  });

  test("a wrong-size nonce, signed, is malformed after the signature", () => {
    const wire = { v: 2, kind: "event" as const, hub: pub(hub), context: COMMAND, seq: 5, nonce: base64urlEncode(randomBytes(8)), ct: "", sig: "" };
    const header = contentHeaderBytes(wire);
    const ct = encrypt(k, new Uint8Array(12), header, utf8("x"));
    wire.ct = base64urlEncode(ct);
    wire.sig = base64urlEncode(sign(hub, header, ct));
    expect(refusal(() => openContent(k, expectEvent(hub, 5), JSON.stringify(wire))).message).toBe(
      "malformed envelope: nonce is not 12 bytes",
    );
  });

  test("a sealed envelope is not a content envelope", () => {
    const sealed = seal(device, pub(hub), command(0), utf8("p"));
    expect(refusal(() => openContent(k, expectEvent(hub, 0), sealed)).message).toMatch(
      /^malformed envelope: unknown field `sender`/,
    );
  });
});
