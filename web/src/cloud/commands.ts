/**
 * Commands through the cloud, as a device writes and reads them (docs/protocol.md, "A
 * command's life" and "A device reads a command"): insert a sealed command, cancel it, list
 * the hub's shared history, read a row, this device's content key and the events after a seq.
 */
import type { SupabaseClient } from "@supabase/supabase-js";
import { isTransient, type RestFailure } from "./supabase";
import { sealCommand, openPrompt, unwrapKey, type CommandPayload, type Device } from "./wire";
import { PROVIDERS, type Provider } from "../crypto/payload";

/** Rows of `cloud_commands`; envelopes never leave their columns unopened. */
export interface CommandRow {
  command_id: string;
  hub_id: string;
  source_device_id: string | null;
  status: "pending" | "executing" | "completed" | "failed" | "cancelled" | "expired";
  reason: string | null;
  last_seq: number;
  prompt?: string | null;
  created_at: string;
  expires_at?: string;
}

export const ENDED = new Set(["completed", "failed", "cancelled", "expired"]);

/** Events per page (the CLI's page). */
export const EVENT_PAGE = 32;

/** A cloud call failed; `transient` when trying again may help (no answer, a 5xx). */
export class CloudError extends Error {
  override name = "CloudError";
  constructor(
    message: string,
    readonly code?: string,
    readonly transient = false,
  ) {
    super(message);
  }
}

function fail(action: string, error: RestFailure): never {
  throw new CloudError(`${action}: ${error.message}`, error.code, isTransient(error));
}

/** What a person asks the hub to run. */
export interface Prompt {
  content: string;
  provider?: string;
  model?: string;
  sessionId?: string;
}

/** How long a command may wait for the hub before it expires (the CLI's default). */
export const DEFAULT_TTL_MS = 60 * 60 * 1000;

/** Inserts a sealed command for `hub`; returns its id. */
export async function sendCommand(
  client: SupabaseClient,
  device: Device,
  hub: string,
  prompt: Prompt,
  nowMs = Date.now(),
): Promise<string> {
  const commandId = crypto.randomUUID();
  const expiresAtMs = nowMs + DEFAULT_TTL_MS;
  const payload: CommandPayload = {
    commandId,
    content: prompt.content,
    provider: PROVIDERS.find((p): p is Provider => p === prompt.provider),
    model: prompt.model || undefined,
    sessionId: prompt.sessionId || undefined,
    createdAtMs: nowMs,
    expiresAtMs,
  };
  const envelope = sealCommand(device, hub, payload, expiresAtMs);
  const { error } = await client.from("cloud_commands").insert(
    {
      command_id: commandId,
      hub_id: hub,
      source_device_id: device.id,
      envelope,
      expires_at: new Date(expiresAtMs).toISOString(),
    },
  );
  if (error) {
    if (error.code === "23503") {
      throw new CloudError(
        "this hub has not connected to the cloud under this account: on the hub run helix-hub cloud login with the same account, then restart it",
        error.code,
      );
    }
    if (error.code === "54000") {
      throw new CloudError(
        "64 commands are already waiting for the hub: wait for it to take them, or cancel some",
        error.code,
      );
    }
    if (error.code === "42501") {
      throw new CloudError("the cloud refused this account: sign in again", error.code);
    }
    fail("sending the command", error);
  }
  return commandId;
}

/** Cancels a pending or running command; an ended one keeps its end. */
export async function cancelCommand(
  client: SupabaseClient,
  commandId: string,
  reason = "cancelled from the web app",
): Promise<void> {
  const { error } = await client.rpc("cancel_cloud_command", {
    p_command_id: commandId,
    p_reason: reason,
  });
  if (error && error.code !== "55000") fail("cancelling", error);
}

/** One command's row, or `null` when the cloud has none. */
export async function readRow(
  client: SupabaseClient,
  commandId: string,
  withPrompt: boolean,
): Promise<CommandRow | null> {
  const columns = `command_id,hub_id,source_device_id,status,reason,last_seq,created_at${withPrompt ? ",prompt" : ""}`;
  const { data, error } = await client
    .from("cloud_commands")
    .select(columns)
    .eq("command_id", commandId)
    .limit(1);
  if (error) fail("reading the command", error);
  return ((data ?? []) as unknown as CommandRow[])[0] ?? null;
}

/** This device's sealed content key for a command, or `null`. */
export async function readKey(
  client: SupabaseClient,
  commandId: string,
  deviceId: string,
): Promise<string | null> {
  const { data, error } = await client
    .from("cloud_command_keys")
    .select("envelope")
    .eq("command_id", commandId)
    .eq("device_id", deviceId)
    .limit(1);
  if (error) fail("reading the content key", error);
  const rows = (data ?? []) as { envelope: string }[];
  return rows[0]?.envelope ?? null;
}

/** A stored event, still sealed. */
export interface StoredEvent {
  seq: number;
  envelope: string;
}

/** The events after `after`, oldest first, at most {@link EVENT_PAGE}. */
export async function readEvents(
  client: SupabaseClient,
  commandId: string,
  after: number,
): Promise<StoredEvent[]> {
  const { data, error } = await client
    .from("cloud_command_events")
    .select("seq,envelope")
    .eq("command_id", commandId)
    .gt("seq", after)
    .order("seq", { ascending: true })
    .limit(EVENT_PAGE);
  if (error) fail("reading events", error);
  return (data ?? []) as StoredEvent[];
}

/** One entry of the shared history: the row, and its prompt when this device can open it. */
export interface HistoryEntry {
  row: CommandRow;
  prompt?: CommandPayload;
  /** Why the prompt is not shown (no key for this device, or a refused envelope). */
  hidden?: string;
}

/** The hub's newest commands from every device and route, with the prompts this device can read. */
export async function listHistory(
  client: SupabaseClient,
  device: Device,
  hub: string,
  limit = 50,
): Promise<HistoryEntry[]> {
  const { data, error } = await client
    .from("cloud_commands")
    .select("command_id,hub_id,source_device_id,status,reason,last_seq,prompt,created_at,expires_at")
    .eq("hub_id", hub)
    .order("created_at", { ascending: false })
    .limit(limit);
  if (error) fail("reading the history", error);
  const rows = (data ?? []) as CommandRow[];
  const ids = rows.filter((r) => r.prompt).map((r) => r.command_id);
  const keys = new Map<string, string>();
  if (ids.length > 0) {
    const { data: keyRows, error: keyError } = await client
      .from("cloud_command_keys")
      .select("command_id,envelope")
      .eq("device_id", device.id)
      .in("command_id", ids);
    if (keyError) fail("reading the content keys", keyError);
    for (const k of (keyRows ?? []) as { command_id: string; envelope: string }[]) {
      keys.set(k.command_id, k.envelope);
    }
  }
  return rows.map((row) => {
    if (!row.prompt) return { row };
    const sealedKey = keys.get(row.command_id);
    if (!sealedKey) {
      return { row, hidden: "this device was paired after it started" };
    }
    try {
      const key = unwrapKey(device, hub, row.command_id, sealedKey);
      return { row, prompt: openPrompt(key, hub, row.command_id, row.prompt) };
    } catch (e) {
      return { row, hidden: `refused: ${(e as Error).message}` };
    }
  });
}
