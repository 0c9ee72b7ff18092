// The encodings under the envelopes: strict base64url, strict JSON, hex and UTF-8 helpers.
import { describe, expect, test } from "vitest";

import { base64urlDecode, base64urlEncode } from "../src/crypto/base64url";
import { concat, fromUtf8, isWellFormed, parseHex, randomBytes, toHex, utf8, utf8Length } from "../src/crypto/bytes";
import { FieldReader, JsonError, parseJson, type Json } from "../src/crypto/json";

describe("base64url", () => {
  test("RFC 4648 test vectors, url alphabet, no padding", () => {
    const cases: [string, string][] = [
      ["", ""],
      ["f", "Zg"],
      ["fo", "Zm8"],
      ["foo", "Zm9v"],
      ["foob", "Zm9vYg"],
      ["fooba", "Zm9vYmE"],
      ["foobar", "Zm9vYmFy"],
    ];
    for (const [plain, encoded] of cases) {
      expect(base64urlEncode(utf8(plain))).toBe(encoded);
      expect(base64urlDecode(encoded)).toEqual(utf8(plain));
    }
    expect(base64urlEncode(new Uint8Array([0xfb, 0xff, 0xfe]))).toBe("-__-");
  });

  test("round trips random bytes, as Node's encoder writes them", () => {
    for (let n = 0; n < 200; n++) {
      const b = randomBytes(n);
      const text = base64urlEncode(b);
      expect(text).toBe(Buffer.from(b).toString("base64url"));
      expect(base64urlDecode(text)).toEqual(b);
    }
  });

  test.each([
    ["padding", "Zg=="],
    ["standard alphabet", "ab+/"],
    ["whitespace", "Zm9v Yg"],
    ["a length of 1 mod 4", "Zm9vY"],
    ["non-zero trailing bits", "Zh"],
    ["non-zero trailing bits (2 bytes)", "Zm9"],
    ["non-ASCII", "Zm9é"],
  ])("refuses %s", (_, text) => {
    expect(base64urlDecode(text)).toBeUndefined();
  });
});

describe("hex and UTF-8", () => {
  test("hex is lower case only, of the given length", () => {
    expect(parseHex("00ff10")).toEqual(new Uint8Array([0, 255, 16]));
    expect(parseHex("00FF10")).toBeUndefined();
    expect(parseHex("0")).toBeUndefined();
    expect(parseHex("zz")).toBeUndefined();
    expect(parseHex("00ff", 3)).toBeUndefined();
    expect(toHex(new Uint8Array([0, 255, 16]))).toBe("00ff10");
  });

  test("UTF-8 length counts bytes as TextEncoder writes them", () => {
    for (const s of ["", "abc", "é", "€", "😀", "a\ud800b", "\udc00", "x😀€é"]) {
      expect(utf8Length(s)).toBe(utf8(s).length);
    }
  });

  test("well-formed text has no lone surrogate", () => {
    expect(isWellFormed("ok 😀")).toBe(true);
    expect(isWellFormed("\ud800")).toBe(false);
    expect(isWellFormed("\udc00x")).toBe(false);
    expect(isWellFormed("\ude00\ud83d")).toBe(false);
  });

  test("invalid UTF-8 is refused, a BOM kept", () => {
    expect(() => fromUtf8(new Uint8Array([0xc3]))).toThrow();
    expect(fromUtf8(new Uint8Array([0xef, 0xbb, 0xbf, 0x41]))).toBe("\ufeffA");
  });

  test("concat", () => {
    expect(concat(new Uint8Array([1]), new Uint8Array(), new Uint8Array([2, 3]))).toEqual(new Uint8Array([1, 2, 3]));
  });

  test("randomBytes fills past the 64 KiB getRandomValues limit", () => {
    const b = randomBytes(200_000);
    expect(b.length).toBe(200_000);
    expect(b.subarray(190_000).some((x) => x !== 0)).toBe(true);
  });
});

/** A parsed value back to plain JS, to compare with JSON.parse. */
function plain(v: Json): unknown {
  switch (v.type) {
    case "null":
      return null;
    case "bool":
    case "string":
      return v.value;
    case "number":
      return Number(v.text);
    case "array":
      return v.items.map(plain);
    case "object":
      return Object.fromEntries([...v.entries].map(([k, x]) => [k, plain(x)]));
  }
}

