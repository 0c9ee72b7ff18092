// Payloads v2 against proto/vectors/payload-v2.json: each vector's values written give exactly
// its json, its json read gives those values, each refusal is refused; then the rules one by one.
import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";

import {
  PayloadError,
  parseCommand,
  parseEvent,
  parsePairingAnswer,
  parsePairingRequest,
  payloadBytes,
  serializeCommand,
  serializeEvent,
  serializePairingAnswer,
  serializePairingRequest,
  type CommandPayload,
  type EventPayload,
  type PairingAnswer,
  type PairingRequest,
} from "../src/crypto/payload";

interface Vector {
  name: string;
  json: string;
}
interface Refusal extends Vector {
  type: "command" | "event" | "pairing_request" | "pairing_answer";
}
interface Vectors {
  description: string;
  commands: Vector[];
  events: Vector[];
  pairing_requests: Vector[];
  pairing_answers: Vector[];
  refusals: Refusal[];
}

const file = new URL("../../proto/vectors/payload-v2.json", import.meta.url);
const vectors = JSON.parse(readFileSync(file, "utf8")) as Vectors;

const ID = "0b9f7a52-6a3c-4f3e-9c55-3f1c0d2e8a11";
const DEVICE = "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394";

/** The values of every vector, by name, as this side's types hold them. */
const COMMANDS: Record<string, CommandPayload> = {
  minimal: { commandId: ID, content: "Write a haiku about peer-to-peer networking" },
  every_field: {
    commandId: ID,
    content: "Write a haiku about peer-to-peer networking",
    provider: "openai-codex",
    agentId: "main",
    sessionId: "s1",
    channelId: "phone",
    model: "gpt-5-codex",
    sourceDeviceId: DEVICE,
    createdAtMs: 1800000000000,
    expiresAtMs: 1800003600000,
  },
  unicode: {
    commandId: "5d1c2b7e-0f4a-4e8b-9a61-7c3e2d1f0a99",
    content: 'Résume «ça» "quoted"\nline two ✨',
  },
};

const EVENTS: Record<string, EventPayload> = {
  queued: { seq: 1, timeMs: 1800000000001, kind: "queued", position: 1 },
  started: { seq: 2, timeMs: 1800000000002, kind: "started", attempt: 1 },
  started_with_history: {
    seq: 2,
    timeMs: 1800000000002,
    kind: "started",
    attempt: 1,
    historyTurns: 3,
    historyDropped: 2,
    note: "2 earlier turn(s) of this session left out: the agent's history budget is 3 turn(s) and 262144 bytes (history_turns, history_bytes)",
  },
  output: { seq: 3, timeMs: 1800000000003, kind: "output", text: "Packets find their way ✨\n" },
  retrying: {
    seq: 4,
    timeMs: 1800000000004,
    kind: "retrying",
    attempt: 2,
    delayMs: 250,
    reason: "anthropic: HTTP 529: overloaded",
  },
  finished_completed: {
    seq: 5,
    timeMs: 1800000000005,
    kind: "finished",
    status: "completed",
    error: "",
    attempts: 2,
    executedAtMs: 1800000000004,
  },
  finished_expired: {
    seq: 2,
    timeMs: 1800000000005,
    kind: "finished",
    status: "expired",
    error: "expired before it could start",
    attempts: 0,
  },
};

const PAIRING_REQUESTS: Record<string, PairingRequest> = {
  phone: { secret: "5a".repeat(32), deviceName: "phone" },
};

const PAIRING_ANSWERS: Record<string, PairingAnswer> = {
  accepted: { accepted: true, hubName: "desk" },
  refused: {
    accepted: false,
    reason: "the pairing secret was already used; run `helix-hub pair` on the hub for a new ticket",
  },
};

function valuesOf<T>(table: Record<string, T>, v: Vector): T {
  const value = table[v.name];
  if (value === undefined) throw new Error(`no values for vector ${v.name}: add them to this test`);
  return value;
}

function refused(run: () => unknown): PayloadError {
  try {
    run();
  } catch (e) {
    if (e instanceof PayloadError) return e;
    throw e;
  }
  throw new Error("accepted");
}

