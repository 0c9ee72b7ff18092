// The device key store over fake-indexeddb and Node's WebCrypto: the seed is wrapped at rest by
// a non-extractable key, survives reopening, is never silently replaced, and pairings and
// settings round trip.
import "fake-indexeddb/auto";
import { afterEach, describe, expect, test, vi } from "vitest";

import { publicKeyHex } from "../src/crypto/envelope";
import { toHex } from "../src/crypto/bytes";
import {
  KeyStoreError,
  openKeyStore,
  requestPersistence,
  type KeyStore,
  type StoredPairing,
} from "../src/lib/keystore";

let dbCounter = 0;
const opened: KeyStore[] = [];

/** A fresh database per test. */
function newName(): string {
  return `helix-test-${++dbCounter}-${Math.random().toString(36).slice(2)}`;
}

async function open(name: string): Promise<KeyStore> {
  const store = await openKeyStore(name);
  opened.push(store);
  return store;
}

afterEach(() => {
  for (const s of opened.splice(0)) s.close();
  vi.unstubAllGlobals();
});

/** Reads the raw device record, as script with access to the database would. */
function rawRecord(name: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(name);
    req.onsuccess = () => {
      const db = req.result;
      const get = db.transaction("device").objectStore("device").get("device");
      get.onsuccess = () => {
        db.close();
        resolve(get.result as Record<string, unknown>);
      };
      get.onerror = () => reject(get.error);
    };
    req.onerror = () => reject(req.error);
  });
}

/** Overwrites the raw device record. */
function writeRecord(name: string, record: unknown): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(name);
    req.onsuccess = () => {
      const db = req.result;
      const tx = db.transaction("device", "readwrite");
      tx.objectStore("device").put(record, "device");
      tx.oncomplete = () => {
        db.close();
        resolve();
      };
      tx.onerror = () => reject(tx.error);
    };
    req.onerror = () => reject(req.error);
  });
}

