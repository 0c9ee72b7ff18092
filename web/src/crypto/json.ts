/**
 * A strict JSON reader for envelopes and payloads, so that this side refuses what the Rust
 * side (serde_json into typed structs) refuses, where `JSON.parse` would quietly accept it:
 * duplicate keys (`JSON.parse` keeps the last), a fractional or exponent spelling of an
 * integer (`1.0`, `1e0`), integers past what a double holds exactly, lone surrogates.
 *
 * Numbers stay as their source text; {@link FieldReader} turns them into integers with bounds.
 */

/** A parsed JSON value. Objects keep their keys in document order. */
export type Json =
  | { readonly type: "null" }
  | { readonly type: "bool"; readonly value: boolean }
  | { readonly type: "number"; readonly text: string }
  | { readonly type: "string"; readonly value: string }
  | { readonly type: "array"; readonly items: readonly Json[] }
  | { readonly type: "object"; readonly entries: ReadonlyMap<string, Json> };

/** A JSON object (what every envelope and payload is). */
export type JsonObject = Extract<Json, { type: "object" }>;

/** Why a text is not the JSON it must be; the message reads like serde_json's. */
export class JsonError extends Error {
  override readonly name = "JsonError";
}

/** serde_json's default recursion limit. */
const MAX_DEPTH = 128;

/**
 * Parses `text` as one JSON value (RFC 8259), refusing duplicate object keys and lone
 * surrogates.
 * @throws JsonError with a message ending in `at line L column C`.
 */
export function parseJson(text: string): Json {
  return new Parser(text).document();
}

class Parser {
  private at = 0;
  private depth = 0;

  constructor(private readonly text: string) {}

  document(): Json {
    this.skipSpace();
    const value = this.value();
    this.skipSpace();
    if (this.at < this.text.length) this.fail("trailing characters");
    return value;
  }

  private fail(what: string, at = this.at): never {
    let line = 1;
    let column = 0;
    for (let i = 0; i < at && i < this.text.length; i++) {
      if (this.text.charCodeAt(i) === 0x0a) {
        line++;
        column = 0;
      } else column++;
    }
    throw new JsonError(`${what} at line ${line} column ${column + 1}`);
  }

