// The local cloud (`helix-local-cloud`, localcloud/ in the repository) driven by the real
// @supabase/supabase-js: password and emailed-code sign-in, refresh, getUser, sign-out, REST on
// the real migrations' tables and functions, and Realtime postgres_changes that one client's
// write causes in another client's channel, never in another user's.
//
// The binary is ../target/debug/helix-local-cloud (HELIX_LOCAL_CLOUD_BIN overrides); build it
// with `cargo build -p helix-localcloud`. It needs PostgreSQL and postrust-server, as
// scripts/test sets up.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import {
  type RealtimeChannel,
  type RealtimeClientOptions,
  type RealtimePostgresChangesPayload,
  type SupabaseClient,
  createClient,
} from "@supabase/supabase-js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import WebSocket from "ws";

const here = path.dirname(fileURLToPath(import.meta.url));
const binary =
  process.env.HELIX_LOCAL_CLOUD_BIN ?? path.resolve(here, "../../../target/debug/helix-local-cloud");

const ALICE = { email: "alice@example.com", password: "alice-password-1" };
const BOB = { email: "bob@example.com", password: "bob-password-1" };

/** How long the local cloud may take to create its database and start postrust. */
const START_TIMEOUT_MS = 90_000;
/** How long a test waits for one Realtime change or one emailed code. */
const EVENT_TIMEOUT_MS = 15_000;

type Row = Record<string, unknown>;
type Change = RealtimePostgresChangesPayload<Row>;

/** Values pushed by one side, awaited in order by the other. */
class Inbox<T> {
  private items: T[] = [];
  private waiters: ((item: T) => void)[] = [];

  push(item: T): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter(item);
    else this.items.push(item);
  }

  /** Everything received so far that nobody awaited. */
  seen(): readonly T[] {
    return this.items;
  }

  next(what: string): Promise<T> {
    const item = this.items.shift();
    if (item !== undefined) return Promise.resolve(item);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== take);
        reject(new Error(`timed out waiting for ${what}`));
      }, EVENT_TIMEOUT_MS);
      const take = (value: T): void => {
        clearTimeout(timer);
        resolve(value);
      };
      this.waiters.push(take);
    });
  }

  /** The next item that `pick` accepts; the others are dropped. */
  async until(what: string, pick: (item: T) => boolean): Promise<T> {
    for (;;) {
      const item = await this.next(what);
      if (pick(item)) return item;
    }
  }
}

interface Cloud {
  child: ChildProcess;
  url: string;
  anonKey: string;
  email: string;
  stderr: string[];
  codes: Inbox<{ to: string; code: string }>;
}

/** Starts the binary and reads its ready lines. */
async function startCloud(): Promise<Cloud> {
  if (!existsSync(binary)) {
    throw new Error(
      `${binary} is missing: run \`cargo build -p helix-localcloud\` (or set HELIX_LOCAL_CLOUD_BIN)`,
    );
  }
  const args = ["--port", "0", "--user", `${ALICE.email}:${ALICE.password}`];
  args.push("--user", `${BOB.email}:${BOB.password}`);
  const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
  const stderr: string[] = [];
  const codes = new Inbox<{ to: string; code: string }>();
  if (!child.stdout || !child.stderr) throw new Error("no pipes to the local cloud");
  createInterface({ input: child.stderr }).on("line", (line) => {
    stderr.push(line);
    const mail = /^email to (\S+): your code is (\d{6})$/.exec(line);
    if (mail?.[1] && mail[2]) codes.push({ to: mail[1], code: mail[2] });
  });
  // Never leave it running, whatever happens to this worker.
  process.on("exit", () => child.kill("SIGKILL"));
  const vars = new Map<string, string>();
  const lines = createInterface({ input: child.stdout });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the local cloud was not ready in time:\n${stderr.join("\n")}`));
    }, START_TIMEOUT_MS);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the local cloud exited (${code}) before ready:\n${stderr.join("\n")}`));
    });
    lines.on("line", (line) => {
      if (line === "ready") {
        clearTimeout(timer);
        resolve();
        return;
      }
      const eq = line.indexOf("=");
      if (eq > 0) vars.set(line.slice(0, eq), line.slice(eq + 1));
    });
  });
  const need = (name: string): string => {
    const value = vars.get(name);
    if (!value) throw new Error(`the local cloud printed no ${name}`);
    return value;
  };
  return {
    child,
    url: need("HELIX_SUPABASE_URL"),
    anonKey: need("HELIX_SUPABASE_ANON_KEY"),
    email: need("HELIX_TEST_EMAIL"),
    stderr,
    codes,
  };
}

