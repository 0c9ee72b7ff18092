import { describe, expect, test } from "vitest";
import { hrefFor, parseRoute } from "../src/app/routes";

const hub = "ab".repeat(32);
const id = "0b9f7a52-6a3c-4f3e-9c55-3f1c0d2e8a11";

describe("routes", () => {
  test("each place round-trips through its fragment", () => {
    for (const route of [
      { page: "home" } as const,
      { page: "hub", hub } as const,
      { page: "hub", hub, session: "trip to Lisbon/2" } as const,
      { page: "command", hub, commandId: id } as const,
    ]) {
      expect(parseRoute(hrefFor(route))).toEqual(route);
    }
  });

  test("anything else is home", () => {
    for (const hash of ["", "#", "#/hub/xyz", `#/hub/${hub}/c/not-a-uuid`, `#/hub/${hub}/session/%E0%A4%A`]) {
      const route = parseRoute(hash);
      expect(route.page === "home" || (route.page === "hub" && route.session === undefined)).toBe(true);
    }
  });
});
