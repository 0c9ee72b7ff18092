/**
 * The web pairing link that `helix-hub pair --web` prints: `<app URL>#pair=1&hub=…&secret=…
 * &url=…&anon=…&exp=…` (docs/protocol.md, "The web pairing link"; golden vectors in
 * proto/vectors/web-pairing-link.json). The pairing lives in the fragment, which the browser
 * never sends to the host serving the app.
 */

/** The link's version this app reads. */
export const WEB_LINK_VERSION = 1;

/** What a pairing link carries. */
export interface PairingLink {
  /** The hub's key, 64 lower-case hex digits. */
  hub: string;
  /** The one-time secret, 64 lower-case hex digits. */
  secret: string;
  /** The Supabase project the hub and this device meet in. */
  supabaseUrl: string;
  anonKey: string;
  /** When the secret expires (ms since the Unix epoch). */
  expiresAtMs: number;
}

/** A link that cannot pair; its message says what to do. */
export class PairingLinkError extends Error {
  override name = "PairingLinkError";
}

const HEX64 = /^[0-9a-f]{64}$/;

function damaged(what: string): PairingLinkError {
  return new PairingLinkError(`this pairing link is damaged (${what}); copy it again`);
}

/** Whether a URL fragment (with or without its `#`) carries a pairing at all. */
export function hasPairing(fragment: string): boolean {
  return new URLSearchParams(fragment.replace(/^#/, "")).has("pair");
}

/** Parses a fragment; throws {@link PairingLinkError} with the vectors' texts. */
export function parsePairingFragment(fragment: string): PairingLink {
  const params = new URLSearchParams(fragment.replace(/^#/, ""));
  const version = params.get("pair");
  if (version === null) {
    throw new PairingLinkError(
      "this link does not carry a pairing (it has no pair= part); run helix-hub pair --web again",
    );
  }
  if (version !== String(WEB_LINK_VERSION)) {
    throw new PairingLinkError(
      `this pairing link has version ${version}; this app reads version ${WEB_LINK_VERSION}: update the app`,
    );
  }
  const hub = params.get("hub") ?? "";
  if (!HEX64.test(hub)) throw damaged("its hub key is missing or not 64 lower-case hex digits");
  const secret = params.get("secret") ?? "";
  if (!HEX64.test(secret)) throw damaged("its secret is missing or not 64 hex digits");
  const supabaseUrl = params.get("url") ?? "";
  if (!isHttpUrl(supabaseUrl)) throw damaged("its Supabase URL is missing or not http(s)");
  const anonKey = params.get("anon") ?? "";
  if (anonKey === "") throw damaged("its anon key is missing");
  const exp = params.get("exp") ?? "";
  if (!/^[0-9]{1,16}$/.test(exp) || !Number.isSafeInteger(Number(exp))) {
    throw damaged("its expiry is not a time");
  }
  return { hub, secret, supabaseUrl, anonKey, expiresAtMs: Number(exp) };
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === "https:" || url.protocol === "http:";
  } catch {
    return false;
  }
}
