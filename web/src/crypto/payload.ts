/**
 * Payloads v2: the JSON inside v2 envelopes (docs/protocol.md, "Payloads v2"; Rust:
 * src/cloud_payload.rs; golden vectors: proto/vectors/payload-v2.json).
 *
 * Writers put the fields in the spec's order, leave absent optional fields out (never `null`)
 * and write no spaces, so they produce exactly the hub's text. Readers are as strict as the
 * Rust side: unknown fields refused in commands and pairing payloads, an unknown event kind,
 * provider or status refused, integers only (no negative, fractional or exponent numbers),
 * no duplicate keys. Every refusal is a {@link PayloadError} whose message starts with
 * `malformed payload: `.
 *
 * The TypeScript shapes use camelCase; the wire names are snake_case.
 */

import { fromUtf8, isWellFormed, utf8 } from "./bytes";
import { FieldReader, JsonError, MAX_SAFE_INTEGER, parseJson, UINT_MAX, type Json } from "./json";

/** A provider a command may name. */
export type Provider = "anthropic" | "openai-codex" | "google-gemini";
/** How a command ended. */
export type FinalStatus = "completed" | "failed" | "cancelled" | "expired";

export const PROVIDERS: readonly Provider[] = ["anthropic", "openai-codex", "google-gemini"];
export const FINAL_STATUSES: readonly FinalStatus[] = ["completed", "failed", "cancelled", "expired"];

/**
 * A command: sealed by a device to its hub (kind `command`), and, with the hub's defaults
 * filled in and `sourceDeviceId` set, the prompt every device reads (content kind `prompt`).
 */
export interface CommandPayload {
  /** The command id (a UUID); must equal the envelope's `context`. */
  commandId: string;
  /** The prompt. */
  content: string;
  /** Absent: the agent's provider. */
  provider?: Provider;
  agentId?: string;
  sessionId?: string;
  channelId?: string;
  model?: string;
  /** In a prompt, the device that sent it (the hub's own id for its local listener). */
  sourceDeviceId?: string;
  createdAtMs?: number;
  expiresAtMs?: number;
}

/** A `queued` event: the command waits at `position`. */
export interface QueuedEvent {
  kind: "queued";
  position: number;
}
/** A `started` event: attempt `attempt` began (with how it continues its session). */
export interface StartedEvent {
  kind: "started";
  attempt: number;
  /** Earlier completed turns of the session given to the provider (absent: none). */
  historyTurns?: number;
  /** Earlier completed turns left out by the agent's history budget (absent: none). */
  historyDropped?: number;
  /** What the person should know about how the session continues (absent: nothing). */
  note?: string;
}
/** An `output` event: more of the answer's text. */
export interface OutputEvent {
  kind: "output";
  text: string;
}
/** A `retrying` event: attempt `attempt` failed, the next starts after `delayMs`. */
export interface RetryingEvent {
  kind: "retrying";
  attempt: number;
  delayMs: number;
  reason: string;
}
/** A `finished` event: the command's end (the last event). */
export interface FinishedEvent {
  kind: "finished";
  status: FinalStatus;
  /** Empty when completed. */
  error: string;
  attempts: number;
  executedAtMs?: number;
}

/** What happened, by kind. */
export type EventBody = QueuedEvent | StartedEvent | OutputEvent | RetryingEvent | FinishedEvent;
/** An event's kind name. */
export type EventKind = EventBody["kind"];

/** One event of a command (content kind `event`); the envelope binds it to its command. */
export type EventPayload = EventBody & {
  /** Must equal the envelope's seq (from 1). */
  seq: number;
  /** When the hub's journal stored it (ms since the epoch). */
  timeMs?: number;
};

export const EVENT_KINDS: readonly EventKind[] = [
  "queued",
  "started",
  "output",
  "retrying",
  "finished",
];

/** A device asks to pair (sealed kind `pairing_request`, device → hub). */
export interface PairingRequest {
  /** The ticket's one-time secret, hex. */
  secret: string;
  deviceName: string;
}

/** The hub's answer (sealed kind `pairing_answer`, hub → device). */
export interface PairingAnswer {
  accepted: boolean;
  /** The hub's name, when accepted. */
  hubName?: string;
  /** Why not, when refused. */
  reason?: string;
}

/** A payload that does not parse, or that cannot be written. */
export class PayloadError extends Error {
  override readonly name = "PayloadError";

