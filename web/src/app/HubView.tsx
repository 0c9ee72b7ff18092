/** One hub: write a prompt, and the shared history of every device's commands. */
import { useEffect, useState } from "preact/hooks";
import type { SupabaseClient } from "@supabase/supabase-js";
import { listHistory, sendCommand, type HistoryEntry } from "../cloud/commands";
import type { Device } from "../cloud/wire";
import { age, type Presence, type StoredPairing } from "./state";
import { hrefFor, navigate } from "./routes";

const HISTORY_POLL_MS = 15_000;

export function HubView(props: {
  client: SupabaseClient;
  device: Device;
  pairing: StoredPairing;
  presence: Presence | undefined;
  /** A session to continue: the prompt box starts in it. */
  session?: string;
}) {
  const { client, device, pairing, presence } = props;
  const hub = pairing.hubId;
  const [history, setHistory] = useState<HistoryEntry[] | null>(null);
  const [error, setError] = useState("");

  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    async function load() {
      try {
        const entries = await listHistory(client, device, hub);
        if (!stopped) {
          setHistory(entries);
          setError("");
        }
      } catch (e) {
        if (!stopped) setError((e as Error).message);
      }
    }
    function schedule() {
      clearTimeout(timer);
      timer = setTimeout(() => void load().then(schedule), HISTORY_POLL_MS);
    }
    void load().then(schedule);
    // New and changed rows of this hub (RLS: only this account's) refresh the list.
    const channel = client
      .channel(`helix-history-${hub.slice(0, 16)}-${Math.random().toString(36).slice(2, 8)}`)
      .on("postgres_changes", { event: "*", schema: "public", table: "cloud_commands", filter: `hub_id=eq.${hub}` }, () => void load())
      .subscribe();
    return () => {
      stopped = true;
      clearTimeout(timer);
      void client.removeChannel(channel);
    };
  }, [client, device, hub]);

  return (
    <div class="stack">
      <header class="hub-head">
        <h2>{pairing.hubName || hub.slice(0, 10)}</h2>
        <span class={presence ? "badge online" : "badge offline"}>{presence ? "online" : "offline"}</span>
      </header>
      <Composer client={client} device={device} hub={hub} presence={presence} session={props.session} />
      <section aria-labelledby="history-title">
        <h3 id="history-title">History</h3>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        {history === null ? (
          <p class="muted">Loading…</p>
        ) : history.length === 0 ? (
          <p class="muted">No commands yet.</p>
        ) : (
          <ul class="history">
            {history.map((entry) => (
              <li key={entry.row.command_id}>
                <a href={hrefFor({ page: "command", hub, commandId: entry.row.command_id })} data-command-id={entry.row.command_id}>
                  <span class={`status ${entry.row.status}`}>{entry.row.status}</span>
                  <span class="title">{entry.prompt ? firstLine(entry.prompt.content) : (entry.hidden ?? "(waiting for the hub)")}</span>
                  <span class="meta">
                    {entry.row.source_device_id === device.id ? "this device" : deviceLabel(entry.row.source_device_id, hub)} ·{" "}
                    {age(entry.row.created_at)}
                    {entry.prompt && namedSession(entry.prompt) ? ` · session ${entry.prompt.sessionId}` : ""}
                  </span>
                </a>
              </li>
            ))}
          </ul>
        )}
      </section>
    </div>
  );
}

/** Whether a command names its session (one it shares with other commands, or could). */
export function namedSession(prompt: { commandId: string; sessionId?: string }): boolean {
  return !!prompt.sessionId && prompt.sessionId !== prompt.commandId;
}

function firstLine(text: string): string {
  const line = text.split("\n", 1)[0] ?? "";
  return line.length > 120 ? `${line.slice(0, 119)}…` : line;
}

function deviceLabel(id: string | null, hub: string): string {
  if (!id) return "unknown device";
  if (id === hub) return "the hub";
  return `device ${id.slice(0, 10)}`;
}

function Composer(props: {
  client: SupabaseClient;
  device: Device;
  hub: string;
  presence: Presence | undefined;
  session?: string;
}) {
  const { client, device, hub, presence } = props;
  const [content, setContent] = useState("");
  const [provider, setProvider] = useState("");
  const [model, setModel] = useState("");
  const [session, setSession] = useState(props.session ?? "");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const providers = presence?.providers ?? ["anthropic", "openai-codex", "google-gemini"];

  async function send(e: Event) {
    e.preventDefault();
    if (content.trim() === "") return;
    setBusy(true);
    setError("");
    try {
      const commandId = await sendCommand(client, device, hub, { content, provider, model, sessionId: session });
      setContent("");
      navigate({ page: "command", hub, commandId });
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <form class="card composer" onSubmit={send} aria-label="New prompt">
      <label class="sr-only" for="prompt">
        Prompt
      </label>
      <textarea
        id="prompt"
        name="prompt"
        rows={4}
        placeholder="Ask the agent on your hub…"
        value={content}
        onInput={(e) => setContent(e.currentTarget.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter" && (e.metaKey || e.ctrlKey)) void send(e);
        }}
      />
      <div class="row options">
        <label>
          Provider
          <select name="provider" value={provider} onChange={(e) => setProvider(e.currentTarget.value)}>
            <option value="">hub's default</option>
            {providers.map((p) => (
              <option key={p} value={p}>
                {p}
              </option>
            ))}
          </select>
        </label>
        <label>
          Model
          <input name="model" placeholder="default" value={model} onInput={(e) => setModel(e.currentTarget.value)} />
        </label>
        <label>
          Session
          <input name="session" placeholder="none" value={session} onInput={(e) => setSession(e.currentTarget.value)} />
        </label>
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="row">
        <button type="submit" disabled={busy || content.trim() === ""}>
          Run
        </button>
        {!presence && <span class="muted">The hub is offline: it runs this when it comes back (within an hour).</span>}
      </div>
    </form>
  );
}
