// @ts-check
/**
 * The built library in the extension's IndexedDB (database `quiver-library`, store `library`,
 * key `current`), written by the background, read by panels. A panel is an extension page and
 * reads it from there, far faster than extension messaging, which in Chromium is JSON through the
 * browser process (1.4 s for 100,000 templates, docs/benchmarks.md).
 *
 * The two large pieces, the index snapshot and the templates' texts, are Blobs: both browsers
 * keep a Blob in IndexedDB as a file, and reading the record gives a handle at once; the bytes
 * are then read with `blobBytes`, the snapshot first (the index is usable without the texts,
 * which only drawn rows need). As structured-cloned typed arrays, Firefox compressed them on
 * write and both browsers deserialised the whole record (50 MB at 100,000 templates) before the
 * panel got any of it.
 */

/**
 * `text`: the templates' JSON one after another (UTF-8, a Blob); `ends`: where each ends (byte
 * offsets); `snapshot`: the search index's snapshot (a Blob). With team libraries (lib/team.js)
 * also `meta`: each template's TeamMeta packed the same way, in the same order (an empty entry for
 * a local one), and `libraries`: the team libraries (id, name, role).
 * @typedef {{generation: number, snapshot: Blob, text: Blob, ends: Uint32Array,
 *   meta?: {text: Uint8Array, ends: Uint32Array} | null, libraries?: import('./team.js').TeamLibrary[]}} LibraryRecord
 */

const LIBRARY_DB = 'quiver-library';
const LIBRARY_STORE = 'library';
const LIBRARY_KEY = 'current';

/** @returns {Promise<IDBDatabase>} */
function openLibraryDb() {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open(LIBRARY_DB, 1);
    r.onupgradeneeded = () => r.result.createObjectStore(LIBRARY_STORE);
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

/** Replaces the stored library with `record`. */
export async function storeLibrary(/** @type {LibraryRecord} */ record) {
  const db = await openLibraryDb();
  try {
    await new Promise((resolve, reject) => {
      const tx = db.transaction(LIBRARY_STORE, 'readwrite');
      tx.objectStore(LIBRARY_STORE).put(record, LIBRARY_KEY);
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

/**
 * The stored record of library `generation` (any generation: undefined), or null (absent, of
 * another generation, malformed, unreadable).
 * @param {number | null | undefined} generation
 * @returns {Promise<LibraryRecord | null>}
 */
export async function readStoredLibrary(generation) {
  if (typeof indexedDB === 'undefined' || generation === null) return null;
  let db;
  try {
    db = await openLibraryDb();
  } catch {
    return null;
  }
  try {
    const rec = await new Promise((resolve, reject) => {
      const get = db.transaction(LIBRARY_STORE, 'readonly').objectStore(LIBRARY_STORE).get(LIBRARY_KEY);
      get.onsuccess = () => resolve(get.result);
      get.onerror = () => reject(get.error);
    });
    const ok = rec && (generation === undefined || rec.generation === generation)
      && rec.snapshot instanceof Blob && rec.ends instanceof Uint32Array && rec.text instanceof Blob
      && (!rec.meta || (rec.meta.text instanceof Uint8Array && rec.meta.ends instanceof Uint32Array
        && rec.meta.ends.length === rec.ends.length));
    return ok ? rec : null;
  } catch {
    return null;
  } finally {
    db.close();
  }
}

/**
 * The bytes of a stored Blob (the snapshot, the templates' texts), or null when they cannot be
 * read (the file behind it is gone: the panel then asks the background).
 * @param {Blob} blob
 * @returns {Promise<Uint8Array | null>}
 */
export async function blobBytes(blob) {
  try {
    return new Uint8Array(await blob.arrayBuffer());
  } catch {
    return null;
  }
}

/**
 * The templates' JSON texts one after another, as UTF-8, and where each ends (byte offsets).
 * An entry that is `null` is left empty (its end is the previous one's).
 * @param {unknown[]} templates
 * @returns {{text: Uint8Array, ends: Uint32Array}}
 */
export function packTemplates(templates) {
  const ends = new Uint32Array(templates.length);
  const enc = new TextEncoder();
  const empty = new Uint8Array(0);
  const pieces = templates.map((t) => (t === null ? empty : enc.encode(JSON.stringify(t))));
  const text = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
  let at = 0;
  pieces.forEach((p, i) => {
    text.set(p, at);
    at += p.length;
    ends[i] = at;
  });
  return { text, ends };
}

/**
 * Entry `i` of a packed list (packTemplates), parsed; null when it is empty.
 * @param {{text: Uint8Array, ends: Uint32Array | number[]}} packed
 * @param {number} i
 * @returns {unknown}
 */
export function unpackAt(packed, i) {
  const start = i ? packed.ends[i - 1] : 0;
  const end = packed.ends[i];
  if (!(end > start)) return null;
  return JSON.parse(utf8.decode(packed.text.subarray(start, end)));
}
const utf8 = new TextDecoder();

/** Bytes as base64: extension messaging in Chromium is JSON, so bytes cross as text. */
export function toBase64(/** @type {Uint8Array} */ bytes) {
  const b = /** @type {Uint8Array & {toBase64?: () => string}} */ (bytes);
  if (typeof b.toBase64 === 'function') return b.toBase64();
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/** base64 text to bytes (the background's index snapshot crosses extension messaging as text). */
export function fromBase64(/** @type {string} */ text) {
  const U = /** @type {typeof Uint8Array & {fromBase64?: (s: string) => Uint8Array}} */ (Uint8Array);
  if (typeof U.fromBase64 === 'function') return U.fromBase64(text);
  const bin = atob(text);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}
