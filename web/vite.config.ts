import { defineConfig, type Plugin } from "vitest/config";

/**
 * The Content-Security-Policy, in a <meta> tag so any static host serves it: no inline script
 * or style, nothing from other origins but the cloud. `connect-src` allows the app's own
 * origin and Supabase's hosted projects; a self-hosted Supabase on another origin is added at
 * build time with HELIX_WEB_CONNECT_SRC="https://db.example.com wss://db.example.com".
 */
function csp(): string {
  const extra = process.env.HELIX_WEB_CONNECT_SRC?.trim();
  const connect = ["'self'", "https://*.supabase.co", "wss://*.supabase.co", ...(extra ? extra.split(/\s+/) : [])];
  return [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    `connect-src ${connect.join(" ")}`,
    "worker-src 'self'",
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "object-src 'none'",
  ].join("; ");
}

function cspMeta(): Plugin {
  return {
    name: "helix-csp",
    transformIndexHtml: (html) => html.replace("%HELIX_CSP%", csp()),
  };
}

// A static build with relative URLs (it can be served from any folder); hashed files under
// dist/assets, no inline script (the CSP forbids it).
export default defineConfig({
  base: "./",
  plugins: [cspMeta()],
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    target: "es2022",
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
  },
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
  },
});