  private skipSpace(): void {
    for (;;) {
      const c = this.text.charCodeAt(this.at);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) this.at++;
      else return;
    }
  }

  private value(): Json {
    if (this.at >= this.text.length) this.fail("EOF while parsing a value");
    const c = this.text.charAt(this.at);
    switch (c) {
      case "{":
        return this.nested(() => this.object());
      case "[":
        return this.nested(() => this.array());
      case '"':
        return { type: "string", value: this.string() };
      case "t":
        return this.literal("true", { type: "bool", value: true });
      case "f":
        return this.literal("false", { type: "bool", value: false });
      case "n":
        return this.literal("null", { type: "null" });
      default:
        if (c === "-" || (c >= "0" && c <= "9")) return this.number();
        return this.fail("expected value");
    }
  }

  private nested(parse: () => Json): Json {
    if (++this.depth > MAX_DEPTH) this.fail("recursion limit exceeded");
    const value = parse();
    this.depth--;
    return value;
  }

  private literal(word: string, value: Json): Json {
    if (this.text.startsWith(word, this.at)) {
      this.at += word.length;
      return value;
    }
    return this.fail("expected value");
  }

  private object(): Json {
    this.at++; // {
    const entries = new Map<string, Json>();
    this.skipSpace();
    if (this.text.charAt(this.at) === "}") {
      this.at++;
      return { type: "object", entries };
    }
    for (;;) {
      this.skipSpace();
      if (this.at >= this.text.length) this.fail("EOF while parsing an object");
      if (this.text.charAt(this.at) !== '"') this.fail("key must be a string");
      const keyAt = this.at;
      const key = this.string();
      if (entries.has(key)) this.fail(`duplicate field \`${key}\``, keyAt);
      this.skipSpace();
      if (this.text.charAt(this.at) !== ":") {
        this.fail(this.at >= this.text.length ? "EOF while parsing an object" : "expected `:`");
      }
      this.at++;
      this.skipSpace();
      entries.set(key, this.value());
      this.skipSpace();
      const next = this.text.charAt(this.at++);
      if (next === "}") return { type: "object", entries };
      if (next !== ",") {
        this.fail(next === "" ? "EOF while parsing an object" : "expected `,` or `}`", this.at - 1);
      }
    }
  }

  private array(): Json {
    this.at++; // [
    const items: Json[] = [];
    this.skipSpace();
    if (this.text.charAt(this.at) === "]") {
      this.at++;
      return { type: "array", items };
    }
    for (;;) {
      this.skipSpace();
      items.push(this.value());
      this.skipSpace();
      const next = this.text.charAt(this.at++);
      if (next === "]") return { type: "array", items };
      if (next !== ",") {
        this.fail(next === "" ? "EOF while parsing a list" : "expected `,` or `]`", this.at - 1);
      }
    }
  }

  private number(): Json {
    const match = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/.exec(
      this.text.slice(this.at, this.at + 4096),
    );
    if (match === null) return this.fail("invalid number");
    const text = match[0];
    const after = this.text.charAt(this.at + text.length);
    if (after >= "0" && after <= "9") this.fail("invalid number", this.at + text.length);
    this.at += text.length;
    return { type: "number", text };
  }

  private string(): string {
    this.at++; // "
    let out = "";
    let runStart = this.at;
    for (;;) {
      if (this.at >= this.text.length) this.fail("EOF while parsing a string");
      const c = this.text.charCodeAt(this.at);
      if (c === 0x22) {
        out += this.text.slice(runStart, this.at);
        this.at++;
        return out;
      }
      if (c < 0x20) this.fail("control character (\\u0000-\\u001F) found while parsing a string");
      if (c >= 0xd800 && c <= 0xdfff) {
        const d = this.text.charCodeAt(this.at + 1);
        if (c > 0xdbff || !(d >= 0xdc00 && d <= 0xdfff)) this.fail("lone surrogate in the text");
        this.at += 2;
        continue;
      }
      if (c !== 0x5c) {
        this.at++;
        continue;
      }
      out += this.text.slice(runStart, this.at);
      out += this.escape();
      runStart = this.at;
    }
  }

  /** One escape sequence at `\`, leaving `at` after it. */
  private escape(): string {
    const c = this.text.charAt(this.at + 1);
    this.at += 2;
    switch (c) {
      case '"':
        return '"';
      case "\\":
        return "\\";
      case "/":
        return "/";
      case "b":
        return "\b";
      case "f":
        return "\f";
      case "n":
        return "\n";
      case "r":
        return "\r";
      case "t":
        return "\t";
      case "u": {
        const high = this.hex4();
        if (high < 0xd800 || high > 0xdfff) return String.fromCharCode(high);
        if (high > 0xdbff) this.fail("lone trailing surrogate in hex escape");
        if (!this.text.startsWith("\\u", this.at)) this.fail("lone leading surrogate in hex escape");
        this.at += 2;
        const low = this.hex4();
        if (low < 0xdc00 || low > 0xdfff) this.fail("lone leading surrogate in hex escape");
        return String.fromCharCode(high, low);
      }
      default:
        return this.fail(c === "" ? "EOF while parsing a string" : "invalid escape", this.at - 1);
    }
  }

  private hex4(): number {
    const digits = this.text.slice(this.at, this.at + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(digits)) this.fail("invalid escape");
    this.at += 4;
    return parseInt(digits, 16);
  }
}

/** How serde names a value that is not what it expected. */
export function describe(value: Json): string {
  switch (value.type) {
    case "null":
      return "null";
    case "bool":
      return `boolean \`${String(value.value)}\``;
    case "number":
      return isIntegerText(value.text)
        ? `integer \`${value.text}\``
        : `floating point \`${value.text}\``;
    case "string":
      return `string ${JSON.stringify(value.value)}`;
    case "array":
      return "sequence";
    case "object":
      return "map";
  }
}

function isIntegerText(text: string): boolean {
  return /^-?(?:0|[1-9][0-9]*)$/.test(text) && text !== "-0";
}