  /** @param what the message after `malformed payload: `. */
  constructor(what: string) {
    super(`malformed payload: ${what}`);
  }
}

// ------------------------------------------------------------------------------- reading

const COMMAND_FIELDS = [
  "command_id",
  "content",
  "provider",
  "agent_id",
  "session_id",
  "channel_id",
  "model",
  "source_device_id",
  "created_at_ms",
  "expires_at_ms",
] as const;

/** Parses the JSON text (or its UTF-8 bytes), mapping every failure to a PayloadError. */
function read<T>(input: string | Uint8Array, build: (value: Json) => T): T {
  let text: string;
  if (typeof input === "string") text = input;
  else {
    try {
      text = fromUtf8(input);
    } catch {
      throw new PayloadError("invalid UTF-8");
    }
  }
  try {
    return build(parseJson(text));
  } catch (e) {
    if (e instanceof JsonError) throw new PayloadError(e.message);
    throw e;
  }
}

/** A u64 the web side can hold exactly (at most 2^53 − 1). */
function safe(name: string, value: bigint): number {
  if (value > BigInt(MAX_SAFE_INTEGER)) throw new JsonError(`${name} is over 2^53 - 1`);
  return Number(value);
}

function optSafe(name: string, value: bigint | undefined): number | undefined {
  return value === undefined ? undefined : safe(name, value);
}

/** Sets `key` on `target` only when `value` is present, so absent stays absent. */
function setIf<T extends object, K extends keyof T>(target: T, key: K, value: T[K] | undefined): void {
  if (value !== undefined) target[key] = value;
}

function providerOf(name: string | undefined): Provider | undefined {
  if (name === undefined) return undefined;
  const found = PROVIDERS.find((p) => p === name);
  if (found === undefined) {
    throw new JsonError(
      `provider ${JSON.stringify(name)} is not anthropic, openai-codex or google-gemini`,
    );
  }
  return found;
}

function statusOf(name: string): FinalStatus {
  const found = FINAL_STATUSES.find((s) => s === name);
  if (found === undefined) {
    throw new JsonError(
      `status ${JSON.stringify(name)} is not completed, failed, cancelled or expired`,
    );
  }
  return found;
}

/**
 * Reads a command payload.
 * @param input the JSON text, or its UTF-8 bytes (an opened envelope's plaintext).
 * @throws PayloadError
 */
export function parseCommand(input: string | Uint8Array): CommandPayload {
  return read(input, (value) => {
    const r = new FieldReader(value, "struct CommandPayload", COMMAND_FIELDS, true);
    const command: CommandPayload = {
      commandId: r.string("command_id"),
      content: r.string("content"),
    };
    const provider = r.optString("provider");
    setIf(command, "agentId", r.optString("agent_id"));
    setIf(command, "sessionId", r.optString("session_id"));
    setIf(command, "channelId", r.optString("channel_id"));
    setIf(command, "model", r.optString("model"));
    setIf(command, "sourceDeviceId", r.optString("source_device_id"));
    const created = r.optUint("created_at_ms", "u64");
    const expires = r.optUint("expires_at_ms", "u64");
    setIf(command, "provider", providerOf(provider));
    setIf(command, "createdAtMs", optSafe("created_at_ms", created));
    setIf(command, "expiresAtMs", optSafe("expires_at_ms", expires));
    return reorderCommand(command);
  });
}

/** The same command with its keys in wire order (tidy for deep equality and logging). */
function reorderCommand(c: CommandPayload): CommandPayload {
  const out: CommandPayload = { commandId: c.commandId, content: c.content };
  setIf(out, "provider", c.provider);
  setIf(out, "agentId", c.agentId);
  setIf(out, "sessionId", c.sessionId);
  setIf(out, "channelId", c.channelId);
  setIf(out, "model", c.model);
  setIf(out, "sourceDeviceId", c.sourceDeviceId);
  setIf(out, "createdAtMs", c.createdAtMs);
  setIf(out, "expiresAtMs", c.expiresAtMs);
  return out;
}

/** The fields of each event kind's object, in wire order. */
const EVENT_BODY_FIELDS: Record<EventKind, readonly string[]> = {
  queued: ["position"],
  started: ["attempt", "history_turns", "history_dropped", "note"],
  output: ["text"],
  retrying: ["attempt", "delay_ms", "reason"],
  finished: ["status", "error", "attempts", "executed_at_ms"],
};

