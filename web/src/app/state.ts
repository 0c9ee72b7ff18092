/** What the app keeps between visits, and the hubs' presence as the cloud sees it. */
import type { SupabaseClient } from "@supabase/supabase-js";

export type { StoredPairing } from "../lib/keystore";

/** A hub's presence row (`online_cloud_hubs`). */
export interface Presence {
  hub_id: string;
  hub_name: string;
  providers: string[];
  last_seen: string;
  version?: string;
}

/** The caller's hubs seen within the last 5 minutes (the CLI's `ONLINE_WITHIN`). */
export async function onlineHubs(client: SupabaseClient): Promise<Map<string, Presence>> {
  const { data, error } = await client.rpc("online_cloud_hubs", { p_within_seconds: 300 });
  if (error) throw new Error(`reading which hubs are online: ${error.message}`);
  const map = new Map<string, Presence>();
  for (const row of (data ?? []) as Presence[]) map.set(row.hub_id, row);
  return map;
}

/** A short, readable age: "just now", "3 min ago", "2 h ago", or a date. */
export function age(iso: string, nowMs = Date.now()): string {
  const ms = nowMs - Date.parse(iso);
  if (!Number.isFinite(ms)) return "";
  if (ms < 60_000) return "just now";
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ago`;
  if (ms < 86_400_000) return `${Math.floor(ms / 3_600_000)} h ago`;
  return new Date(iso).toLocaleDateString();
}
