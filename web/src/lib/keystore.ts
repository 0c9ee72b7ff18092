/**
 * This device's key store, in IndexedDB: its ed25519 secret (the 32-byte seed every envelope
 * it seals is signed with), its pairings and its settings.
 *
 * The seed is never stored in clear. It is encrypted with AES-GCM under a WebCrypto key that
 * is created non-extractable and stored beside it (IndexedDB keeps a CryptoKey by structured
 * clone, still non-extractable): a copy of the database's files, or script reading the
 * records, gets ciphertext and an opaque key handle, never the seed's bytes. (Script running
 * in this origin can still ask the handle to decrypt; that is the limit of what a web page can
 * do.)
 *
 * A record that cannot be read or unwrapped is an error, never a reason to make a new key: a
 * silently replaced key would unpair the device from every hub without a word.
 */

import { concat, parseHex, randomBytes, utf8 } from "../crypto/bytes";
import { publicKeyHex } from "../crypto/primitives";
import { done, openDatabase, request } from "./idb";

/** The device's key, unwrapped. */
export interface DeviceKey {
  /** The 32-byte ed25519 seed (a fresh copy each call: the caller may wipe it). */
  secret: Uint8Array;
  /** Its public key, 64 lower-case hex digits: the device's id. */
  publicHex: string;
}

/** A hub this device is paired with, and how to reach it through the cloud. */
export interface StoredPairing {
  /** The hub's key, 64 lower-case hex digits. */
  hubId: string;
  hubName: string;
  supabaseUrl: string;
  anonKey: string;
  /** When it was paired (ms since the epoch). */
  pairedAtMs: number;
  /** The name this device gave itself when it paired. */
  deviceName: string;
}

/** A setting's value: anything JSON can hold. */
export type SettingValue =
  | string
  | number
  | boolean
  | null
  | SettingValue[]
  | { [key: string]: SettingValue };

/** The key store of one browser profile. */
export interface KeyStore {
  /**
   * This device's key: created and stored on first use, read and unwrapped after.
   * @throws KeyStoreError when the stored key cannot be read; it is left as it is.
   */
  deviceKey(): Promise<DeviceKey>;
  pairings: {
    /** Every pairing, oldest first. */
    list(): Promise<StoredPairing[]>;
    get(hubId: string): Promise<StoredPairing | undefined>;
    /** Adds or replaces the pairing with this hub. */
    put(pairing: StoredPairing): Promise<void>;
    remove(hubId: string): Promise<void>;
  };
  settings: {
    get(key: string): Promise<SettingValue | undefined>;
    put(key: string, value: SettingValue): Promise<void>;
    remove(key: string): Promise<void>;
  };
  /** Forgets everything: the device key (the next {@link deviceKey} makes a new one), pairings, settings. */
  reset(): Promise<void>;
  /** Closes the database. */
  close(): void;
}

/** Why the key store refused. */
export class KeyStoreError extends Error {
  override readonly name = "KeyStoreError";

  constructor(
    /** `corrupt`: a stored record cannot be read; `invalid`: a value given to store is wrong. */
    readonly code: "corrupt" | "invalid",
    message: string,
  ) {
    super(message);
  }
}

/** The default database name. */
export const DEFAULT_DB_NAME = "helix-web";

const DB_VERSION = 1;
const DEVICE = "device";
const PAIRINGS = "pairings";
const SETTINGS = "settings";
const DEVICE_RECORD_KEY = "device";
/** The stored record's format; another is refused rather than guessed at. */
const RECORD_FORMAT = 1;
const WRAP_DOMAIN = "helix-web-device-key-v1";

/** The device key as stored: the seed encrypted under a non-extractable AES-GCM key. */
interface DeviceRecord {
  format: typeof RECORD_FORMAT;
  publicHex: string;
  /** Non-extractable AES-GCM-256, usages encrypt and decrypt. */
  wrappingKey: CryptoKey;
  /** The AES-GCM IV, 12 bytes. */
  iv: Uint8Array;
  /** The seed's ciphertext and tag (48 bytes). */
  wrapped: Uint8Array;
  createdAtMs: number;
}

const HEX_KEY = /^[0-9a-f]{64}$/;

/** The AES-GCM associated data: the format and the public key it must unwrap to. */
function wrapAad(publicHex: string): Uint8Array<ArrayBuffer> {
  return copy(concat(utf8(WRAP_DOMAIN), utf8("\n"), utf8(publicHex)));
}

/** A copy on a fresh ArrayBuffer (what WebCrypto's typings want). */
function copy(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(bytes.length);
  out.set(bytes);
  return out;
}