function containsBytes(haystack: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

const pairing = (hubId: string, pairedAtMs: number): StoredPairing => ({
  hubId,
  hubName: "desk",
  supabaseUrl: "https://p.supabase.co",
  anonKey: "anon",
  pairedAtMs,
  deviceName: "phone",
});

describe("the device key", () => {
  test("is created on first use, an ed25519 seed and its public key", async () => {
    const store = await open(newName());
    const key = await store.deviceKey();
    expect(key.secret).toBeInstanceOf(Uint8Array);
    expect(key.secret.length).toBe(32);
    expect(key.publicHex).toMatch(/^[0-9a-f]{64}$/);
    expect(publicKeyHex(key.secret)).toBe(key.publicHex);
  });

  test("is the same key on every call, across reopening", async () => {
    const name = newName();
    const first = await (await open(name)).deviceKey();
    const store = await open(name);
    expect(await store.deviceKey()).toEqual(first);
    expect(await store.deviceKey()).toEqual(first);
  });

  test("each call returns a copy the caller may wipe", async () => {
    const store = await open(newName());
    const a = await store.deviceKey();
    const kept = a.secret.slice();
    a.secret.fill(0);
    expect((await store.deviceKey()).secret).toEqual(kept);
  });

  test("two tabs creating it at once end with one key", async () => {
    const name = newName();
    const [s1, s2] = await Promise.all([open(name), open(name)]);
    const [k1, k2] = await Promise.all([s1.deviceKey(), s2.deviceKey()]);
    expect(k1.publicHex).toBe(k2.publicHex);
    expect((await (await open(name)).deviceKey()).publicHex).toBe(k1.publicHex);
  });

  test("at rest: no seed bytes in the record, a non-extractable AES-GCM wrapping key", async () => {
    const name = newName();
    const key = await (await open(name)).deviceKey();
    const record = await rawRecord(name);
    for (const value of Object.values(record)) {
      if (value instanceof Uint8Array) expect(containsBytes(value, key.secret)).toBe(false);
      if (typeof value === "string") expect(value).not.toContain(toHex(key.secret));
    }
    const wrappingKey = record["wrappingKey"];
    expect(wrappingKey).toBeInstanceOf(CryptoKey);
    const k = wrappingKey as CryptoKey;
    expect(k.extractable).toBe(false);
    expect(k.algorithm.name).toBe("AES-GCM");
    await expect(crypto.subtle.exportKey("raw", k)).rejects.toThrow();
    await expect(crypto.subtle.exportKey("jwk", k)).rejects.toThrow();
    expect(record["publicHex"]).toBe(key.publicHex);
  });

  describe("a record that cannot be read is an error, and is left as it is", () => {
    async function brokenWith(change: (r: Record<string, unknown>) => Promise<void> | void) {
      const name = newName();
      const original = await (await open(name)).deviceKey();
      const record = await rawRecord(name);
      await change(record);
      await writeRecord(name, record);
      const store = await open(name);
      const error = await store.deviceKey().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(KeyStoreError);
      expect((error as KeyStoreError).code).toBe("corrupt");
      expect((error as Error).message).toMatch(/^the device key stored in this browser cannot be read/);
      // Not replaced: the record is the broken one still, and asking again fails again.
      const after = await rawRecord(name);
      expect(after["wrapped"]).toEqual(record["wrapped"]);
      expect(after["publicHex"]).toEqual(record["publicHex"]);
      await expect(store.deviceKey()).rejects.toBeInstanceOf(KeyStoreError);
      return { name, original, message: (error as Error).message };
    }

    test("a flipped ciphertext byte", async () => {
      const { message } = await brokenWith((r) => {
        const w = (r["wrapped"] as Uint8Array).slice();
        w[3] = (w[3] ?? 0) ^ 1;
        r["wrapped"] = w;
      });
      expect(message).toContain("does not decrypt");
    });

    test("another wrapping key", async () => {
      await brokenWith(async (r) => {
        r["wrappingKey"] = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, [
          "encrypt",
          "decrypt",
        ]);
      });
    });

    test("another public key written in (bound as associated data)", async () => {
      await brokenWith((r) => {
        r["publicHex"] = "ab".repeat(32);
      });
    });

    test("an extractable wrapping key", async () => {
      const { message } = await brokenWith(async (r) => {
        r["wrappingKey"] = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, true, [
          "encrypt",
          "decrypt",
        ]);
      });
      expect(message).toContain("extractable");
    });

    test.each([
      ["no wrapping key", (r: Record<string, unknown>) => void delete r["wrappingKey"]],
      ["a short IV", (r: Record<string, unknown>) => void (r["iv"] = new Uint8Array(4))],
      ["another format", (r: Record<string, unknown>) => void (r["format"] = 2)],
      ["a raw seed instead", (r: Record<string, unknown>) => void (r["wrapped"] = new Uint8Array(32))],
    ])("%s", async (_, change) => {
      await brokenWith(change);
    });

    test("not an object", async () => {
      const name = newName();
      await (await open(name)).deviceKey();
      await writeRecord(name, "garbage");
      await expect((await open(name)).deviceKey()).rejects.toThrow(/cannot be read \(the record is not an object\)/);
    });

    test("reset is the way out: then a new key", async () => {
      const name = newName();
      const original = await (await open(name)).deviceKey();
      const record = await rawRecord(name);
      record["iv"] = new Uint8Array(12);
      await writeRecord(name, record);
      const store = await open(name);
      await expect(store.deviceKey()).rejects.toBeInstanceOf(KeyStoreError);
      await store.reset();
      const fresh = await store.deviceKey();
      expect(fresh.publicHex).not.toBe(original.publicHex);
    });
  });
});