/** Stops the binary (SIGTERM, then SIGKILL after 10 s) and returns its exit code. */
function stopCloud(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve(code);
    });
    child.kill("SIGTERM");
  });
}

/** Node 20 has no global WebSocket: `ws` implements what realtime-js uses (its event types are
 * Node's, not the DOM's, hence the cast). */
const transport = WebSocket as unknown as NonNullable<RealtimeClientOptions["transport"]>;

let cloud: Cloud;
const clients: SupabaseClient[] = [];

function client(): SupabaseClient {
  const c = createClient(cloud.url, cloud.anonKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime: { transport },
  });
  clients.push(c);
  return c;
}

async function signedIn(user: { email: string; password: string }): Promise<SupabaseClient> {
  const c = client();
  const { data, error } = await c.auth.signInWithPassword(user);
  expect(error).toBeNull();
  expect(data.user?.email).toBe(user.email);
  return c;
}

function hex32(): string {
  return randomBytes(32).toString("hex");
}

/** Subscribes `channel` and resolves once Realtime has answered the join. */
function subscribed(channel: RealtimeChannel): Promise<void> {
  return new Promise((resolve, reject) => {
    channel.subscribe((status, err) => {
      if (status === "SUBSCRIBED") resolve();
      else if (status !== "CLOSED") reject(new Error(`${status}: ${err?.message ?? "no reason"}`));
    });
  });
}

/** A command row as a device inserts it (RLS and the grants allow only these columns). */
async function insertCommand(c: SupabaseClient, hubId: string): Promise<string> {
  const commandId = randomUUID();
  const { error } = await c.from("cloud_commands").insert({
    command_id: commandId,
    hub_id: hubId,
    source_device_id: hex32(),
    envelope: "sealed-elsewhere",
    expires_at: new Date(Date.now() + 3_600_000).toISOString(),
  });
  expect(error).toBeNull();
  return commandId;
}

beforeAll(async () => {
  cloud = await startCloud();
}, START_TIMEOUT_MS + 5_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.removeAllChannels()));
  if (cloud) expect(await stopCloud(cloud.child)).toBe(0);
}, 30_000);