function eventBody(kind: EventKind, value: Json): EventBody {
  // Unknown fields inside an event kind are ignored, as the Rust side ignores them.
  const r = new FieldReader(value, `struct variant EventKind::${kind}`, EVENT_BODY_FIELDS[kind], false);
  switch (kind) {
    case "queued":
      return { kind, position: Number(r.uint("position", "u32")) };
    case "started": {
      const body: StartedEvent = { kind, attempt: Number(r.uint("attempt", "u32")) };
      const turns = r.optUint("history_turns", "u32");
      const dropped = r.optUint("history_dropped", "u32");
      const note = r.optString("note");
      if (turns !== undefined && turns > 0n) body.historyTurns = Number(turns);
      if (dropped !== undefined && dropped > 0n) body.historyDropped = Number(dropped);
      if (note !== undefined && note !== "") body.note = note;
      return body;
    }
    case "output":
      return { kind, text: r.string("text") };
    case "retrying":
      return {
        kind,
        attempt: Number(r.uint("attempt", "u32")),
        delayMs: safe("delay_ms", r.uint("delay_ms", "u64")),
        reason: r.string("reason"),
      };
    case "finished": {
      const status = r.string("status");
      const error = r.raw("error") === undefined ? "" : r.string("error");
      const attempts = r.raw("attempts") === undefined ? 0n : r.uint("attempts", "u32");
      const executed = r.optUint("executed_at_ms", "u64");
      const body: FinishedEvent = {
        kind,
        status: statusOf(status),
        error,
        attempts: Number(attempts),
      };
      setIf(body, "executedAtMs", optSafe("executed_at_ms", executed));
      return body;
    }
  }
}

/**
 * Reads an event payload: `seq`, optional `time_ms`, and exactly one event kind. Other
 * top-level keys are ignored (as the Rust side does); none of the known kinds, or two, is
 * refused.
 * @param input the JSON text, or its UTF-8 bytes.
 * @throws PayloadError
 */
export function parseEvent(input: string | Uint8Array): EventPayload {
  return read(input, (value) => {
    const r = new FieldReader(value, "struct EventPayload", ["seq", "time_ms"], false);
    const seq = r.uint("seq", "u64");
    const time = r.optUint("time_ms", "u64");
    const kinds = EVENT_KINDS.filter((k) => r.raw(k) !== undefined);
    const [kind, other] = kinds;
    const bodyValue = kind === undefined ? undefined : r.raw(kind);
    if (kind === undefined || bodyValue === undefined) {
      throw new JsonError(`no event kind (one of ${EVENT_KINDS.join(", ")})`);
    }
    if (other !== undefined) throw new JsonError(`two event kinds: ${kind} and ${other}`);
    const body = eventBody(kind, bodyValue);
    const event: EventPayload = { seq: safe("seq", seq), ...body };
    const timeMs = optSafe("time_ms", time);
    return timeMs === undefined ? event : { seq: event.seq, timeMs, ...body };
  });
}

/**
 * Reads a pairing request.
 * @throws PayloadError
 */
export function parsePairingRequest(input: string | Uint8Array): PairingRequest {
  return read(input, (value) => {
    const r = new FieldReader(value, "struct PairingRequest", ["secret", "device_name"], true);
    return { secret: r.string("secret"), deviceName: r.string("device_name") };
  });
}

/**
 * Reads a pairing answer.
 * @throws PayloadError
 */
export function parsePairingAnswer(input: string | Uint8Array): PairingAnswer {
  return read(input, (value) => {
    const r = new FieldReader(value, "struct PairingAnswer", ["accepted", "hub_name", "reason"], true);
    const answer: PairingAnswer = { accepted: r.bool("accepted") };
    setIf(answer, "hubName", r.optString("hub_name"));
    setIf(answer, "reason", r.optString("reason"));
    return answer;
  });
}

// ------------------------------------------------------------------------------- writing

/** A JSON object under construction, keys in insertion (wire) order. */
interface WireObject {
  [key: string]: string | number | boolean | WireObject;
}

function text(name: string, value: string): string {
  if (typeof value !== "string") throw new PayloadError(`${name} is not a string`);
  if (!isWellFormed(value)) throw new PayloadError(`${name} is not valid Unicode`);
  return value;
}

