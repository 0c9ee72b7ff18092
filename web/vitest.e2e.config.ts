import { defineConfig } from "vitest/config";

// The browser tests: real Chromium against helix-local-cloud and a real helix-hub. One file
// at a time (each starts its own cloud and hub; the machine has two cores).
export default defineConfig({
  test: {
    include: ["e2e/**/*.test.ts"],
    environment: "node",
    testTimeout: 180_000,
    hookTimeout: 120_000,
    fileParallelism: false,
    reporters: ["default"],
  },
});
