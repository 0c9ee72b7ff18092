// Stream reassembly: strictly in seq order, once each, gaps held, duplicates after a resume
// dropped, the end kept, state saved and restored.
import { describe, expect, test } from "vitest";

import type { EventPayload } from "../src/crypto/payload";
import { MAX_AHEAD, MAX_SEQ, Reassembly, ReassemblyError } from "../src/lib/reassembly";

const queued = (seq: number): EventPayload => ({ seq, kind: "queued", position: 1 });
const started = (seq: number): EventPayload => ({ seq, kind: "started", attempt: 1 });
const out = (seq: number, text = `t${seq} `): EventPayload => ({ seq, kind: "output", text });
const finished = (seq: number): EventPayload => ({
  seq,
  kind: "finished",
  status: "completed",
  error: "",
  attempts: 1,
  executedAtMs: 1800000000000,
});

const seqs = (events: EventPayload[]) => events.map((e) => e.seq);

/** A command's whole stream: queued, started, outputs, finished. */
function stream(outputs: number): EventPayload[] {
  const events = [queued(1), started(2)];
  for (let i = 0; i < outputs; i++) events.push(out(3 + i));
  events.push(finished(3 + outputs));
  return events;
}

describe("in order", () => {
  test("each event goes through at once", () => {
    const r = new Reassembly();
    expect(r.lastSeq).toBe(0);
    expect(seqs(r.push(queued(1)))).toEqual([1]);
    expect(seqs(r.push(started(2)))).toEqual([2]);
    expect(seqs(r.push(out(3, "Hello, ")))).toEqual([3]);
    expect(seqs(r.push(out(4, "world")))).toEqual([4]);
    expect(r.text).toBe("Hello, world");
    expect(r.lastSeq).toBe(4);
    expect(r.finished).toBeUndefined();
    expect(seqs(r.push(finished(5)))).toEqual([5]);
    expect(r.finished).toMatchObject({ seq: 5, status: "completed", attempts: 1 });
  });
});

describe("gaps", () => {
  test("a later event is held until the gap fills, then all go through in order", () => {
    const r = new Reassembly();
    expect(r.push(out(3))).toEqual([]);
    expect(r.push(out(2))).toEqual([]);
    expect(r.waitingFor).toBe(1);
    expect(r.heldCount).toBe(2);
    expect(r.lastSeq).toBe(0);
    expect(r.text).toBe("");
    expect(seqs(r.push(queued(1)))).toEqual([1, 2, 3]);
    expect(r.waitingFor).toBeUndefined();
    expect(r.text).toBe("t2 t3 ");
  });

  test("a finished event behind a gap does not end the stream yet", () => {
    const r = new Reassembly();
    r.push(queued(1));
    expect(r.push(finished(3))).toEqual([]);
    expect(r.finished).toBeUndefined();
    expect(seqs(r.push(out(2)))).toEqual([2, 3]);
    expect(r.finished?.seq).toBe(3);
  });

  test("any order of a whole stream, with repeats, gives it once in order", () => {
    const events = stream(30);
    for (let round = 0; round < 50; round++) {
      const shuffled = [...events, ...events.filter(() => Math.random() < 0.5)];
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = Math.floor(Math.random() * (i + 1));
        [shuffled[i], shuffled[j]] = [shuffled[j] as EventPayload, shuffled[i] as EventPayload];
      }
      const r = new Reassembly();
      const through = shuffled.flatMap((e) => r.push(e));
      expect(seqs(through)).toEqual(seqs(events));
      expect(r.text).toBe(events.map((e) => (e.kind === "output" ? e.text : "")).join(""));
      expect(r.finished?.seq).toBe(events.length);
      expect(r.heldCount).toBe(0);
    }
  });

  test("an event too far ahead is dropped, to be read again", () => {
    const r = new Reassembly();
    expect(r.push(out(MAX_AHEAD + 1))).toEqual([]);
    expect(r.heldCount).toBe(0);
    expect(r.push(out(MAX_AHEAD))).toEqual([]);
    expect(r.heldCount).toBe(1);
  });
});

