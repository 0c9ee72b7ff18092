// The app shell offline: the page and its hashed assets are cached when the worker installs
// (read from index.html), navigations are answered from the network first and from the cache
// when offline, assets from the cache first. Nothing else is touched: requests to the cloud
// (Supabase REST, Auth, Realtime) always go to the network, so no prompt, output or token is
// ever cached.
const CACHE = "helix-shell-v1";
const scope = new URL(self.registration.scope);
const shellUrl = new URL("./", scope).href;

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      const response = await fetch(shellUrl, { cache: "no-cache" });
      const html = await response.clone().text();
      await cache.put(shellUrl, response);
      const assets = [...html.matchAll(/(?:src|href)="([^"]+)"/g)]
        .map((m) => new URL(m[1], shellUrl))
        .filter((url) => url.origin === scope.origin && url.href.startsWith(scope.href))
        .map((url) => url.href);
      await cache.addAll([...new Set([...assets, new URL("manifest.webmanifest", scope).href])]);
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      for (const key of await caches.keys()) if (key !== CACHE) await caches.delete(key);
      await self.clients.claim();
    })(),
  );
});

function isShellRequest(url) {
  if (url.origin !== scope.origin || !url.href.startsWith(scope.href)) return false;
  const path = url.pathname.slice(scope.pathname.length);
  return !/^(rest|auth|realtime|storage|functions)\/v1\//.test(path);
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (!isShellRequest(url)) return;
  if (request.mode === "navigate") {
    event.respondWith(
      (async () => {
        try {
          const response = await fetch(request);
          if (response.ok) (await caches.open(CACHE)).put(shellUrl, response.clone());
          return response;
        } catch {
          return (await caches.match(shellUrl)) ?? Response.error();
        }
      })(),
    );
    return;
  }
  event.respondWith(
    (async () => {
      const cached = await caches.match(request);
      if (cached) return cached;
      const response = await fetch(request);
      if (response.ok && url.pathname.includes("/assets/")) {
        (await caches.open(CACHE)).put(request, response.clone());
      }
      return response;
    })(),
  );
});
