/**
 * The envelopes and payloads of the cloud route, as this device uses them: a thin layer over
 * `crypto/` that binds each open to what is expected (the paired hub, the command, the seq)
 * and checks the payload inside agrees with its envelope.
 */
import {
  EnvelopeError,
  openContent,
  openSealed,
  seal,
  unwrapContentKey,
} from "../crypto/envelope";
import {
  parseCommand,
  parseEvent,
  parsePairingAnswer,
  payloadBytes,
  serializeCommand,
  serializePairingRequest,
  type CommandPayload,
  type EventPayload,
  type PairingAnswer,
  type PairingRequest,
} from "../crypto/payload";

export type { CommandPayload, EventPayload, PairingAnswer };

/** This browser as a device: its ed25519 seed and its public key (64 hex digits). */
export interface Device {
  secret: Uint8Array;
  id: string;
}

/** A command sealed to the hub (kind `command`, context its id). */
export function sealCommand(device: Device, hub: string, command: CommandPayload, expiresAtMs: number): string {
  return seal(
    device.secret,
    hub,
    { kind: "command", context: command.commandId, seq: 0, expiresAtMs },
    payloadBytes(serializeCommand(command)),
  );
}

/** A pairing request sealed to the hub (kind `pairing_request`, context the pairing id). */
export function sealPairingRequest(
  device: Device,
  hub: string,
  pairingId: string,
  request: PairingRequest,
  expiresAtMs: number,
): string {
  return seal(
    device.secret,
    hub,
    { kind: "pairing_request", context: pairingId, seq: 0, expiresAtMs },
    payloadBytes(serializePairingRequest(request)),
  );
}

/** The hub's answer: signed by `hub` (no one else), kind `pairing_answer`, this pairing. */
export function openPairingAnswer(
  device: Device,
  hub: string,
  pairingId: string,
  text: string,
  nowMs: number,
): PairingAnswer {
  const opened = openSealed(device.secret, text, nowMs, (sender) => sender === hub);
  if (opened.header.kind !== "pairing_answer") {
    throw EnvelopeError.wrongKind("pairing_answer", opened.header.kind);
  }
  if (opened.header.context !== pairingId) {
    throw EnvelopeError.wrongCommand(pairingId, opened.header.context);
  }
  return parsePairingAnswer(opened.plaintext);
}

/** This device's content key of a command, sealed by the hub. */
export function unwrapKey(device: Device, hub: string, commandId: string, text: string): Uint8Array {
  return unwrapContentKey(device.secret, hub, commandId, text);
}

/** The command as the hub accepted it (content kind `prompt`, seq 0). */
export function openPrompt(key: Uint8Array, hub: string, commandId: string, text: string): CommandPayload {
  const command = parseCommand(openContent(key, { kind: "prompt", hub, context: commandId, seq: 0 }, text));
  if (command.commandId !== commandId) {
    throw new Error(`the prompt inside names command ${command.commandId}`);
  }
  return command;
}

/** Event `seq` of a command (content kind `event`); the payload must carry the same seq. */
export function openEvent(key: Uint8Array, hub: string, commandId: string, seq: number, text: string): EventPayload {
  const event = parseEvent(openContent(key, { kind: "event", hub, context: commandId, seq }, text));
  if (event.seq !== seq) throw new Error(`the event inside says seq ${event.seq}`);
  return event;
}
