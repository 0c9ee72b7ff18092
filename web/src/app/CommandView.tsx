/**
 * One command, live: its prompt, where it is (waiting for the hub, queued, running), the output
 * as it streams (Markdown, rendered without raw HTML), cancel, and its end. A reload resumes
 * after the last event shown (kept in sessionStorage), so nothing is shown twice.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import type { SupabaseClient } from "@supabase/supabase-js";
import { cancelCommand, ENDED, type CommandRow } from "../cloud/commands";
import { Follower } from "../cloud/follow";
import type { CommandPayload, Device } from "../cloud/wire";
import { Reassembly } from "../lib/reassembly";
import { renderMarkdown } from "../lib/markdown";
import type { Presence } from "./state";
import { hrefFor } from "./routes";
import { namedSession } from "./HubView";

const SAVE_EVERY_MS = 250;

function storageKey(commandId: string): string {
  return `helix-follow-${commandId}`;
}

function restore(commandId: string): Reassembly {
  const saved = sessionStorage.getItem(storageKey(commandId));
  if (saved) {
    try {
      return Reassembly.restore(JSON.parse(saved));
    } catch {
      sessionStorage.removeItem(storageKey(commandId));
    }
  }
  return new Reassembly();
}

export function CommandView(props: {
  client: SupabaseClient;
  device: Device;
  hub: string;
  commandId: string;
  presence: Presence | undefined;
}) {
  const { client, device, hub, commandId, presence } = props;
  const stream = useRef<Reassembly>(restore(commandId));
  const [text, setText] = useState(stream.current.text);
  const [row, setRow] = useState<CommandRow | null>(null);
  const [prompt, setPrompt] = useState<CommandPayload | null>(null);
  const [phase, setPhase] = useState<string>("");
  const [ending, setEnding] = useState<{ status: string; reason: string } | null>(
    stream.current.finished ? { status: stream.current.finished.status, reason: stream.current.finished.error ?? "" } : null,
  );
  const [refusal, setRefusal] = useState("");
  const [problem, setProblem] = useState("");
  const [offline, setOffline] = useState("");
  /** How the command continues its session (turns left out, a lost Claude Code session). */
  const [note, setNote] = useState("");
  const [cancelling, setCancelling] = useState(false);

  useEffect(() => {
    const reassembly = stream.current;
    let saveTimer: ReturnType<typeof setTimeout> | undefined;
    const save = () => {
      clearTimeout(saveTimer);
      saveTimer = undefined;
      sessionStorage.setItem(storageKey(commandId), JSON.stringify(reassembly.serialize()));
    };
    const follower = new Follower({
      client,
      device,
      hub,
      commandId,
      // A command seen to its end is read again from its `finished` event (checked like any
      // other, shown once): an end that was already shown still ends the follow.
      afterSeq: reassembly.finished ? reassembly.lastSeq - 1 : reassembly.lastSeq,
      onUpdate: (update) => {
        switch (update.type) {
          case "row":
            setRow(update.row);
            break;
          case "prompt":
            setPrompt(update.prompt);
            break;
          case "event": {
            for (const event of reassembly.push(update.event)) {
              switch (event.kind) {
                case "queued":
                  setPhase(`queued (position ${event.position})`);
                  break;
                case "started":
                  setPhase(event.attempt > 1 ? `running (attempt ${event.attempt})` : "running");
                  if (event.note) setNote(event.note);
                  break;
                case "retrying":
                  setPhase(`retrying in ${Math.round(event.delayMs / 1000)} s: ${event.reason}`);
                  break;
                case "finished":
                  setEnding({ status: event.status, reason: event.error ?? "" });
                  break;
                case "output":
                  break;
              }
            }
            setText(reassembly.text);
            saveTimer ??= setTimeout(save, SAVE_EVERY_MS);
            break;
          }
          case "ended":
            setEnding({ status: update.status, reason: update.reason });
            break;
          case "refused":
            setRefusal(update.message);
            break;
          case "error":
            setProblem(update.message);
            break;
          case "offline":
            setOffline(update.message);
            break;
          case "online":
            setOffline("");
            break;
        }
      },
    });
    void follower.run();
    addEventListener("pagehide", save);
    return () => {
      follower.stop();
      removeEventListener("pagehide", save);
      save();
    };
  }, [client, device, hub, commandId]);

  const ended = ending !== null || (row !== null && ENDED.has(row.status));
  const waiting = !ended && (row === null || row.status === "pending");

  async function cancel() {
    setCancelling(true);
    try {
      await cancelCommand(client, commandId);
    } catch (e) {
      setProblem((e as Error).message);
      setCancelling(false);
    }
  }

  return (
    <article class="stack command" data-command-id={commandId}>
      <p>
        <a href={hrefFor({ page: "hub", hub })}>← back to the hub</a>
      </p>
      {prompt && (
        <section class="card prompt" aria-label="Prompt">
          <p class="prompt-text">{prompt.content}</p>
          <p class="meta">
            {[prompt.provider, prompt.model, namedSession(prompt) && `session ${prompt.sessionId}`].filter(Boolean).join(" · ")}
          </p>
          {/* Any command can be continued: its session goes on with the next prompt. */}
          <a class="continue" href={hrefFor({ page: "hub", hub, session: prompt.sessionId ?? prompt.commandId })}>
            Continue this conversation
          </a>
        </section>
      )}
      <p class="phase" data-testid="status" aria-live="polite">
        {ending
          ? `${ending.status}${ending.reason ? `: ${ending.reason}` : ""}`
          : waiting
            ? presence
              ? "waiting for the hub…"
              : "waiting for the hub (it is offline; it runs this when it comes back)…"
            : phase || "running"}
      </p>
      {note && (
        <p class="warning" data-testid="note">
          {note}
        </p>
      )}
      {offline && <p class="warning">{offline}</p>}
      {refusal && (
        <p class="error" role="alert" data-testid="refusal">
          {refusal}
        </p>
      )}
      {problem && (
        <p class="error" role="alert">
          {problem}
        </p>
      )}
      {/* The Markdown renderer escapes all HTML in the agent's output (lib/markdown). */}
      <div class="output" data-testid="output" dangerouslySetInnerHTML={{ __html: renderMarkdown(text) }} />
      <pre class="raw-output" data-testid="raw-output" hidden>
        {text}
      </pre>
      {!ended && (
        <button type="button" class="danger" onClick={cancel} disabled={cancelling}>
          {cancelling ? "Cancelling…" : "Cancel"}
        </button>
      )}
    </article>
  );
}
