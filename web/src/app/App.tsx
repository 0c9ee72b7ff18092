/**
 * The app: sign in to the cloud the hubs use, pair from a link, the paired hubs (online or
 * offline from presence), one hub's prompt box and history, one command live.
 */
import { useEffect, useMemo, useState } from "preact/hooks";
import type { Session } from "@supabase/supabase-js";
import { supabaseFor } from "../cloud/supabase";
import type { Device } from "../cloud/wire";
import type { KeyStore } from "../lib/keystore";
import type { PairingLink } from "./pairlink";
import { CommandView } from "./CommandView";
import { HubView } from "./HubView";
import { Pair } from "./Pair";
import { SignIn } from "./SignIn";
import { hrefFor, navigate, useRoute } from "./routes";
import { age, onlineHubs, type Presence, type StoredPairing } from "./state";

const PRESENCE_POLL_MS = 30_000;

export interface Boot {
  store: KeyStore;
  device: Device;
  pairings: StoredPairing[];
  /** A pairing link the app was opened with (already removed from the address bar). */
  link: PairingLink | null;
  /** Why the link the app was opened with cannot pair. */
  linkError: string;
}

export function App({ boot }: { boot: Boot }) {
  const { store, device } = boot;
  const [pairings, setPairings] = useState(boot.pairings);
  const [link, setLink] = useState(boot.link);
  const [linkError, setLinkError] = useState(boot.linkError);
  const route = useRoute();

  // One cloud project: the link's, else the paired hubs'.
  const project = link
    ? { url: link.supabaseUrl, anonKey: link.anonKey }
    : pairings[0]
      ? { url: pairings[0].supabaseUrl, anonKey: pairings[0].anonKey }
      : null;
  const client = useMemo(() => (project ? supabaseFor(project) : null), [project?.url, project?.anonKey]);
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [presence, setPresence] = useState<Map<string, Presence>>(new Map());
  const [presenceError, setPresenceError] = useState("");

  useEffect(() => {
    if (!client) return;
    void client.auth.getSession().then(({ data }) => setSession(data.session));
    const { data } = client.auth.onAuthStateChange((_event, next) => setSession(next));
    return () => data.subscription.unsubscribe();
  }, [client]);

  useEffect(() => {
    if (!client || !session) return;
    let stopped = false;
    const load = () =>
      onlineHubs(client).then(
        (map) => {
          if (!stopped) {
            setPresence(map);
            setPresenceError("");
          }
        },
        (e: Error) => !stopped && setPresenceError(e.message),
      );
    void load();
    const timer = setInterval(load, PRESENCE_POLL_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [client, session?.user.id]);

  async function paired(pairing: StoredPairing) {
    await store.pairings.put(pairing);
    setPairings(await store.pairings.list());
    setLink(null);
    navigate({ page: "hub", hub: pairing.hubId });
  }

  async function signOut() {
    await client?.auth.signOut();
  }

  const current = route.page === "home" ? undefined : pairings.find((p) => p.hubId === route.hub);
  let body;
  if (!client) {
    body = <Welcome />;
  } else if (session === undefined) {
    body = <p class="muted">Loading…</p>;
  } else if (!session) {
    body = <SignIn client={client} projectHost={new URL(project?.url ?? location.href).host} />;
  } else if (link) {
    body = <Pair client={client} device={device} link={link} onPaired={paired} onDismiss={() => setLink(null)} />;
  } else if (route.page !== "home" && !current) {
    body = (
      <p class="error" role="alert">
        This browser is not paired with hub {route.hub.slice(0, 10)}: on that hub run <code>helix-hub pair --web</code> and open
        its link here.
      </p>
    );
  } else if (route.page === "command" && current) {
    body = (
      <CommandView
        key={route.commandId}
        client={client}
        device={device}
        hub={current.hubId}
        commandId={route.commandId}
        presence={presence.get(current.hubId)}
      />
    );
  } else if (route.page === "hub" && current) {
    body = (
      <HubView
        key={route.session ?? ""}
        client={client}
        device={device}
        pairing={current}
        presence={presence.get(current.hubId)}
        session={route.session}
      />
    );
  } else {
    body = <Hubs pairings={pairings} presence={presence} error={presenceError} />;
  }

  return (
    <>
      <header class="top">
        <a class="brand" href={hrefFor({ page: "home" })}>
          Helix Mesh
        </a>
        {session && (
          <span class="account">
            <span class="muted">{session.user.email}</span>
            <button type="button" class="link" onClick={signOut}>
              Sign out
            </button>
          </span>
        )}
      </header>
      <main>
        {linkError && (
          <p class="error" role="alert">
            {linkError}{" "}
            <button type="button" class="link" onClick={() => setLinkError("")}>
              Dismiss
            </button>
          </p>
        )}
        {body}
      </main>
      <footer class="muted">
        This device: <code title={device.id}>{device.id.slice(0, 10)}</code>
      </footer>
    </>
  );
}

function Welcome() {
  return (
    <section class="card">
      <h2>Pair this browser with your hub</h2>
      <p>
        On the desktop that runs your hub, run <code>helix-hub pair --web --app-url {location.origin + location.pathname}</code>{" "}
        and open the link it prints here (or scan its code with your phone).
      </p>
    </section>
  );
}

function Hubs(props: { pairings: StoredPairing[]; presence: Map<string, Presence>; error: string }) {
  const { pairings, presence, error } = props;
  if (pairings.length === 0) return <Welcome />;
  return (
    <section aria-labelledby="hubs-title">
      <h2 id="hubs-title">Your hubs</h2>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <ul class="hubs">
        {pairings.map((p) => {
          const seen = presence.get(p.hubId);
          return (
            <li key={p.hubId}>
              <a href={hrefFor({ page: "hub", hub: p.hubId })} data-hub-id={p.hubId}>
                <span class="title">{seen?.hub_name || p.hubName || p.hubId.slice(0, 10)}</span>
                <span class={seen ? "badge online" : "badge offline"}>{seen ? "online" : "offline"}</span>
                <span class="meta">{seen ? `seen ${age(seen.last_seen)}` : "not seen in the last 5 minutes"}</span>
              </a>
            </li>
          );
        })}
      </ul>
    </section>
  );
}