describe("strict JSON", () => {
  test.each([
    '{"a":1,"b":[true,false,null],"c":{"d":"e"}}',
    ' \t\n\r{ "a" : [ 1 , -2.5e3 , 0.0 ] } ',
    '"esc \\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\ud83d\\ude00"',
    '"raw é 😀 \u2028"',
    "[]",
    "{}",
    "0",
    "-0",
    "1E+2",
  ])("reads %s as JSON.parse does", (text) => {
    expect(plain(parseJson(text))).toEqual(JSON.parse(text));
  });

  test("keeps numbers as their text and keys in order", () => {
    const v = parseJson('{"z":1.0,"a":9007199254740993}');
    expect(v.type === "object" && [...v.entries.keys()]).toEqual(["z", "a"]);
    expect(v.type === "object" && v.entries.get("a")).toEqual({ type: "number", text: "9007199254740993" });
  });

  test.each([
    ["duplicate key", '{"a":1,"a":1}', "duplicate field `a` at line 1 column 8"],
    ["trailing characters", "{} {}", "trailing characters at line 1 column 4"],
    ["empty", "", "EOF while parsing a value at line 1 column 1"],
    ["unquoted key", "{a:1}", "key must be a string at line 1 column 2"],
    ["trailing comma", "[1,]", "expected value at line 1 column 4"],
    ["leading zero", "01", "invalid number at line 1 column 2"],
    ["raw control character", '"a\u0001"', "control character (\\u0000-\\u001F) found while parsing a string at line 1 column 3"],
    ["lone escaped surrogate", '"\\ud800"', "lone leading surrogate in hex escape at line 1 column 8"],
    ["lone trailing surrogate", '"\\udc00"', "lone trailing surrogate in hex escape at line 1 column 8"],
    ["raw lone surrogate", '"\ud800"', "lone surrogate in the text at line 1 column 2"],
    ["bad escape", '"\\x"', "invalid escape at line 1 column 3"],
    ["unterminated string", '"abc', "EOF while parsing a string at line 1 column 5"],
    ["unterminated object", '{"a":1', "EOF while parsing an object at line 1 column 7"],
    ["a BOM", "\ufeff{}", "expected value at line 1 column 1"],
    ["NaN", "NaN", "expected value at line 1 column 1"],
    ["a line further", '{\n"a":\n}', "expected value at line 3 column 1"],
  ])("refuses %s", (_, text, message) => {
    expect(() => parseJson(text)).toThrow(new JsonError(message));
  });

  test("refuses nesting deeper than serde_json's limit", () => {
    expect(() => parseJson("[".repeat(129) + "]".repeat(129))).toThrow(/recursion limit exceeded/);
    expect(() => parseJson("[".repeat(128) + "]".repeat(128))).not.toThrow();
  });
});

describe("field reader", () => {
  const reader = (text: string, known: string[], deny = true) =>
    new FieldReader(parseJson(text), "struct T", known, deny);

  test("reads typed fields; null is absent for optional ones", () => {
    const r = reader('{"s":"x","n":5,"b":true,"o":null}', ["s", "n", "b", "o"]);
    expect(r.string("s")).toBe("x");
    expect(r.uint("n", "u32")).toBe(5n);
    expect(r.bool("b")).toBe(true);
    expect(r.optString("o")).toBeUndefined();
    expect(r.optUint("missing", "u64")).toBeUndefined();
  });

  test("messages like serde's", () => {
    expect(() => reader('{"x":1}', ["a", "b", "c"])).toThrow("unknown field `x`, expected one of `a`, `b`, `c`");
    expect(() => reader('{"x":1}', ["a", "b"])).toThrow("unknown field `x`, expected `a` or `b`");
    expect(() => reader('{"x":1}', ["a"])).toThrow("unknown field `x`, expected `a`");
    expect(() => reader("[1]", ["a"])).toThrow("invalid type: sequence, expected struct T");
    expect(() => reader("{}", ["a"]).string("a")).toThrow("missing field `a`");
    expect(() => reader('{"a":1}', ["a"]).string("a")).toThrow("invalid type: integer `1`, expected a string");
    expect(() => reader('{"a":-1}', ["a"]).uint("a", "u64")).toThrow("invalid value: integer `-1`, expected u64");
    expect(() => reader('{"a":1.5}', ["a"]).uint("a", "u64")).toThrow("invalid type: floating point `1.5`, expected u64");
    expect(() => reader('{"a":256}', ["a"]).uint("a", "u8")).toThrow("invalid value: integer `256`, expected u8");
    expect(() => reader('{"a":"b"}', ["a"]).variant("a", ["x", "y"])).toThrow("unknown variant `b`, expected `x` or `y`");
  });

  test("unknown fields pass when the struct allows them", () => {
    expect(reader('{"a":"x","z":1}', ["a"], false).string("a")).toBe("x");
  });

  test("exact integers up to u64", () => {
    expect(reader('{"a":18446744073709551615}', ["a"]).uint("a", "u64")).toBe(18446744073709551615n);
    expect(() => reader('{"a":18446744073709551616}', ["a"]).uint("a", "u64")).toThrow(/expected u64/);
  });
});
