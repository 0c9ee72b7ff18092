/**
 * Start-up: take a pairing link out of the address bar and history at once, open this
 * device's key store, ask the browser to keep it, start the service worker, render.
 */
import { render } from "preact";
import { App, type Boot } from "./app/App";
import { hasPairing, parsePairingFragment, type PairingLink } from "./app/pairlink";
import { openKeyStore, requestPersistence } from "./lib/keystore";
import "./app/styles.css";

function takePairingLink(): { link: PairingLink | null; linkError: string } {
  const fragment = location.hash;
  if (!hasPairing(fragment)) return { link: null, linkError: "" };
  // The fragment holds a one-time secret: out of the address bar and this history entry now.
  history.replaceState(null, "", `${location.pathname}${location.search}#/`);
  try {
    return { link: parsePairingFragment(fragment), linkError: "" };
  } catch (e) {
    return { link: null, linkError: (e as Error).message };
  }
}

async function boot(): Promise<Boot> {
  const { link, linkError } = takePairingLink();
  const store = await openKeyStore();
  const key = await store.deviceKey();
  void requestPersistence();
  return {
    store,
    device: { secret: key.secret, id: key.publicHex },
    pairings: await store.pairings.list(),
    link,
    linkError,
  };
}

const root = document.getElementById("app");
if (root) {
  boot().then(
    (state) => render(<App boot={state} />, root),
    (e: Error) => {
      root.textContent = `Helix Mesh could not start: ${e.message}`;
    },
  );
}

if ("serviceWorker" in navigator && import.meta.env.PROD) {
  void navigator.serviceWorker.register("./sw.js", { scope: "./" });
}