/** The largest value of each unsigned integer type the readers accept. */
export const UINT_MAX = { u8: 0xffn, u32: 0xffff_ffffn, u64: 0xffff_ffff_ffff_ffffn } as const;

/** JavaScript's `Number.MAX_SAFE_INTEGER`, the bound of every integer on the wire. */
export const MAX_SAFE_INTEGER = Number.MAX_SAFE_INTEGER;

/** The list serde writes after `expected` for a set of names. */
function oneOf(names: readonly string[]): string {
  const quoted = names.map((n) => `\`${n}\``);
  if (quoted.length === 0) return "nothing";
  if (quoted.length === 1) return quoted[0] ?? "";
  if (quoted.length === 2) return `${quoted[0] ?? ""} or ${quoted[1] ?? ""}`;
  return `one of ${quoted.join(", ")}`;
}

/**
 * Reads the fields of one JSON object as a serde struct does: required and optional fields
 * with their types, unknown fields refused when the struct denies them (in document order,
 * before missing ones), `null` read as absent for optional fields.
 */
export class FieldReader {
  private readonly entries: ReadonlyMap<string, Json>;

  /**
   * @param value the JSON value that must be an object.
   * @param what what the object is, for a non-object's message (`struct SealedWire`).
   * @param known the fields of the struct, in declaration order.
   * @param denyUnknown whether another field is refused.
   * @throws JsonError when `value` is not an object, or has an unknown field.
   */
  constructor(
    value: Json,
    what: string,
    known: readonly string[],
    denyUnknown: boolean,
  ) {
    if (value.type !== "object") {
      throw new JsonError(`invalid type: ${describe(value)}, expected ${what}`);
    }
    this.entries = value.entries;
    if (denyUnknown) {
      for (const key of value.entries.keys()) {
        if (!known.includes(key)) {
          throw new JsonError(`unknown field \`${key}\`, expected ${oneOf(known)}`);
        }
      }
    }
  }

  /** Whether the field is present (and not `null`). */
  has(name: string): boolean {
    const v = this.entries.get(name);
    return v !== undefined && v.type !== "null";
  }

  /** The raw value of a field, if present. */
  raw(name: string): Json | undefined {
    return this.entries.get(name);
  }

  private required(name: string): Json {
    const v = this.entries.get(name);
    if (v === undefined) throw new JsonError(`missing field \`${name}\``);
    return v;
  }

  /** A required string field. */
  string(name: string): string {
    return asString(this.required(name));
  }

  /** An optional string field (`null` or absent: `undefined`). */
  optString(name: string): string | undefined {
    return this.has(name) ? asString(this.required(name)) : undefined;
  }

  /** A required boolean field. */
  bool(name: string): boolean {
    const v = this.required(name);
    if (v.type !== "bool") throw new JsonError(`invalid type: ${describe(v)}, expected a boolean`);
    return v.value;
  }

  /** A required unsigned integer field of `type` (exact, as a bigint). */
  uint(name: string, type: keyof typeof UINT_MAX): bigint {
    return asUint(this.required(name), type);
  }

  /** An optional unsigned integer field. */
  optUint(name: string, type: keyof typeof UINT_MAX): bigint | undefined {
    return this.has(name) ? asUint(this.required(name), type) : undefined;
  }

  /** A required field among the names of an enum (`unknown variant …` otherwise). */
  variant<T extends string>(name: string, variants: readonly T[]): T {
    const value = this.string(name);
    const found = variants.find((v) => v === value);
    if (found === undefined) {
      throw new JsonError(`unknown variant \`${value}\`, expected ${oneOf(variants)}`);
    }
    return found;
  }
}

function asString(v: Json): string {
  if (v.type !== "string") throw new JsonError(`invalid type: ${describe(v)}, expected a string`);
  return v.value;
}

function asUint(v: Json, type: keyof typeof UINT_MAX): bigint {
  if (v.type !== "number" || !isIntegerText(v.text)) {
    throw new JsonError(`invalid type: ${describe(v)}, expected ${type}`);
  }
  const n = BigInt(v.text);
  if (n < 0n || n > UINT_MAX[type]) {
    throw new JsonError(`invalid value: integer \`${v.text}\`, expected ${type}`);
  }
  return n;
}
