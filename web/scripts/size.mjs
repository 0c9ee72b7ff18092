// The app's budget: at most 150 KB of gzipped JavaScript in dist/ (docs/architecture.md).
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const LIMIT = 150 * 1024;
const dir = new URL("../dist/assets/", import.meta.url).pathname;
let total = 0;
for (const name of readdirSync(dir).filter((n) => n.endsWith(".js"))) {
  const size = gzipSync(readFileSync(join(dir, name)), { level: 9 }).length;
  total += size;
  console.log(`${name}: ${(size / 1024).toFixed(1)} KB gzipped`);
}
console.log(`total: ${(total / 1024).toFixed(1)} KB gzipped (budget ${LIMIT / 1024} KB)`);
if (total > LIMIT) {
  console.error("over the budget: the app's JavaScript must stay within 150 KB gzipped");
  process.exit(1);
}
