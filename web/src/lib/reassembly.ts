/**
 * Puts one command's events back in order. Events reach the app more than once and out of
 * order (a page read after a resume, Realtime and the safety poll overlapping); this buffer
 * lets each seq through exactly once, strictly in seq order, holding a later event until the
 * gap before it is filled.
 *
 * It keeps what a view needs after a reload: {@link Reassembly.lastSeq} (read on with
 * `seq=gt.<lastSeq>`), the output text so far, and the `finished` event once it arrived, and
 * {@link Reassembly.serialize} / {@link Reassembly.restore} move that through sessionStorage or
 * IndexedDB. Held events are not kept: they are read again after `lastSeq`.
 *
 * It trusts the events' contents (opened and checked by the envelope layer, which binds each
 * to its seq); what it refuses is an impossible sequence: two different events for one seq, an
 * event after the command finished, a seq out of range.
 */

import {
  parseEvent,
  serializeEvent,
  type EventPayload,
  type FinishedEvent,
} from "../crypto/payload";

/** The largest seq a command has (the cloud's bound: seq 1–65536). */
export const MAX_SEQ = 65536;
/** How far past `lastSeq` an event is held; one further is dropped (it is read again later). */
export const MAX_AHEAD = 1024;

/** The saved state of a {@link Reassembly}: plain JSON. */
export interface ReassemblyState {
  v: 1;
  /** The command it follows, when known. */
  commandId?: string;
  lastSeq: number;
  text: string;
  /** The `finished` event's payload JSON, once it was let through. */
  finished?: string;
}

/** An impossible sequence of events, or a saved state that is not one. */
export class ReassemblyError extends Error {
  override readonly name = "ReassemblyError";
}

/** The ended command's `finished` event, with its seq. */
export type Finished = FinishedEvent & { seq: number; timeMs?: number };

function same(a: EventPayload, b: EventPayload): boolean {
  return serializeEvent(a) === serializeEvent(b);
}

/** One command's events, in order, once each. */
export class Reassembly {
  private last = 0;
  private output = "";
  private end: Finished | undefined;
  private readonly held = new Map<number, EventPayload>();

  /** @param commandId the command followed (checked when a saved state is restored). */
  constructor(readonly commandId?: string) {}

  /** The seq of the last event let through (0 before any): read on after it. */
  get lastSeq(): number {
    return this.last;
  }

  /** The output text so far (every `output` event's text, in order). */
  get text(): string {
    return this.output;
  }

  /** The `finished` event, once let through. */
  get finished(): Finished | undefined {
    return this.end;
  }

  /** The seq the buffer waits for while it holds later events (`undefined`: no gap). */
  get waitingFor(): number | undefined {
    return this.held.size > 0 ? this.last + 1 : undefined;
  }

  /** How many events are held behind a gap. */
  get heldCount(): number {
    return this.held.size;
  }

  /**
   * Takes one event, in any order, any number of times.
   * @returns the events now let through, in seq order (empty for a repeat, or while a gap
   *   before this one stays open).
   * @throws ReassemblyError for a seq out of range, another event at a held seq, or an event
   *   after the command finished.
   */
  push(event: EventPayload): EventPayload[] {
    const seq = event.seq;
    if (!Number.isSafeInteger(seq) || seq < 1 || seq > MAX_SEQ) {
      throw new ReassemblyError(`event seq ${String(seq)} is not between 1 and ${MAX_SEQ}`);
    }
    if (seq <= this.last) return []; // already let through
    const endAt = this.end?.seq ?? this.heldFinishedSeq();
    if (endAt !== undefined && seq > endAt) {
      throw new ReassemblyError(`event ${seq} comes after the command finished at event ${endAt}`);
    }
    if (event.kind === "finished") {
      const later = [...this.held.keys()].find((s) => s > seq);
      if (later !== undefined) {
        throw new ReassemblyError(`event ${later} comes after the command finished at event ${seq}`);
      }
    }
    const before = this.held.get(seq);
    if (before !== undefined) {
      if (!same(before, event)) throw new ReassemblyError(`two different events ${seq}`);
      return [];
    }
    if (seq > this.last + MAX_AHEAD) return [];
    this.held.set(seq, event);
    return this.release();
  }

  private heldFinishedSeq(): number | undefined {
    for (const [seq, e] of this.held) if (e.kind === "finished") return seq;
    return undefined;
  }

  /** Lets through every held event that follows `last` without a gap. */
  private release(): EventPayload[] {
    const out: EventPayload[] = [];
    for (;;) {
      const next = this.held.get(this.last + 1);
      if (next === undefined) return out;
      this.held.delete(this.last + 1);
      this.last = next.seq;
      if (next.kind === "output") this.output += next.text;
      if (next.kind === "finished") this.end = next;
      out.push(next);
    }
  }

  /** The state to save (JSON-safe). Held events are left out: they are read again. */
  serialize(): ReassemblyState {
    const state: ReassemblyState = { v: 1, lastSeq: this.last, text: this.output };
    if (this.commandId !== undefined) state.commandId = this.commandId;
    if (this.end !== undefined) state.finished = serializeEvent(this.end);
    return state;
  }

  /**
   * A buffer that goes on from a saved state (from sessionStorage, say: checked, not trusted).
   * @param commandId when given, the state must be this command's.
   * @throws ReassemblyError when `state` is not a saved state (of this command).
   */
  static restore(state: unknown, commandId?: string): Reassembly {
    const fail = (why: string) => new ReassemblyError(`not a saved event stream: ${why}`);
    if (typeof state !== "object" || state === null) throw fail("not an object");
    const s = state as Partial<Record<keyof ReassemblyState, unknown>>;
    if (s.v !== 1) throw fail(`version ${String(s.v)}`);
    const { lastSeq, text } = s;
    if (typeof lastSeq !== "number" || !Number.isSafeInteger(lastSeq) || lastSeq < 0 || lastSeq > MAX_SEQ) {
      throw fail("lastSeq is not a seq");
    }
    if (typeof text !== "string") throw fail("text is not text");
    if (s.commandId !== undefined && typeof s.commandId !== "string") throw fail("commandId is not text");
    if (commandId !== undefined && s.commandId !== undefined && s.commandId !== commandId) {
      throw fail(`it is command ${s.commandId}'s, not ${commandId}'s`);
    }
    let finished: Finished | undefined;
    if (s.finished !== undefined) {
      if (typeof s.finished !== "string") throw fail("finished is not an event");
      let event: EventPayload;
      try {
        event = parseEvent(s.finished);
      } catch (e) {
        throw fail(`finished: ${e instanceof Error ? e.message : String(e)}`);
      }
      if (event.kind !== "finished" || event.seq !== lastSeq) {
        throw fail("finished is not the last event");
      }
      finished = event;
    }
    const r = new Reassembly(commandId ?? s.commandId);
    r.last = lastSeq;
    r.output = text;
    r.end = finished;
    return r;
  }
}
