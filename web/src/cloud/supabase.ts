/**
 * One Supabase client per project the app pairs through (a pairing link names the project).
 * supabase-js keeps the session (refreshing it before it expires); Realtime is only a
 * wake-up signal: every reader also polls (docs/protocol.md, "Realtime").
 */
import { createClient, type SupabaseClient } from "@supabase/supabase-js";

export interface Project {
  url: string;
  anonKey: string;
}

const clients = new Map<string, SupabaseClient>();

/** The client for `project`, created on first use. */
export function supabaseFor(project: Project): SupabaseClient {
  const key = `${project.url}\n${project.anonKey}`;
  let client = clients.get(key);
  if (!client) {
    client = createClient(project.url, project.anonKey, {
      auth: {
        storageKey: `helix-auth-${new URL(project.url).host}`,
        persistSession: true,
        autoRefreshToken: true,
        detectSessionInUrl: false,
      },
      realtime: { params: { eventsPerSecond: 20 } },
    });
    clients.set(key, client);
  }
  return client;
}

/** The text of a PostgREST or network error, keyed on its SQLSTATE where it has one. */
export interface RestFailure {
  code?: string;
  message: string;
}

/** A failure that waiting can fix: no answer, a 5xx, a timeout (the CLI's retry rule). */
export function isTransient(error: RestFailure | null | undefined): boolean {
  if (!error) return false;
  const code = error.code ?? "";
  if (code === "" || /^(08|40|53|57)/.test(code)) return true;
  return /fetch|network|timeout|Failed to fetch|NetworkError/i.test(error.message);
}
