/** The app's places, kept in the URL fragment so a reload (or a shared link) opens the same one. */
import { useEffect, useState } from "preact/hooks";

export type Route =
  | { page: "home" }
  | { page: "hub"; hub: string; session?: string }
  | { page: "command"; hub: string; commandId: string };

const HEX64 = "[0-9a-f]{64}";
const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

/** Parses `#/hub/<hub>` and `#/hub/<hub>/c/<command id>`; anything else is home. */
export function parseRoute(hash: string): Route {
  const command = new RegExp(`^#/hub/(${HEX64})/c/(${UUID})$`).exec(hash);
  if (command?.[1] && command[2]) return { page: "command", hub: command[1], commandId: command[2] };
  const hub = new RegExp(`^#/hub/(${HEX64})(?:/session/([^/]+))?$`).exec(hash);
  if (hub?.[1]) {
    if (!hub[2]) return { page: "hub", hub: hub[1] };
    try {
      return { page: "hub", hub: hub[1], session: decodeURIComponent(hub[2]) };
    } catch {
      return { page: "hub", hub: hub[1] };
    }
  }
  return { page: "home" };
}

export function hrefFor(route: Route): string {
  switch (route.page) {
    case "home":
      return "#/";
    case "hub":
      return route.session
        ? `#/hub/${route.hub}/session/${encodeURIComponent(route.session)}`
        : `#/hub/${route.hub}`;
    case "command":
      return `#/hub/${route.hub}/c/${route.commandId}`;
  }
}

export function navigate(route: Route): void {
  location.hash = hrefFor(route);
}

/** The current route, following `hashchange`. */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(location.hash));
    addEventListener("hashchange", onChange);
    return () => removeEventListener("hashchange", onChange);
  }, []);
  return route;
}
