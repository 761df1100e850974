// @ts-check
/**
 * The library and its search index: fetched from the daemon and built once per change, for
 * every panel. The wasm core builds the index here; each panel loads the index's snapshot
 * (copies and checks) instead of building its own (docs/benchmarks.md). The build is also put
 * in the extension's IndexedDB (lib/library-db.js), where panels read it by structured clone;
 * where a panel finds no record of the generation it was told (Chromium gives extension pages
 * embedded in sites their extension's own storage partition), it asks for the templates over
 * the port.
 */
import { loadCore } from '../lib/core.js';
import { packTemplates, storeLibrary, toBase64 } from '../lib/library-db.js';
import { RpcError } from '../lib/rpc.js';
import { log } from './log.js';
import { request } from './native.js';

const TEMPLATE_PAGE = 500;
/** How long after a send the ranking (usage counts) is refreshed: sends come in bursts. */
const USAGE_REFRESH_MS = 2_000;

/** @typedef {{id: string} & Record<string, unknown>} Template */
/** @typedef {{id: string, usage_count: number, last_used_at: number | null}} Usage */
/** @typedef {import('../lib/core.js').Core} Core */
/** @typedef {InstanceType<Core['SearchIndex']>} SearchIndex */
/**
 * A build of the library; `index` null when the core could not build one (panels then build
 * their own), `stored` when it is in IndexedDB.
 * @typedef {{generation: number, templates: Template[], usage: Usage[], index: SearchIndex | null, bytes: Uint8Array | null, stored: boolean}} Build
 */

/**
 * Every template, and the usage (count, last sent) of those ever sent, for ranking.
 * @returns {Promise<{templates: Template[], usage: Usage[]}>}
 */
export async function listAllTemplates() {
  /** @type {Template[]} */
  const templates = [];
  /** @type {Usage[]} */
  const usage = [];
  let cursor = null;
  for (let page = 0; page < 10_000; page++) {
    /** @type {{limit: number, cursor?: string}} */
    const params = { limit: TEMPLATE_PAGE };
    if (cursor) params.cursor = cursor;
    const r = await request('templates.list', params);
    templates.push(...(r?.templates ?? []));
    usage.push(...(r?.usage ?? []));
    cursor = r?.next_cursor ?? null;
    if (!cursor) return { templates, usage };
  }
  throw new RpcError('internal', 'templates.list never reached the last page');
}

/**
 * The core in the background, or null when it cannot load here (panels then build their own
 * index).
 * @returns {Promise<Core | null>}
 */
async function backgroundCore() {
  try {
    return await loadCore();
  } catch (e) {
    log.warn('the wasm core did not load in the background; panels build their own index:', /** @type {Error} */ (e)?.message ?? e);
    return null;
  }
}

/**
 * `generation` counts library changes; `ready` is the last finished build (served while a
 * refresh of the ranking after sends runs), `building` the build under way.
 */
const library = {
  generation: 0,
  /** @type {Build | null} */
  ready: null,
  /** @type {Promise<Build> | null} */
  building: null,
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  usageTimer: undefined,
  usageStale: false,
};

/** True once a build has been served (a change must then be announced to panels). */
export const libraryBuilt = () => library.ready !== null;

/** @returns {Promise<Build>} */
async function buildLibrary(/** @type {number} */ generation) {
  const { templates, usage } = await listAllTemplates();
  /** @type {Build} */
  const built = { generation, templates, usage, index: null, bytes: null, stored: false };
  const c = await backgroundCore();
  if (c) {
    try {
      // Usage and recency ride along for the ranking (the index ignores them for matching).
      const byId = new Map(usage.map((u) => [u.id, u]));
      const rows = templates.map((x) => {
        const u = byId.get(x.id);
        return u ? { ...x, usage_count: u.usage_count, last_used_at: u.last_used_at } : x;
      });
      built.index = new c.SearchIndex(JSON.stringify(rows));
      built.bytes = built.index.snapshot();
    } catch (e) {
      log.warn('search index build failed; panels build their own:', /** @type {Error} */ (e)?.message ?? e);
      built.index?.free?.();
      built.index = null;
    }
  }
  if (built.bytes && typeof indexedDB !== 'undefined') {
    try {
      await storeLibrary({ generation, snapshot: built.bytes, ...packTemplates(templates) });
      built.stored = true;
    } catch (e) {
      log.warn('could not keep the library in IndexedDB; panels get it over the port:', /** @type {Error} */ (e)?.message ?? e);
    }
  }
  return built;
}

/**
 * Starts a build of the library. `keepServing`: the library's content did not change (only its
 * usage did), so the last build stays served until this one is done.
 * @returns {Promise<Build>}
 */
function rebuildLibrary(/** @type {boolean} */ keepServing) {
  library.usageStale = false; // this build reads the usage afresh
  library.generation++;
  const generation = library.generation;
  if (!keepServing) library.ready = null;
  const p = buildLibrary(generation).then((built) => {
    if (generation === library.generation) {
      const old = library.ready;
      library.ready = built;
      if (old && old !== built) old.index?.free?.();
    } else {
      built.index?.free?.(); // a newer change came in meanwhile
    }
    return built;
  });
  library.building = p;
  const done = () => {
    if (library.building === p) library.building = null;
  };
  p.then(done, done);
  return p;
}

/**
 * The library as panels get it: the last build, or the one under way, or a new one.
 * @returns {Promise<Build>}
 */
export function currentLibrary() {
  if (library.usageStale) {
    // A panel loading now must rank what was just sent: it waits for the refresh.
    clearTimeout(library.usageTimer);
    return library.building ?? rebuildLibrary(true);
  }
  if (library.ready) return Promise.resolve(library.ready);
  if (library.building) return library.building;
  return rebuildLibrary(false);
}

/** The library changed (or may have, while the daemon was away): the next request rebuilds. */
export function libraryChanged() {
  library.generation++;
  library.ready?.index?.free?.();
  library.ready = null;
  library.building = null;
}

/**
 * After sends: the ranking is refreshed in the background USAGE_REFRESH_MS after the last one,
 * so panels loading later get it at once; a panel that asks before then waits for the refresh.
 */
export function usageChanged() {
  if (!library.ready && !library.building) return; // nothing built yet: the first build reads it
  library.usageStale = true;
  clearTimeout(library.usageTimer);
  library.usageTimer = setTimeout(() => {
    if (library.usageStale && !library.building) rebuildLibrary(true).catch((e) => log.warn('ranking refresh failed:', e?.message ?? e));
  }, USAGE_REFRESH_MS);
}

/**
 * What a panel gets for `templates`: when the build is in IndexedDB, only its generation (the
 * panel reads the rest there); with `full` or otherwise, the templates and the snapshot (base64).
 * @param {Build} l
 * @param {boolean} full
 */
export function libraryReply(l, full) {
  if (l.stored && !full) return { generation: l.generation, count: l.templates.length, usage: l.usage, stored: true };
  return { templates: l.templates, usage: l.usage, generation: l.generation, index: l.bytes ? toBase64(l.bytes) : null };
}

/**
 * The channel fit of the library's templates for `target`, from the index that was built.
 * @param {Build} l
 * @param {number} generation
 * @param {object} target
 */
export function libraryFit(l, generation, target) {
  if (l.generation !== generation || !l.index) return { generation: l.generation, boost: null };
  return { generation: l.generation, boost: Array.from(l.index.channel_fit(JSON.stringify(target))) };
}