describe("duplicates", () => {
  test("an event seen before is dropped (Realtime and the poll overlapping)", () => {
    const r = new Reassembly();
    r.push(queued(1));
    r.push(started(2));
    expect(r.push(queued(1))).toEqual([]);
    expect(r.push(started(2))).toEqual([]);
    expect(r.lastSeq).toBe(2);
  });

  test("after a resume, the page read again from an older seq adds nothing twice", () => {
    const r = new Reassembly();
    for (const e of stream(3).slice(0, 4)) r.push(e); // up to seq 4
    const textBefore = r.text;
    const page = stream(3).slice(1); // seq 2.. again, to the end
    expect(seqs(page.flatMap((e) => r.push(e)))).toEqual([5, 6]);
    expect(r.text).toBe(textBefore + "t5 ");
  });

  test("a held event repeated is held once", () => {
    const r = new Reassembly();
    r.push(out(2));
    r.push(out(2));
    expect(r.heldCount).toBe(1);
    expect(seqs(r.push(queued(1)))).toEqual([1, 2]);
  });

  test("two different events for one held seq are refused", () => {
    const r = new Reassembly();
    r.push(out(2, "a"));
    expect(() => r.push(out(2, "b"))).toThrow(new ReassemblyError("two different events 2"));
  });
});

describe("impossible sequences", () => {
  test("an event after finished", () => {
    const r = new Reassembly();
    for (const e of stream(1)) r.push(e); // finished at 4
    expect(() => r.push(out(5))).toThrow(/event 5 comes after the command finished at event 4/);
    // a repeat of what was let through is still only a repeat
    expect(r.push(finished(4))).toEqual([]);
  });

  test("an event after a held finished, either way round", () => {
    const a = new Reassembly();
    a.push(finished(3));
    expect(() => a.push(out(4))).toThrow(ReassemblyError);
    const b = new Reassembly();
    b.push(out(4));
    expect(() => b.push(finished(3))).toThrow(/event 4 comes after the command finished at event 3/);
  });

  test.each([0, -1, 1.5, MAX_SEQ + 1, Number.NaN])("seq %s", (seq) => {
    expect(() => new Reassembly().push(out(seq))).toThrow(ReassemblyError);
  });
});

describe("saving and restoring", () => {
  test("goes on where it stopped, as JSON through sessionStorage would carry it", () => {
    const r = new Reassembly("cmd-1");
    for (const e of stream(3).slice(0, 4)) r.push(e);
    r.push(out(6)); // held: not saved, read again after lastSeq
    const saved = JSON.parse(JSON.stringify(r.serialize())) as unknown;
    expect(saved).toEqual({ v: 1, commandId: "cmd-1", lastSeq: 4, text: "t3 t4 " });
    const back = Reassembly.restore(saved, "cmd-1");
    expect(back.lastSeq).toBe(4);
    expect(back.text).toBe("t3 t4 ");
    expect(back.push(out(4))).toEqual([]);
    expect(seqs(stream(3).slice(4).flatMap((e) => back.push(e)))).toEqual([5, 6]);
    expect(back.finished?.seq).toBe(6);
    expect(back.text).toBe("t3 t4 t5 ");
  });

  test("keeps the end", () => {
    const r = new Reassembly();
    for (const e of stream(1)) r.push(e);
    const back = Reassembly.restore(JSON.parse(JSON.stringify(r.serialize())));
    expect(back.finished).toEqual(finished(4));
    expect(() => back.push(out(5))).toThrow(ReassemblyError);
  });

  test.each([
    ["null", null],
    ["a string", "x"],
    ["another version", { v: 2, lastSeq: 0, text: "" }],
    ["a negative lastSeq", { v: 1, lastSeq: -1, text: "" }],
    ["a fractional lastSeq", { v: 1, lastSeq: 1.5, text: "" }],
    ["no text", { v: 1, lastSeq: 1 }],
    ["a finished that is not an event", { v: 1, lastSeq: 1, text: "", finished: "{" }],
    ["a finished of another kind", { v: 1, lastSeq: 1, text: "", finished: '{"seq":1,"output":{"text":"x"}}' }],
    ["a finished that is not the last event", { v: 1, lastSeq: 2, text: "", finished: '{"seq":1,"finished":{"status":"failed"}}' }],
    ["another command's", { v: 1, commandId: "other", lastSeq: 0, text: "" }],
  ])("refuses %s", (_, state) => {
    expect(() => Reassembly.restore(state, "cmd-1")).toThrow(ReassemblyError);
  });
});
