/** Pairing this browser with the hub a pairing link names (after the person says so). */
import { useState } from "preact/hooks";
import type { SupabaseClient } from "@supabase/supabase-js";
import type { PairingLink } from "./pairlink";
import { pairThroughCloud } from "../cloud/pairing";
import type { Device } from "../cloud/wire";
import type { StoredPairing } from "./state";

export function defaultDeviceName(): string {
  const ua = navigator.userAgent;
  const browser = /Firefox\//.test(ua)
    ? "Firefox"
    : /Edg\//.test(ua)
      ? "Edge"
      : /Chrome\//.test(ua)
        ? "Chrome"
        : /Safari\//.test(ua)
          ? "Safari"
          : "browser";
  const os = /Android/.test(ua)
    ? "Android"
    : /iPhone|iPad/.test(ua)
      ? "iOS"
      : /Mac OS X/.test(ua)
        ? "macOS"
        : /Windows/.test(ua)
          ? "Windows"
          : /Linux/.test(ua)
            ? "Linux"
            : "";
  return os ? `${browser} on ${os}` : browser;
}

export function Pair(props: {
  client: SupabaseClient;
  device: Device;
  link: PairingLink;
  onPaired: (pairing: StoredPairing) => void;
  onDismiss: () => void;
}) {
  const { client, device, link } = props;
  const [name, setName] = useState(defaultDeviceName);
  const [progress, setProgress] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const expired = link.expiresAtMs <= Date.now();

  async function pair(e: Event) {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      const result = await pairThroughCloud(client, device, link.hub, link.secret, name.trim() || defaultDeviceName(), setProgress);
      if (result.accepted) {
        props.onPaired({
          hubId: link.hub,
          hubName: result.hubName,
          supabaseUrl: link.supabaseUrl,
          anonKey: link.anonKey,
          pairedAtMs: Date.now(),
          deviceName: name.trim(),
        });
      } else {
        setError(`the hub refused to pair: ${result.reason}`);
      }
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
      setProgress("");
    }
  }

  return (
    <section class="card" aria-labelledby="pair-title">
      <h2 id="pair-title">Pair with hub {link.hub.slice(0, 10)}</h2>
      {expired ? (
        <p class="error" role="alert">
          This pairing link expired at {new Date(link.expiresAtMs).toLocaleString()}: run{" "}
          <code>helix-hub pair --web</code> again on the hub.
        </p>
      ) : (
        <form onSubmit={pair}>
          <p class="muted">
            This browser will be able to run prompts on that hub and read every command of it. Pair only
            with your own hub.
          </p>
          <label>
            Name this device
            <input name="device-name" value={name} maxLength={64} onInput={(e) => setName(e.currentTarget.value)} />
          </label>
          {progress && <p class="progress">{progress}</p>}
          {error && (
            <p class="error" role="alert">
              {error}
            </p>
          )}
          <div class="row">
            <button type="submit" disabled={busy}>
              Pair
            </button>
            <button type="button" class="secondary" disabled={busy} onClick={props.onDismiss}>
              Not now
            </button>
          </div>
        </form>
      )}
    </section>
  );
}
