/**
 * Promises over IndexedDB requests and transactions (the small part of the API the key store
 * uses). A transaction stays open only while it has pending requests, so callers issue all of
 * a transaction's requests before awaiting anything else.
 */

/** The result of one request. */
export function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error("IndexedDB request failed"));
  });
}

/** Resolves when the transaction commits; rejects when it aborts or fails. */
export function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
    tx.onerror = () => reject(tx.error ?? new Error("IndexedDB transaction failed"));
  });
}

/**
 * Opens (creating or upgrading) a database.
 * @param upgrade creates the stores of a new or older database.
 */
export function openDatabase(
  factory: IDBFactory,
  name: string,
  version: number,
  upgrade: (db: IDBDatabase, oldVersion: number) => void,
): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = factory.open(name, version);
    req.onupgradeneeded = (event) => upgrade(req.result, event.oldVersion);
    req.onsuccess = () => {
      const db = req.result;
      // Another tab wants a newer version: let it have the database.
      db.onversionchange = () => db.close();
      resolve(db);
    };
    req.onerror = () => reject(req.error ?? new Error(`cannot open IndexedDB database ${name}`));
    req.onblocked = () => {
      // Another tab holds an older version open; success follows once it closes.
    };
  });
}