/** Creates a new device key record (outside any transaction: WebCrypto is asynchronous). */
async function createRecord(nowMs: number): Promise<{ record: DeviceRecord; key: DeviceKey }> {
  const secret = randomBytes(32);
  const publicHex = publicKeyHex(secret);
  const wrappingKey = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, [
    "encrypt",
    "decrypt",
  ]);
  const iv = copy(randomBytes(12));
  const wrapped = new Uint8Array(
    await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData: wrapAad(publicHex) },
      wrappingKey,
      copy(secret),
    ),
  );
  const record: DeviceRecord = {
    format: RECORD_FORMAT,
    publicHex,
    wrappingKey,
    iv,
    wrapped,
    createdAtMs: nowMs,
  };
  return { record, key: { secret, publicHex } };
}

function corrupt(why: string): KeyStoreError {
  return new KeyStoreError(
    "corrupt",
    `the device key stored in this browser cannot be read (${why}); it was left as it is. ` +
      "To start again with a new key, reset this app's data here and pair this device again.",
  );
}

/** Checks a stored record's shape, so unwrapping gets exactly what it expects. */
function checkRecord(value: unknown): DeviceRecord {
  if (typeof value !== "object" || value === null) throw corrupt("the record is not an object");
  const r = value as Partial<Record<keyof DeviceRecord, unknown>>;
  if (r.format !== RECORD_FORMAT) throw corrupt(`unknown record format ${String(r.format)}`);
  if (typeof r.publicHex !== "string" || !HEX_KEY.test(r.publicHex)) {
    throw corrupt("its public key is not 64 hex digits");
  }
  const key = r.wrappingKey;
  if (
    typeof CryptoKey === "undefined" ||
    !(key instanceof CryptoKey) ||
    key.algorithm.name !== "AES-GCM" ||
    !key.usages.includes("decrypt")
  ) {
    throw corrupt("its wrapping key is missing or not an AES-GCM key");
  }
  if (key.extractable) throw corrupt("its wrapping key is extractable");
  if (!(r.iv instanceof Uint8Array) || r.iv.length !== 12) throw corrupt("its IV is not 12 bytes");
  if (!(r.wrapped instanceof Uint8Array) || r.wrapped.length !== 48) {
    throw corrupt("its wrapped key is not 48 bytes");
  }
  return {
    format: RECORD_FORMAT,
    publicHex: r.publicHex,
    wrappingKey: key,
    iv: r.iv,
    wrapped: r.wrapped,
    createdAtMs: typeof r.createdAtMs === "number" ? r.createdAtMs : 0,
  };
}

/** Decrypts a stored record and checks the seed is the public key's. */
async function unwrap(value: unknown): Promise<DeviceKey> {
  const record = checkRecord(value);
  let plain: ArrayBuffer;
  try {
    plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: copy(record.iv), additionalData: wrapAad(record.publicHex) },
      record.wrappingKey,
      copy(record.wrapped),
    );
  } catch {
    throw corrupt("it does not decrypt with its wrapping key");
  }
  const secret = new Uint8Array(plain);
  if (secret.length !== 32) throw corrupt("the unwrapped key is not 32 bytes");
  if (publicKeyHex(secret) !== record.publicHex) {
    throw corrupt("the unwrapped key is not the stored public key's");
  }
  return { secret, publicHex: record.publicHex };
}

function checkPairing(p: StoredPairing): StoredPairing {
  const fail = (why: string) => new KeyStoreError("invalid", `cannot store this pairing: ${why}`);
  if (typeof p !== "object" || p === null) throw fail("it is not an object");
  if (typeof p.hubId !== "string" || parseHex(p.hubId, 32) === undefined) {
    throw fail("the hub id is not 64 lower-case hex digits");
  }
  for (const field of ["hubName", "supabaseUrl", "anonKey", "deviceName"] as const) {
    if (typeof p[field] !== "string") throw fail(`${field} is not text`);
  }
  if (!Number.isSafeInteger(p.pairedAtMs) || p.pairedAtMs < 0) {
    throw fail("pairedAtMs is not a time in ms");
  }
  // Only the known fields, in a fixed order: nothing else rides along into the database.
  return {
    hubId: p.hubId,
    hubName: p.hubName,
    supabaseUrl: p.supabaseUrl,
    anonKey: p.anonKey,
    pairedAtMs: p.pairedAtMs,
    deviceName: p.deviceName,
  };
}

