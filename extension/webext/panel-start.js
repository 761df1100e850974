// @ts-check
/**
 * What the palette starts before the rest of its module graph has loaded: panel.html loads this
 * small module `async` (its one import is lib/library-db.js), so it runs as soon as that is here,
 * and starts reading the stored library in parallel with panel.js's modules and the wasm core's
 * compilation (started here too, without waiting for the core's glue module). panel.js imports
 * it as well (one module instance: it picks up what was started here). Measured in
 * docs/benchmarks.md ("Palette load to a usable index").
 */
import { blobBytes, readStoredLibrary } from './lib/library-db.js';

/** When this module ran and the stored library's record arrived (the bench's per-load lines). */
export const boot = /** @type {Record<string, number>} */ ({ started: performance.now() });


/**
 * A stored record (lib/library-db.js) with the reads of its two Blobs started: the snapshot's
 * at once, the templates' texts after it (the index does not wait for them).
 * @param {import('./lib/library-db.js').LibraryRecord | null} rec
 */
export function readStoredBytes(rec) {
  if (!rec) return null;
  boot.record ??= performance.now();
  const snapshot = blobBytes(rec.snapshot);
  snapshot.then(() => {
    boot.snapshot ??= performance.now();
  });
  return { rec, snapshot, text: snapshot.then(() => blobBytes(rec.text)) };
}

/** The stored library of any generation, read at once (only in a panel opened with its token). */
export const earlyRead = /^#[^&]/.test(location.hash) ? readStoredLibrary(undefined).then(readStoredBytes) : null;

// The core's compilation, after the read has started: panel.js's loadCore() gets the same
// promise (lib/core.js), and reports a failure.
import('./lib/core.js').then((c) => c.loadCore()).catch(() => {});