describe("auth", () => {
  test("prints the first user and signs in with a password; a wrong one is refused", async () => {
    expect(cloud.email).toBe(ALICE.email);
    const c = client();
    const wrong = await c.auth.signInWithPassword({ email: ALICE.email, password: "nope-nope" });
    expect(wrong.data.session).toBeNull();
    expect(wrong.error?.status).toBe(400);
    expect(wrong.error?.code).toBe("invalid_credentials");
    expect(wrong.error?.message).toBe("Invalid login credentials");
    const { data, error } = await c.auth.signInWithPassword(ALICE);
    expect(error).toBeNull();
    expect(data.session?.token_type).toBe("bearer");
    expect(data.session?.expires_in).toBe(3600);
    const me = await c.auth.getUser();
    expect(me.error).toBeNull();
    expect(me.data.user?.id).toBe(data.user?.id);
    expect(me.data.user?.email).toBe(ALICE.email);
  });

  test("refresh tokens are single use", async () => {
    const c = await signedIn(ALICE);
    const before = (await c.auth.getSession()).data.session;
    if (!before) throw new Error("no session after sign-in");
    const refreshed = await c.auth.refreshSession();
    expect(refreshed.error).toBeNull();
    expect(refreshed.data.session?.refresh_token).not.toBe(before.refresh_token);
    expect(refreshed.data.session?.expires_at).toBeGreaterThanOrEqual(before.expires_at ?? 0);
    expect((await c.auth.getUser()).data.user?.email).toBe(ALICE.email);
    const again = await client().auth.refreshSession({ refresh_token: before.refresh_token });
    expect(again.error?.code).toBe("refresh_token_already_used");
  });

  test("an emailed code signs in once", async () => {
    const c = client();
    const sent = await c.auth.signInWithOtp({
      email: BOB.email,
      options: { shouldCreateUser: false },
    });
    expect(sent.error).toBeNull();
    const mail = await cloud.codes.until("Bob's code", (m) => m.to === BOB.email);
    const wrong = await c.auth.verifyOtp({ email: BOB.email, token: "000000", type: "email" });
    if (mail.code !== "000000") expect(wrong.error?.code).toBe("otp_expired");
    const { data, error } = await c.auth.verifyOtp({
      email: BOB.email,
      token: mail.code,
      type: "email",
    });
    expect(error).toBeNull();
    expect(data.user?.email).toBe(BOB.email);
    const reused = await client().auth.verifyOtp({
      email: BOB.email,
      token: mail.code,
      type: "email",
    });
    expect(reused.error?.status).toBe(403);
    const nobody = await c.auth.signInWithOtp({
      email: "nobody@example.com",
      options: { shouldCreateUser: false },
    });
    expect(nobody.error?.code).toBe("otp_disabled");
  });

  test("signing out ends the session", async () => {
    const c = await signedIn(ALICE);
    const session = (await c.auth.getSession()).data.session;
    if (!session) throw new Error("no session after sign-in");
    expect((await c.auth.signOut()).error).toBeNull();
    expect((await c.auth.getSession()).data.session).toBeNull();
    const stale = await client().auth.getUser(session.access_token);
    expect(stale.data.user).toBeNull();
    expect(stale.error).not.toBeNull();
    const refresh = await client().auth.refreshSession({ refresh_token: session.refresh_token });
    expect(refresh.error?.code).toBe("refresh_token_not_found");
  });
});