function readPairing(value: unknown): StoredPairing {
  try {
    return checkPairing(value as StoredPairing);
  } catch (e) {
    const why = e instanceof KeyStoreError ? e.message.replace("cannot store this pairing: ", "") : "";
    throw new KeyStoreError("corrupt", `a pairing stored in this browser cannot be read (${why})`);
  }
}

function isConstraintError(e: unknown): boolean {
  return typeof e === "object" && e !== null && (e as { name?: unknown }).name === "ConstraintError";
}

/**
 * Opens the key store (creating its database on first use).
 * @param dbName the IndexedDB database (tests use their own).
 * @param factory the IndexedDB to use (default: the browser's).
 */
export async function openKeyStore(
  dbName: string = DEFAULT_DB_NAME,
  factory: IDBFactory = globalThis.indexedDB,
): Promise<KeyStore> {
  const db = await openDatabase(factory, dbName, DB_VERSION, (d, oldVersion) => {
    if (oldVersion < 1) {
      d.createObjectStore(DEVICE);
      d.createObjectStore(PAIRINGS, { keyPath: "hubId" });
      d.createObjectStore(SETTINGS);
    }
  });

  let cached: Promise<DeviceKey> | undefined;

  async function loadOrCreate(): Promise<DeviceKey> {
    const existing: unknown = await request(
      db.transaction(DEVICE, "readonly").objectStore(DEVICE).get(DEVICE_RECORD_KEY),
    );
    if (existing !== undefined) return unwrap(existing);
    const created = await createRecord(Date.now());
    // `add`, not `put`: if another tab stored a key meanwhile, it wins and this one is dropped.
    const tx = db.transaction(DEVICE, "readwrite");
    const added = request(tx.objectStore(DEVICE).add(created.record, DEVICE_RECORD_KEY));
    try {
      await Promise.all([added, done(tx)]);
      return created.key;
    } catch (e) {
      if (!isConstraintError(e)) throw e;
    }
    const winner: unknown = await request(
      db.transaction(DEVICE, "readonly").objectStore(DEVICE).get(DEVICE_RECORD_KEY),
    );
    return unwrap(winner);
  }

  async function write(store: string, act: (s: IDBObjectStore) => IDBRequest): Promise<void> {
    const tx = db.transaction(store, "readwrite");
    act(tx.objectStore(store));
    await done(tx);
  }

  return {
    async deviceKey() {
      cached ??= loadOrCreate();
      try {
        const key = await cached;
        return { secret: key.secret.slice(), publicHex: key.publicHex };
      } catch (e) {
        cached = undefined;
        throw e;
      }
    },

    pairings: {
      async list() {
        const all: unknown[] = await request(
          db.transaction(PAIRINGS, "readonly").objectStore(PAIRINGS).getAll(),
        );
        return all
          .map(readPairing)
          .sort((a, b) => a.pairedAtMs - b.pairedAtMs || (a.hubId < b.hubId ? -1 : 1));
      },
      async get(hubId) {
        const value: unknown = await request(
          db.transaction(PAIRINGS, "readonly").objectStore(PAIRINGS).get(hubId),
        );
        return value === undefined ? undefined : readPairing(value);
      },
      async put(pairing) {
        const checked = checkPairing(pairing);
        await write(PAIRINGS, (s) => s.put(checked));
      },
      async remove(hubId) {
        await write(PAIRINGS, (s) => s.delete(hubId));
      },
    },

    settings: {
      async get(key) {
        const value: unknown = await request(
          db.transaction(SETTINGS, "readonly").objectStore(SETTINGS).get(key),
        );
        return value as SettingValue | undefined;
      },
      async put(key, value) {
        await write(SETTINGS, (s) => s.put(value, key));
      },
      async remove(key) {
        await write(SETTINGS, (s) => s.delete(key));
      },
    },

    async reset() {
      cached = undefined;
      const tx = db.transaction([DEVICE, PAIRINGS, SETTINGS], "readwrite");
      for (const name of [DEVICE, PAIRINGS, SETTINGS]) tx.objectStore(name).clear();
      await done(tx);
    },

    close() {
      db.close();
    },
  };
}

/**
 * Asks the browser to keep this origin's storage under pressure (`navigator.storage.persist()`),
 * so the device key is not evicted with the cache.
 * @returns whether storage is persistent (false where the API is missing or it is refused).
 */
export async function requestPersistence(): Promise<boolean> {
  const storage = typeof navigator === "undefined" ? undefined : navigator.storage;
  if (storage === undefined || typeof storage.persist !== "function") return false;
  try {
    if (typeof storage.persisted === "function" && (await storage.persisted())) return true;
    return await storage.persist();
  } catch {
    return false;
  }
}