describe.each([
  ["commands", vectors.commands, COMMANDS, serializeCommand, parseCommand],
  ["events", vectors.events, EVENTS, serializeEvent, parseEvent],
  ["pairing requests", vectors.pairing_requests, PAIRING_REQUESTS, serializePairingRequest, parsePairingRequest],
  ["pairing answers", vectors.pairing_answers, PAIRING_ANSWERS, serializePairingAnswer, parsePairingAnswer],
] as const)("%s vectors", (_, list, table, write, read) => {
  test.each(list.map((v) => [v.name, v] as const))("%s: written from its values exactly", (_, v) => {
    const value = valuesOf<unknown>(table, v);
    expect((write as (x: unknown) => string)(value)).toBe(v.json);
  });

  test.each(list.map((v) => [v.name, v] as const))("%s: read to its values, as text and bytes", (_, v) => {
    const value = valuesOf<unknown>(table, v);
    expect(read(v.json)).toEqual(value);
    expect(read(payloadBytes(v.json))).toEqual(value);
  });
});

describe("payload refusal vectors", () => {
  const readers = {
    command: parseCommand,
    event: parseEvent,
    pairing_request: parsePairingRequest,
    pairing_answer: parsePairingAnswer,
  } as const;

  test.each(vectors.refusals.map((r) => [r.name, r] as const))("%s is refused", (_, r) => {
    const e = refused(() => readers[r.type](r.json));
    expect(e.message.startsWith("malformed payload: ")).toBe(true);
  });

  test("the refusals say why, in the Rust side's words where it has them", () => {
    const message = (name: string) => {
      const r = vectors.refusals.find((x) => x.name === name);
      if (r === undefined) throw new Error(name);
      return refused(() => readers[r.type](r.json)).message;
    };
    expect(message("unknown_provider")).toBe(
      'malformed payload: provider "openai" is not anthropic, openai-codex or google-gemini',
    );
    expect(message("unknown_field")).toMatch(/^malformed payload: unknown field `sudo`/);
    expect(message("no_content")).toMatch(/^malformed payload: missing field `content`/);
    expect(message("unknown_status")).toBe(
      'malformed payload: status "done" is not completed, failed, cancelled or expired',
    );
    expect(message("negative_seq")).toMatch(/^malformed payload: invalid value: integer `-1`, expected u64/);
    expect(message("no_kind")).toMatch(/^malformed payload: no event kind/);
    expect(message("unknown_kind")).toMatch(/^malformed payload: no event kind/);
    expect(message("request_without_secret")).toMatch(/^malformed payload: missing field `secret`/);
    expect(message("answer_unknown_field")).toMatch(/^malformed payload: unknown field `admin`/);
  });
});

describe("commands", () => {
  test("absent optional fields are left out, never null", () => {
    expect(serializeCommand({ commandId: "c", content: "hi", model: undefined })).toBe(
      '{"command_id":"c","content":"hi"}',
    );
  });

  test("null reads as absent (as serde's Option does)", () => {
    expect(parseCommand('{"command_id":"c","content":"x","model":null}')).toEqual({ commandId: "c", content: "x" });
  });

  test.each([
    ["fractional time", '{"command_id":"c","content":"x","created_at_ms":1.5}'],
    ["integral float time", '{"command_id":"c","content":"x","created_at_ms":1.0}'],
    ["exponent time", '{"command_id":"c","content":"x","created_at_ms":1e3}'],
    ["negative time", '{"command_id":"c","content":"x","expires_at_ms":-1}'],
    ["time past 2^53 - 1", '{"command_id":"c","content":"x","expires_at_ms":9007199254740992}'],
    ["content not a string", '{"command_id":"c","content":5}'],
    ["duplicate key", '{"command_id":"c","content":"x","content":"y"}'],
    ["not an object", '["c","x"]'],
    ["not JSON", "command"],
    ["provider in another case", '{"command_id":"c","content":"x","provider":"Anthropic"}'],
  ])("refuses %s", (_, json) => {
    expect(refused(() => parseCommand(json)).message).toMatch(/^malformed payload: /);
  });

  test("refuses bytes that are not UTF-8", () => {
    expect(refused(() => parseCommand(new Uint8Array([0x7b, 0xff, 0x7d]))).message).toBe(
      "malformed payload: invalid UTF-8",
    );
  });

  test("the writer refuses what the reader would", () => {
    const bad: CommandPayload[] = [
      { commandId: "c", content: "x", createdAtMs: -1 },
      { commandId: "c", content: "x", createdAtMs: 1.5 },
      { commandId: "c", content: "x", expiresAtMs: 2 ** 53 },
      { commandId: "c", content: "x\ud800" },
      { commandId: "c", content: "x", provider: "openai" as "anthropic" },
    ];
    for (const c of bad) expect(refused(() => serializeCommand(c)).message).toMatch(/^malformed payload: /);
  });

  test("round trips awkward text exactly", () => {
    const c: CommandPayload = { commandId: "c", content: '\u0000\u001f"\\/\u2028\u2029😀\ufeff<script>' };
    const json = serializeCommand(c);
    expect(parseCommand(json)).toEqual(c);
    expect(JSON.parse(json)).toEqual({ command_id: "c", content: c.content });
  });
});