describe("pairings", () => {
  const hubA = "aa".repeat(32);
  const hubB = "bb".repeat(32);

  test("put, get, list oldest first, replace, remove", async () => {
    const store = await open(newName());
    expect(await store.pairings.list()).toEqual([]);
    await store.pairings.put(pairing(hubB, 2000));
    await store.pairings.put(pairing(hubA, 3000));
    expect((await store.pairings.list()).map((p) => p.hubId)).toEqual([hubB, hubA]);
    expect(await store.pairings.get(hubA)).toEqual(pairing(hubA, 3000));
    await store.pairings.put({ ...pairing(hubA, 1000), hubName: "laptop" });
    expect(await store.pairings.list()).toEqual([{ ...pairing(hubA, 1000), hubName: "laptop" }, pairing(hubB, 2000)]);
    await store.pairings.remove(hubA);
    expect(await store.pairings.get(hubA)).toBeUndefined();
    expect(await store.pairings.list()).toEqual([pairing(hubB, 2000)]);
  });

  test("persist across reopening", async () => {
    const name = newName();
    await (await open(name)).pairings.put(pairing(hubA, 1));
    expect(await (await open(name)).pairings.list()).toEqual([pairing(hubA, 1)]);
  });

  test("only the known fields are stored", async () => {
    const store = await open(newName());
    await store.pairings.put({ ...pairing(hubA, 1), secret: "x" } as StoredPairing);
    expect(await store.pairings.get(hubA)).toEqual(pairing(hubA, 1));
  });

  test.each([
    ["a hub id that is not a key", { ...pairing("AA".repeat(32), 1) }],
    ["a short hub id", { ...pairing("aa", 1) }],
    ["a negative time", { ...pairing(hubA, -1) }],
    ["a missing name", { ...pairing(hubA, 1), hubName: undefined as unknown as string }],
  ])("refuses %s", async (_, p) => {
    const store = await open(newName());
    await expect(store.pairings.put(p)).rejects.toMatchObject({ code: "invalid" });
  });
});

describe("settings and reset", () => {
  test("settings round trip any JSON value", async () => {
    const store = await open(newName());
    expect(await store.settings.get("theme")).toBeUndefined();
    await store.settings.put("theme", "dark");
    await store.settings.put("recent", { hubs: ["a", "b"], n: 2, on: true, none: null });
    expect(await store.settings.get("theme")).toBe("dark");
    expect(await store.settings.get("recent")).toEqual({ hubs: ["a", "b"], n: 2, on: true, none: null });
    await store.settings.remove("theme");
    expect(await store.settings.get("theme")).toBeUndefined();
  });

  test("reset forgets the key, pairings and settings", async () => {
    const name = newName();
    const store = await open(name);
    const key = await store.deviceKey();
    await store.pairings.put(pairing("cc".repeat(32), 1));
    await store.settings.put("x", 1);
    await store.reset();
    expect(await store.pairings.list()).toEqual([]);
    expect(await store.settings.get("x")).toBeUndefined();
    expect(await rawRecord(name)).toBeUndefined();
    expect((await store.deviceKey()).publicHex).not.toBe(key.publicHex);
  });
});

describe("requestPersistence", () => {
  test("asks navigator.storage.persist when not yet persisted", async () => {
    const persist = vi.fn(() => Promise.resolve(true));
    vi.stubGlobal("navigator", { storage: { persist, persisted: () => Promise.resolve(false) } });
    expect(await requestPersistence()).toBe(true);
    expect(persist).toHaveBeenCalledOnce();
  });

  test("does not ask again when already persisted", async () => {
    const persist = vi.fn(() => Promise.resolve(true));
    vi.stubGlobal("navigator", { storage: { persist, persisted: () => Promise.resolve(true) } });
    expect(await requestPersistence()).toBe(true);
    expect(persist).not.toHaveBeenCalled();
  });

  test("false when refused, failing, or missing", async () => {
    vi.stubGlobal("navigator", { storage: { persist: () => Promise.resolve(false) } });
    expect(await requestPersistence()).toBe(false);
    vi.stubGlobal("navigator", { storage: { persist: () => Promise.reject(new Error("no")) } });
    expect(await requestPersistence()).toBe(false);
    vi.stubGlobal("navigator", {});
    expect(await requestPersistence()).toBe(false);
    vi.stubGlobal("navigator", undefined);
    expect(await requestPersistence()).toBe(false);
  });
});
