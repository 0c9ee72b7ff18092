/**
 * Following one command through the cloud from this device (docs/protocol.md, "A device reads
 * a command"): wait until the hub publishes it, unwrap this device's content key, then read
 * the events in pages after a seq cursor, opening each as exactly the event expected next.
 * Realtime UPDATEs of the row wake it; it also polls (5 s while the channel is joined, 250 ms
 * while it is not), and a failed read is retried with backoff while the network is away.
 */
import type { RealtimeChannel, SupabaseClient } from "@supabase/supabase-js";
import {
  CloudError,
  ENDED,
  readEvents,
  readKey,
  readRow,
  type CommandRow,
} from "./commands";
import {
  openEvent,
  openPrompt,
  unwrapKey,
  type CommandPayload,
  type Device,
  type EventPayload,
} from "./wire";

export const SAFETY_POLL_MS = 5_000;
export const EVENT_POLL_MS = 250;
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 10_000;

/** What the follower tells its view, in order. */
export type FollowUpdate =
  | { type: "row"; row: CommandRow }
  | { type: "prompt"; prompt: CommandPayload }
  | { type: "event"; event: EventPayload }
  | { type: "ended"; status: string; reason: string }
  | { type: "refused"; message: string }
  | { type: "error"; message: string }
  | { type: "offline"; message: string }
  | { type: "online" };

/** A refusal of something the cloud returned: nothing of it, nor after it, is shown. */
class Refused extends Error {}

export interface FollowOptions {
  client: SupabaseClient;
  device: Device;
  /** The paired hub: only its signatures are accepted. */
  hub: string;
  commandId: string;
  /** Events up to this seq were shown already (a resume). */
  afterSeq: number;
  onUpdate: (update: FollowUpdate) => void;
}

export class Follower {
  private stopped = false;
  private joined = false;
  private wakeUp: (() => void) | null = null;
  private channel: RealtimeChannel | null = null;
  private key: Uint8Array | null = null;
  private last: number;
  /** The row had ended at this seq when the events after `last` were last read. */
  private endedAt: number | null = null;
  private lastRow: CommandRow | null = null;
  private readonly onOnline = () => this.wake();

  constructor(private readonly options: FollowOptions) {
    this.last = options.afterSeq;
  }

  /** Starts following; the returned promise settles when the command (or following) ends. */
  async run(): Promise<void> {
    this.subscribe();
    globalThis.addEventListener?.("online", this.onOnline);
    let retry = RETRY_FIRST_MS;
    let offline = false;
    try {
      while (!this.stopped) {
        let step: "again" | "wait" | "done";
        try {
          step = await this.look();
          if (offline) {
            offline = false;
            this.options.onUpdate({ type: "online" });
          }
          retry = RETRY_FIRST_MS;
        } catch (e) {
          if (this.stopped) return;
          if (e instanceof Refused) {
            this.options.onUpdate({ type: "refused", message: e.message });
            return;
          }
          const failure = e as Error;
          if (!(failure instanceof CloudError) || !failure.transient) {
            this.options.onUpdate({ type: "error", message: failure.message });
            return;
          }
          offline = true;
          this.options.onUpdate({
            type: "offline",
            message: `cannot reach the cloud (${failure.message}); trying again`,
          });
          await this.sleep(retry);
          retry = Math.min(retry * 2, RETRY_MAX_MS);
          continue;
        }
        if (step === "done") return;
        if (step === "wait") await this.sleep(this.joined ? SAFETY_POLL_MS : EVENT_POLL_MS);
      }
    } finally {
      this.close();
    }
  }

  /** Stops following (the command goes on). */
  stop(): void {
    this.stopped = true;
    this.wake();
    this.close();
  }

  private close(): void {
    globalThis.removeEventListener?.("online", this.onOnline);
    if (this.channel) {
      void this.options.client.removeChannel(this.channel);
      this.channel = null;
    }
  }