describe("events", () => {
  test("without time_ms", () => {
    const e: EventPayload = { seq: 7, kind: "output", text: "x" };
    expect(serializeEvent(e)).toBe('{"seq":7,"output":{"text":"x"}}');
    expect(parseEvent('{"seq":7,"output":{"text":"x"}}')).toEqual(e);
  });

  test("finished: error and attempts default, executed_at_ms optional", () => {
    expect(parseEvent('{"seq":1,"finished":{"status":"failed"}}')).toEqual({
      seq: 1,
      kind: "finished",
      status: "failed",
      error: "",
      attempts: 0,
    });
    expect(serializeEvent({ seq: 1, kind: "finished", status: "cancelled", error: "", attempts: 0 })).toBe(
      '{"seq":1,"finished":{"status":"cancelled","error":"","attempts":0}}',
    );
  });

  test("unknown fields beside the kind, and inside it, are ignored (as the Rust side does)", () => {
    expect(parseEvent('{"seq":1,"later":true,"queued":{"position":2,"eta_ms":5}}')).toEqual({
      seq: 1,
      kind: "queued",
      position: 2,
    });
  });

  test.each([
    ["two kinds (the Rust side would take the first)", '{"seq":1,"queued":{"position":1},"started":{"attempt":1}}'],
    ["a kind that is not an object", '{"seq":1,"output":"x"}'],
    ["a kind as an array", '{"seq":1,"queued":[1]}'],
    ["a missing field inside", '{"seq":1,"retrying":{"attempt":1,"reason":"r"}}'],
    ["a fractional position", '{"seq":1,"queued":{"position":1.0}}'],
    ["a position over u32", '{"seq":1,"queued":{"position":4294967296}}'],
    ["a fractional seq", '{"seq":1.5,"output":{"text":"x"}}'],
    ["no seq", '{"output":{"text":"x"}}'],
    ["a seq past 2^53 - 1", '{"seq":9007199254740992,"output":{"text":"x"}}'],
    ["a null error", '{"seq":1,"finished":{"status":"failed","error":null}}'],
    ["a status in another case", '{"seq":1,"finished":{"status":"Completed"}}'],
  ])("refuses %s", (_, json) => {
    expect(refused(() => parseEvent(json)).message).toMatch(/^malformed payload: /);
  });

  test("the writer refuses what the reader would", () => {
    const bad: EventPayload[] = [
      { seq: -1, kind: "output", text: "x" },
      { seq: 1, kind: "queued", position: 2 ** 32 },
      { seq: 1, kind: "started", attempt: 0.5 },
      { seq: 1, kind: "finished", status: "done" as "failed", error: "", attempts: 0 },
      { seq: 1, kind: "output", text: "\udfff" },
    ];
    for (const e of bad) expect(refused(() => serializeEvent(e)).message).toMatch(/^malformed payload: /);
  });
});

describe("pairing payloads", () => {
  test("an answer with neither name nor reason (the Rust side accepts it)", () => {
    expect(parsePairingAnswer('{"accepted":false}')).toEqual({ accepted: false });
  });

  test.each([
    ["accepted as a string", '{"accepted":"true"}', parsePairingAnswer],
    ["no accepted", '{"hub_name":"x"}', parsePairingAnswer],
    ["a request with an unknown field", '{"secret":"ab","device_name":"p","admin":true}', parsePairingRequest],
    ["a request without a name", '{"secret":"ab"}', parsePairingRequest],
  ] as const)("refuses %s", (_, json, read) => {
    expect(refused(() => read(json)).message).toMatch(/^malformed payload: /);
  });
});
