/**
 * The browser tests' world, all real and all local: `helix-local-cloud` (PostgreSQL with the
 * migrations, postrust, the Auth and Realtime stand-ins, and the built app on one origin), a
 * real `helix-hub` signed in to it with `helix-dev-provider` as its Anthropic API, the `helix`
 * CLI as another device, and Debian's Chromium driven by playwright-core.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { createClient } from "@supabase/supabase-js";
import WebSocket from "ws";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";

export const REPO = resolve(import.meta.dirname, "../..");
const BIN = process.env.HELIX_BIN_DIR ?? join(REPO, "target/debug");
export const SHOTS = resolve(import.meta.dirname, "../test-results");

function bin(name: string): string {
  const path = join(BIN, name);
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: run \`cargo build --workspace --bins\` first (scripts/test does)`);
  }
  return path;
}

/** A child process whose stderr is kept for failure messages. */
class Proc {
  readonly stderr: string[] = [];
  readonly exited: Promise<number | null>;
  constructor(readonly child: ChildProcess, readonly name: string) {
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      this.stderr.push(chunk);
      if (process.env.HELIX_E2E_LOG) process.stderr.write(`[${name}] ${chunk}`);
    });
    this.exited = new Promise((done) => child.on("exit", (code) => done(code)));
  }
  log(): string {
    return this.stderr.join("").slice(-4000);
  }
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Runs a command to its end; stdin text optional. */
export async function run(
  command: string,
  args: string[],
  options: { stdin?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(command, args, {
    env: { ...process.env, HELIX_LOG: "warn", ...options.env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
  child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
  child.stdin.end(options.stdin ?? "");
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 90_000);
  const code = await new Promise<number | null>((done) => child.on("exit", (c) => done(c)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** The local cloud, with the built app at its root. */
export class LocalCloud {
  private constructor(
    private readonly proc: Proc,
    readonly url: string,
    readonly anonKey: string,
    readonly email: string,
    readonly password: string,
    /** The throwaway database, as its owner (for tests that play a hostile cloud). */
    readonly databaseUrl: string,
  ) {}

  static async start(): Promise<LocalCloud> {
    const dist = join(REPO, "web/dist");
    if (!existsSync(join(dist, "index.html"))) {
      throw new Error("web/dist is missing: run `npm run build` in web/ first (scripts/test does)");
    }
    const child = spawn(bin("helix-local-cloud"), ["--port", "0", "--web-dir", dist], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const proc = new Proc(child, "cloud");
    const values = new Map<string, string>();
    const lines = createInterface({ input: child.stdout });
    const ready = new Promise<void>((done, fail) => {
      lines.on("line", (line) => {
        const eq = line.indexOf("=");
        if (eq > 0) values.set(line.slice(0, eq), line.slice(eq + 1));
        if (line === "ready") done();
      });
      void proc.exited.then((code) => fail(new Error(`helix-local-cloud exited (${code}): ${proc.log()}`)));
    });
    await withTimeout(ready, 60_000, () => `helix-local-cloud did not get ready: ${proc.log()}`);
    const need = (k: string) => {
      const v = values.get(k);
      if (!v) throw new Error(`helix-local-cloud printed no ${k}`);
      return v;
    };
    return new LocalCloud(proc, need("HELIX_SUPABASE_URL"), need("HELIX_SUPABASE_ANON_KEY"), need("HELIX_TEST_EMAIL"), need("HELIX_TEST_PASSWORD"), need("HELIX_DATABASE_URL"));
  }

  /** The emailed sign-in codes the Auth stand-in printed, newest last. */
  codes(): string[] {
    return [...this.proc.stderr.join("").matchAll(/your code is (\d{6})/g)].map((m) => m[1] ?? "");
  }

  async stop(): Promise<void> {
    await this.proc.stop("SIGINT");
  }
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, fail) => {
    timer = setTimeout(() => fail(new Error(what())), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` until it returns a value, or fails with `what`. */
export async function eventually<T>(check: () => Promise<T | undefined | null | false> | T | undefined | null | false, what: string, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A temporary directory, removed by `cleanup`. */
export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `helix-e2e-${prefix}-`));
}

/** A real hub signed in to the local cloud, answering with helix-dev-provider. */
export class Hub {
  private serve: Proc | null = null;
  private constructor(
    readonly dir: string,
    private readonly provider: Proc,
    private readonly providerUrl: string,
  ) {}

  static async start(cloud: LocalCloud, options: { wordDelayMs?: number } = {}): Promise<Hub> {
    const dir = tempDir("hub");
    const child = spawn(bin("helix-dev-provider"), ["--word-delay-ms", String(options.wordDelayMs ?? 40)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const provider = new Proc(child, "provider");
    const firstLine = await withTimeout(
      new Promise<string>((done) => createInterface({ input: child.stdout }).once("line", done)),
      20_000,
      () => `helix-dev-provider did not start: ${provider.log()}`,
    );
    const hub = new Hub(dir, provider, firstLine.trim());
    await hub.cli(["login", "anthropic", "--api-key"], "sk-ant-local-dev-key");
    await hub.cli(["cloud", "login", "--url", cloud.url, "--anon-key", cloud.anonKey, "--email", cloud.email], cloud.password);
    await hub.startServing();
    return hub;
  }

  private env(): NodeJS.ProcessEnv {
    return { ANTHROPIC_BASE_URL: this.providerUrl, HELIX_HUB_DIR: undefined };
  }

  /** `helix-hub --data-dir DIR ARGS`, which must succeed. */
  async cli(args: string[], stdin?: string): Promise<string> {
    const done = await run(bin("helix-hub"), ["--data-dir", this.dir, ...args], { stdin, env: this.env() });
    if (done.code !== 0) throw new Error(`helix-hub ${args.join(" ")} exited ${done.code}: ${done.stderr}`);
    return done.stdout;
  }

  /** Starts `helix-hub serve` and waits until it is announced in the cloud. */
  async startServing(): Promise<void> {
    rmSync(join(this.dir, "hub.json"), { force: true });
    const child = spawn(bin("helix-hub"), ["--data-dir", this.dir, "serve", "--grpc-addr", "127.0.0.1:0", "--local-only"], {
      env: { ...process.env, ...this.env(), HELIX_LOG: "info" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    this.serve = new Proc(child, "hub");
    await eventually(() => existsSync(join(this.dir, "hub.json")), `helix-hub serve to start: ${this.serve.log()}`);
  }

  /** The hub's id (64 hex digits), from `helix-hub status --json`. */
  async id(): Promise<string> {
    const status = JSON.parse(await this.cli(["status", "--json"])) as { hub?: { hub_id?: string } };
    const id = status.hub?.hub_id;
    if (!id) throw new Error(`helix-hub status --json has no hub id: ${JSON.stringify(status)}`);
    return id;
  }

  /** Waits until the cloud lists the hub online (its presence row is fresh). */
  async waitOnline(cloud: LocalCloud, online = true): Promise<void> {
    const client = createClient(cloud.url, cloud.anonKey, {
      auth: { persistSession: false },
      realtime: { transport: WebSocket as unknown as never },
    });
    await client.auth.signInWithPassword({ email: cloud.email, password: cloud.password });
    const id = await this.id();
    await eventually(async () => {
      const { data } = await client.rpc("online_cloud_hubs", { p_within_seconds: 300 });
      const listed = ((data ?? []) as { hub_id: string }[]).some((r) => r.hub_id === id);
      return listed === online;
    }, `the cloud to list hub ${id.slice(0, 10)} ${online ? "online" : "offline"}: ${this.log()}`, 30_000);
    await client.auth.signOut();
  }

  async stopServing(): Promise<void> {
    await this.serve?.stop("SIGTERM");
    this.serve = null;
  }

  /** The hub's log so far (for failure messages). */
  log(): string {
    return this.serve?.log() ?? "";
  }

  /** A web pairing link for `appUrl`. */
  async pairLink(appUrl: string): Promise<string> {
    const out = await this.cli(["pair", "--web", "--app-url", appUrl, "--json"]);
    return (JSON.parse(out.trim().split("\n").pop() ?? "{}") as { link: string }).link;
  }

  /** `helix --hub-dir DIR run PROMPT`: a command through the hub's local listener (which the
   * hub mirrors to the cloud, like those that come over iroh). */
  async localRun(prompt: string): Promise<string> {
    const done = await run(bin("helix"), ["--hub-dir", this.dir, "run", prompt], { env: this.env() });
    if (done.code !== 0) throw new Error(`helix --hub-dir run exited ${done.code}: ${done.stderr}`);
    return done.stdout;
  }

  /** `helix --hub-dir DIR sessions SESSION --json`: the session as the hub keeps it. */
  async session(id: string): Promise<{ total_turns: number; turns: { prompt: string; source_device_id: string }[] }> {
    const done = await run(bin("helix"), ["--hub-dir", this.dir, "sessions", id, "--json"], { env: this.env() });
    if (done.code !== 0) throw new Error(`helix sessions ${id} exited ${done.code}: ${done.stderr}`);
    return JSON.parse(done.stdout) as { total_turns: number; turns: { prompt: string; source_device_id: string }[] };
  }

  /** A pairing ticket for the CLI. */
  async ticket(): Promise<string> {
    const out = await this.cli(["pair", "--ttl", "5m"]);
    return out.trim().split("\n").pop() ?? "";
  }

  async stop(): Promise<void> {
    await this.stopServing();
    await this.provider.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The `helix` CLI as a device of the same account, paired through the cloud. */
export class CliDevice {
  private constructor(readonly dir: string) {}

  static async pair(cloud: LocalCloud, hub: Hub): Promise<CliDevice> {
    const dir = tempDir("cli");
    mkdirSync(dir, { recursive: true });
    const device = new CliDevice(dir);
    await device.must(["cloud", "login", "--url", cloud.url, "--anon-key", cloud.anonKey, "--email", cloud.email], cloud.password);
    await device.must(["pair", "--via", "cloud", "--name", "desk"], await hub.ticket());
    return device;
  }

  run(args: string[], stdin?: string) {
    return run(bin("helix"), ["--config-dir", this.dir, "--local-only", ...args], {
      stdin,
      env: { HELIX_HUB_DIR: undefined, HELIX_CONFIG_DIR: undefined },
    });
  }

  async must(args: string[], stdin?: string): Promise<string> {
    const done = await this.run(args, stdin);
    if (done.code !== 0) throw new Error(`helix ${args.join(" ")} exited ${done.code}: ${done.stderr}`);
    return done.stdout;
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Debian's Chromium, headless, with nothing reaching outside (the machine has no internet). */
export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: process.env.HELIX_CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
    ],
  });
}

/** A phone-sized browser context (360 × 740) or a desktop one. */
export async function newDevice(browser: Browser, kind: "phone" | "desktop" = "phone"): Promise<BrowserContext> {
  return kind === "phone"
    ? browser.newContext({ viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true })
    : browser.newContext({ viewport: { width: 1280, height: 800 } });
}

/** Everything a page logged as an error or a failed CSP check, for assertions. */
export function collectProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(m.text());
  });
  page.on("pageerror", (e) => problems.push(String(e)));
  return problems;
}

/** Signs in on the app's sign-in card. */
export async function signIn(page: Page, cloud: LocalCloud): Promise<void> {
  await page.getByLabel("Email").fill(cloud.email);
  await page.getByLabel("Password").fill(cloud.password);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
}

/** Opens a pairing link in `page`, signs in, pairs; resolves on the hub's page. */
export async function pairBrowser(page: Page, cloud: LocalCloud, hub: Hub, name = "phone"): Promise<void> {
  await page.goto(await hub.pairLink(cloud.url + "/"));
  const password = page.getByLabel("Password");
  await password.or(page.getByLabel("Name this device")).first().waitFor({ timeout: 20_000 });
  if (await password.isVisible()) await signIn(page, cloud);
  await page.getByLabel("Name this device").fill(name);
  await page.getByRole("button", { name: "Pair" }).click();
  try {
    await page.getByRole("heading", { name: "History" }).waitFor({ timeout: 60_000 });
  } catch (e) {
    await screenshot(page, `pairing-failed-${name}`);
    const shown = await page.locator("main").innerText().catch(() => "");
    throw new Error(`pairing ${name} did not finish; the page shows: ${shown}\nhub log: ${hub.log()}`, { cause: e });
  }
}

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

export function readText(path: string): string {
  return readFileSync(path, "utf8");
}