/** A non-negative integer: at most 2^32 − 1 for a u32 field, 2^53 − 1 for a u64 one. */
function uint(name: string, value: number, type: "u32" | "u64"): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw new PayloadError(`${name} is not a non-negative integer`);
  }
  if (type === "u32" && BigInt(value) > UINT_MAX.u32) {
    throw new PayloadError(`${name} is over ${UINT_MAX.u32}`);
  }
  if (value > MAX_SAFE_INTEGER) throw new PayloadError(`${name} is over 2^53 - 1`);
  return value;
}

function putText(target: WireObject, name: string, value: string | undefined): void {
  if (value !== undefined) target[name] = text(name, value);
}

function putUint(target: WireObject, name: string, value: number | undefined, type: "u32" | "u64"): void {
  if (value !== undefined) target[name] = uint(name, value, type);
}

/**
 * The JSON text of a command payload (what a device seals to its hub).
 * @throws PayloadError for a value the reader would refuse (an unknown provider, a negative
 *   or fractional number, a lone surrogate).
 */
export function serializeCommand(c: CommandPayload): string {
  const o: WireObject = {};
  putText(o, "command_id", c.commandId);
  putText(o, "content", c.content);
  if (c.provider !== undefined) {
    if (!PROVIDERS.includes(c.provider)) {
      throw new PayloadError(
        `provider ${JSON.stringify(c.provider)} is not anthropic, openai-codex or google-gemini`,
      );
    }
    o["provider"] = c.provider;
  }
  putText(o, "agent_id", c.agentId);
  putText(o, "session_id", c.sessionId);
  putText(o, "channel_id", c.channelId);
  putText(o, "model", c.model);
  putText(o, "source_device_id", c.sourceDeviceId);
  putUint(o, "created_at_ms", c.createdAtMs, "u64");
  putUint(o, "expires_at_ms", c.expiresAtMs, "u64");
  return JSON.stringify(o);
}

/**
 * The JSON text of an event payload (what the hub writes; the web app writes none, but the
 * writer keeps the reader honest in tests).
 * @throws PayloadError for a value the reader would refuse.
 */
export function serializeEvent(e: EventPayload): string {
  const o: WireObject = {};
  putUint(o, "seq", e.seq, "u64");
  putUint(o, "time_ms", e.timeMs, "u64");
  const body: WireObject = {};
  switch (e.kind) {
    case "queued":
      body["position"] = uint("position", e.position, "u32");
      break;
    case "started":
      body["attempt"] = uint("attempt", e.attempt, "u32");
      if (e.historyTurns) body["history_turns"] = uint("history_turns", e.historyTurns, "u32");
      if (e.historyDropped) {
        body["history_dropped"] = uint("history_dropped", e.historyDropped, "u32");
      }
      if (e.note) body["note"] = text("note", e.note);
      break;
    case "output":
      body["text"] = text("text", e.text);
      break;
    case "retrying":
      body["attempt"] = uint("attempt", e.attempt, "u32");
      body["delay_ms"] = uint("delay_ms", e.delayMs, "u64");
      body["reason"] = text("reason", e.reason);
      break;
    case "finished":
      if (!FINAL_STATUSES.includes(e.status)) {
        throw new PayloadError(
          `status ${JSON.stringify(e.status)} is not completed, failed, cancelled or expired`,
        );
      }
      body["status"] = e.status;
      body["error"] = text("error", e.error);
      body["attempts"] = uint("attempts", e.attempts, "u32");
      putUint(body, "executed_at_ms", e.executedAtMs, "u64");
      break;
  }
  o[e.kind] = body;
  return JSON.stringify(o);
}

/** The JSON text of a pairing request (what a device seals to the hub). */
export function serializePairingRequest(p: PairingRequest): string {
  const o: WireObject = {};
  putText(o, "secret", p.secret);
  putText(o, "device_name", p.deviceName);
  return JSON.stringify(o);
}

/** The JSON text of a pairing answer (what the hub writes). */
export function serializePairingAnswer(a: PairingAnswer): string {
  if (typeof a.accepted !== "boolean") throw new PayloadError("accepted is not a boolean");
  const o: WireObject = { accepted: a.accepted };
  putText(o, "hub_name", a.hubName);
  putText(o, "reason", a.reason);
  return JSON.stringify(o);
}

/** The UTF-8 bytes of a payload's JSON text, to seal. */
export function payloadBytes(json: string): Uint8Array {
  return utf8(json);
}
