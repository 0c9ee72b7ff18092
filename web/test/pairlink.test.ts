import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { hasPairing, parsePairingFragment } from "../src/app/pairlink";

interface LinkVector {
  name: string;
  app_url: string;
  hub: string;
  secret: string;
  supabase_url: string;
  anon_key: string;
  expires_at_ms: number;
  link: string;
}
interface Refusal {
  name: string;
  fragment: string;
  error: string;
}
const vectors = JSON.parse(
  readFileSync(new URL("../../proto/vectors/web-pairing-link.json", import.meta.url), "utf8"),
) as { links: LinkVector[]; refusals: Refusal[] };

describe("web pairing link (golden vectors)", () => {
  test.each(vectors.links)("parses $name", (v) => {
    expect(v.link.startsWith(`${v.app_url}#`)).toBe(true);
    const fragment = v.link.slice(v.app_url.length);
    expect(hasPairing(fragment)).toBe(true);
    expect(parsePairingFragment(fragment)).toEqual({
      hub: v.hub,
      secret: v.secret,
      supabaseUrl: v.supabase_url,
      anonKey: v.anon_key,
      expiresAtMs: v.expires_at_ms,
    });
    // What a browser hands the app: the fragment of the parsed URL.
    expect(parsePairingFragment(new URL(v.link).hash).secret).toBe(v.secret);
  });

  test.each(vectors.refusals)("refuses $name", (r) => {
    expect(() => parsePairingFragment(r.fragment)).toThrow(r.error);
  });

  test("a plain app URL carries no pairing", () => {
    expect(hasPairing("")).toBe(false);
    expect(hasPairing("#/commands/x")).toBe(false);
  });
});