  private subscribe(): void {
    const { client, commandId } = this.options;
    this.channel = client
      .channel(`helix-command-${commandId.slice(0, 16)}-${Math.random().toString(36).slice(2, 8)}`)
      .on(
        "postgres_changes",
        {
          event: "UPDATE",
          schema: "public",
          table: "cloud_commands",
          filter: `command_id=eq.${commandId}`,
        },
        () => this.wake(),
      )
      .subscribe((status) => {
        this.joined = status === "SUBSCRIBED";
        // A join (or a rejoin after a drop) may have missed UPDATEs: look now.
        this.wake();
      });
  }

  private wake(): void {
    const wake = this.wakeUp;
    this.wakeUp = null;
    wake?.();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        if (this.wakeUp === done) this.wakeUp = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeUp = done;
    });
  }

  private async row(withPrompt: boolean): Promise<CommandRow> {
    const { client, commandId, hub } = this.options;
    const row = await readRow(client, commandId, withPrompt);
    if (!row) throw new CloudError(`no command ${commandId} in the cloud`);
    if (row.hub_id !== hub) {
      throw new CloudError(`command ${commandId} is for hub ${row.hub_id.slice(0, 10)}, not this one`);
    }
    if (
      !this.lastRow ||
      this.lastRow.status !== row.status ||
      this.lastRow.last_seq !== row.last_seq
    ) {
      this.options.onUpdate({ type: "row", row });
    }
    this.lastRow = row;
    return row;
  }

  /** One look: before the key, at the row; with it, at the next page of events. */
  private async look(): Promise<"again" | "wait" | "done"> {
    const { client, device, hub, commandId, onUpdate } = this.options;
    if (!this.key) {
      const row = await this.row(true);
      if (row.prompt) {
        const sealed = await readKey(client, commandId, device.id);
        if (!sealed) {
          throw new CloudError(
            `this device has no key for command ${commandId}: it was paired after the command started, or it is revoked`,
          );
        }
        let key: Uint8Array;
        try {
          key = unwrapKey(device, hub, commandId, sealed);
        } catch (e) {
          throw new Refused(`refused the content key of this command: ${(e as Error).message}`);
        }
        try {
          onUpdate({ type: "prompt", prompt: openPrompt(key, hub, commandId, row.prompt) });
        } catch (e) {
          throw new Refused(`refused the prompt of this command: ${(e as Error).message}`);
        }
        this.key = key;
        return "again";
      }
      if (ENDED.has(row.status)) {
        onUpdate({ type: "ended", status: row.status, reason: row.reason ?? "no reason given" });
        return "done";
      }
      return "wait";
    }
    const page = await readEvents(client, commandId, this.last);
    for (const stored of page) {
      if (this.stopped) return "done";
      const expected = this.last + 1;
      const event = this.open(stored, expected);
      this.last = event.seq;
      onUpdate({ type: "event", event });
      if (event.kind === "finished") return "done";
    }
    if (page.length > 0) return "again";
    if (this.endedAt !== null) {
      throw this.refused(
        this.last + 1,
        `it is missing from the cloud (the command's row ends at event ${this.endedAt})`,
      );
    }
    const row = await this.row(false);
    if (!ENDED.has(row.status)) return "wait";
    if (row.last_seq > this.last) {
      this.endedAt = row.last_seq;
      return "again";
    }
    if (row.status === "completed") {
      throw this.refused(
        this.last + 1,
        "it is missing from the cloud (the command completed, but its events end before it)",
      );
    }
    onUpdate({ type: "ended", status: row.status, reason: row.reason ?? "no reason given" });
    return "done";
  }

  private open(stored: { seq: number; envelope: string }, expected: number): EventPayload {
    if (stored.seq !== expected) {
      if (stored.seq < expected) {
        throw this.refused(expected, `the cloud returned event ${stored.seq} again in its place`);
      }
      throw this.refused(
        expected,
        `it is missing from the cloud (the next event stored is ${stored.seq})`,
      );
    }
    try {
      // `this.key` is set before any event is read.
      return openEvent(this.key as Uint8Array, this.options.hub, this.options.commandId, expected, stored.envelope);
    } catch (e) {
      throw this.refused(expected, (e as Error).message);
    }
  }

  private refused(seq: number, why: string): Refused {
    return new Refused(
      `refused event ${seq} of this command: ${why} (nothing of it was shown, nor anything after it)`,
    );
  }
}