describe("rest and realtime", () => {
  test("rows and functions of the migrations, through PostgREST, as the user", async () => {
    const alice = await signedIn(ALICE);
    const hubId = hex32();
    const registered = await alice.rpc("register_cloud_hub", { p_hub_id: hubId, p_token: hex32() });
    expect(registered.error).toBeNull();
    const hubs = await alice.from("cloud_hubs").select("hub_id");
    expect(hubs.error).toBeNull();
    expect(hubs.data).toContainEqual({ hub_id: hubId });
    const online = await alice.rpc("online_cloud_hubs", { p_within_seconds: 300 });
    expect(online.error).toBeNull();
    expect(online.data).toEqual([]);
    const anonymous = await client().rpc("online_cloud_hubs", {});
    expect(anonymous.error?.code).toBe("42501");
  });

  test("an array insert works (supabase-js sends its columns quoted, which the proxy unquotes)", async () => {
    const alice = await signedIn(ALICE);
    const hubId = hex32();
    expect((await alice.rpc("register_cloud_hub", { p_hub_id: hubId, p_token: hex32() })).error).toBeNull();
    const ids = [randomUUID(), randomUUID()];
    const rows = ids.map((command_id) => ({
      command_id,
      hub_id: hubId,
      source_device_id: hex32(),
      envelope: "sealed-elsewhere",
      expires_at: new Date(Date.now() + 3_600_000).toISOString(),
    }));
    const inserted = await alice.from("cloud_commands").insert(rows);
    expect(inserted.error).toBeNull();
    const read = await alice.from("cloud_commands").select("command_id").in("command_id", ids);
    expect(read.error).toBeNull();
    expect((read.data ?? []).map((r) => r.command_id).sort()).toEqual([...ids].sort());
  });

  test(
    "a write reaches its user's channels, and only theirs",
    async () => {
      const [watcher, writer, bob] = [await signedIn(ALICE), await signedIn(ALICE), await signedIn(BOB)];
      const hubId = hex32();
      for (const c of [writer, bob]) {
        const { error } = await c.rpc("register_cloud_hub", { p_hub_id: hubId, p_token: hex32() });
        expect(error).toBeNull();
      }

      const aliceHears = new Inbox<Change>();
      const bobHears = new Inbox<Change>();
      const hubFilter = `hub_id=eq.${hubId}`;
      const aliceHub = watcher
        .channel(`helix-hub-${hubId.slice(0, 16)}`)
        .on(
          "postgres_changes",
          { event: "INSERT", schema: "public", table: "cloud_commands", filter: hubFilter },
          (p: Change) => aliceHears.push(p),
        )
        .on(
          "postgres_changes",
          { event: "INSERT", schema: "public", table: "cloud_pairings", filter: hubFilter },
          (p: Change) => aliceHears.push(p),
        );
      const bobHub = bob
        .channel(`helix-hub-${hubId.slice(0, 16)}`)
        .on(
          "postgres_changes",
          { event: "INSERT", schema: "public", table: "cloud_commands", filter: hubFilter },
          (p: Change) => bobHears.push(p),
        );
      await Promise.all([subscribed(aliceHub), subscribed(bobHub)]);

      const first = await insertCommand(writer, hubId);
      const heard = await aliceHears.next("Alice's INSERT");
      expect(heard.eventType).toBe("INSERT");
      expect(heard.table).toBe("cloud_commands");
      expect(heard.schema).toBe("public");
      expect(heard.new).toMatchObject({ command_id: first, hub_id: hubId, status: "pending" });

      // Bob's own row reaches him; Alice's did not (it was committed first, and one socket's
      // changes arrive in commit order).
      const bobs = await insertCommand(bob, hubId);
      const bobHeard = await bobHears.next("Bob's INSERT");
      expect(bobHeard.new).toMatchObject({ command_id: bobs });
      expect(bobHears.seen()).toEqual([]);

      // And Bob's never reaches Alice: her next change is her own.
      const pairingId = randomUUID();
      const paired = await writer.from("cloud_pairings").insert({
        pairing_id: pairingId,
        hub_id: hubId,
        device_id: hex32(),
        request: "sealed-request",
        expires_at: new Date(Date.now() + 300_000).toISOString(),
      });
      expect(paired.error).toBeNull();
      const pairing = await aliceHears.next("Alice's pairing INSERT");
      expect(pairing.table).toBe("cloud_pairings");
      expect(pairing.new).toMatchObject({ pairing_id: pairingId, status: "pending" });

      // A device following one command hears its row's updates.
      const updates = new Inbox<Change>();
      const follow = watcher
        .channel(`helix-command-${first.slice(0, 16)}`)
        .on(
          "postgres_changes",
          { event: "UPDATE", schema: "public", table: "cloud_commands", filter: `command_id=eq.${first}` },
          (p: Change) => updates.push(p),
        );
      await subscribed(follow);
      const cancelled = await writer.rpc("cancel_cloud_command", {
        p_command_id: first,
        p_reason: "changed my mind",
      });
      expect(cancelled.error).toBeNull();
      const update = await updates.next("the UPDATE of the followed command");
      expect(update.eventType).toBe("UPDATE");
      expect(update.new).toMatchObject({ command_id: first, status: "cancelled" });
      expect(update.old).toEqual({ command_id: first });

      expect(await watcher.removeChannel(follow)).toBe("ok");
    },
    60_000,
  );

  test("a channel joined with a token that is not the project's is refused", async () => {
    const c = client();
    await c.realtime.setAuth("eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjk5OTk5OTk5OTl9.bad-signature");
    const channel = c
      .channel("refused")
      .on("postgres_changes", { event: "*", schema: "public" }, () => undefined);
    const outcome = await new Promise<string>((resolve) => {
      channel.subscribe((status, err) => resolve(`${status}: ${err?.message ?? ""}`));
    });
    expect(outcome).toMatch(/^CHANNEL_ERROR: .*InvalidJWTToken/);
    await c.removeChannel(channel);
  });
});
