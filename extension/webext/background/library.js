// @ts-check
/**
 * The library and its search index: fetched from the daemon and built once per change, for
 * every panel. The wasm core builds the index here; each panel loads the index's snapshot
 * (copies and checks) instead of building its own (docs/benchmarks.md). The build is also put
 * in the extension's IndexedDB (lib/library-db.js), where panels read it by structured clone;
 * where a panel finds no record of the generation it was told (Chromium gives extension pages
 * embedded in sites their extension's own storage partition), it asks for the templates over
 * the port.
 *
 * With team libraries (protocol 1.4, capability `team`) the library spans the local library
 * and every team library (`templates.list` with `library: "*"`). Each template stays plain
 * library JSON (what the core takes); its library and team state (lib/team.js `TeamMeta`) are
 * kept beside it, in the same order (`meta`), and the team libraries' names and roles in
 * `libraries` (`team.status`). Two libraries may hold the same id: usage is matched by
 * `library/id`.
 */
import { loadCore } from '../lib/core.js';
import { packTemplates, storeLibrary, toBase64 } from '../lib/library-db.js';
import { RpcError } from '../lib/rpc.js';
import { LOCAL, LOCAL_META, metaOf, templateKey } from '../lib/team.js';
import { log } from './log.js';
import { mayHaveCapability, request } from './native.js';

const TEMPLATE_PAGE = 500;
/** How long after a send the ranking (usage counts) is refreshed: sends come in bursts. */
const USAGE_REFRESH_MS = 2_000;
/** The daemon capability of team libraries (protocol 1.4). */
export const TEAM = 'team';

/** @typedef {{id: string} & Record<string, unknown>} Template */
/** @typedef {{id: string, library?: string, usage_count: number, last_used_at: number | null}} Usage */
/** @typedef {import('../lib/team.js').TeamMeta} TeamMeta */
/** @typedef {import('../lib/team.js').TeamLibrary} TeamLibrary */
/** @typedef {import('../lib/core.js').Core} Core */
/** @typedef {InstanceType<Core['SearchIndex']>} SearchIndex */
/**
 * A build of the library; `index` null when the core could not build one (panels then build
 * their own), `stored` when it is in IndexedDB. `meta[i]` is the team state of `templates[i]`.
 * @typedef {{generation: number, templates: Template[], meta: TeamMeta[], libraries: TeamLibrary[],
 *   usage: Usage[], index: SearchIndex | null, bytes: Uint8Array | null, stored: boolean}} Build
 */

/**
 * Every template of every library, its team state, and the usage (count, last sent) of those
 * ever sent, for ranking. A daemon without team libraries lists its one library (and would
 * refuse `library`).
 * @returns {Promise<{templates: Template[], usage: Usage[], meta: TeamMeta[]}>}
 */
export async function listAllTemplates() {
  /** @type {Template[]} */
  const templates = [];
  /** @type {Usage[]} */
  const usage = [];
  /** @type {TeamMeta[]} */
  const meta = [];
  let all = mayHaveCapability(TEAM);
  let cursor = null;
  for (let page = 0; page < 10_000; page++) {
    /** @type {{limit: number, cursor?: string, library?: string}} */
    const params = { limit: TEMPLATE_PAGE };
    if (all) params.library = '*';
    if (cursor) params.cursor = cursor;
    let r;
    try {
      r = await request('templates.list', params);
    } catch (e) {
      // A daemon before 1.4 (its hello not answered yet) refuses the unknown param: its one library.
      const err = /** @type {RpcError} */ (e);
      if (!(all && page === 0 && err.code === 'invalid_params' && /library/.test(err.message))) throw e;
      all = false;
      page--;
      continue;
    }
    const got = r?.templates ?? [];
    const rows = Array.isArray(r?.meta) && r.meta.length === got.length ? r.meta : null;
    templates.push(...got);
    for (let i = 0; i < got.length; i++) meta.push(rows ? metaOf(rows[i]) : LOCAL_META);
    usage.push(...(r?.usage ?? []));
    cursor = r?.next_cursor ?? null;
    if (!cursor) return { templates, usage, meta };
  }
  throw new RpcError('internal', 'templates.list never reached the last page');
}

/**
 * The team libraries (id, name, role) when the daemon has team libraries; [] otherwise, and
 * when `team.status` fails (the templates are still listed: they carry their library's id).
 * @returns {Promise<TeamLibrary[]>}
 */
export async function listTeamLibraries() {
  if (!mayHaveCapability(TEAM)) return [];
  try {
    const r = await request('team.status', {});
    const libs = Array.isArray(r?.libraries) ? r.libraries : [];
    return libs.map((/** @type {any} */ l) => ({ id: String(l.id), name: String(l.name ?? l.id), role: l.role ?? null, hub_id: l.hub_id ?? null }));
  } catch (e) {
    log.warn('team.status failed; team libraries are shown by id:', /** @type {Error} */ (e)?.message ?? e);
    return [];
  }
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
  // Starts past every generation an earlier run of the background can have stored in IndexedDB
  // (a panel takes the stored record of the generation it is told): the start-up time in µs, so
  // a restart never reuses one unless the last run saw 1000 library changes per millisecond.
  generation: Date.now() * 1000,
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
  const [{ templates, usage, meta }, libraries] = await Promise.all([listAllTemplates(), listTeamLibraries()]);
  /** @type {Build} */
  const built = { generation, templates, meta, libraries, usage, index: null, bytes: null, stored: false };
  const c = await backgroundCore();
  if (c) {
    try {
      // Usage and recency ride along for the ranking (the index ignores them for matching).
      const byKey = new Map(usage.map((u) => [templateKey(u.library, u.id), u]));
      const rows = templates.map((x, i) => {
        const u = byKey.get(templateKey(meta[i].library, x.id));
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
      // Team state only where there is some: a local library stores what it always did.
      const team = meta.some((m) => m.library !== LOCAL);
      const { text, ends } = packTemplates(templates);
      await storeLibrary({
        generation,
        // Blobs: kept as files, read by panels without a structured clone (lib/library-db.js).
        snapshot: new Blob([/** @type {BlobPart} */ (built.bytes)]),
        text: new Blob([/** @type {BlobPart} */ (text)]),
        ends,
        meta: team ? packTemplates(meta.map((m) => (m.library === LOCAL ? null : m))) : null,
        libraries,
      });
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
 * panel reads the rest there); with `full` or otherwise, the templates and the snapshot (base64),
 * and with team libraries each template's team state (`meta`) and the libraries.
 * @param {Build} l
 * @param {boolean} full
 */
export function libraryReply(l, full) {
  if (l.stored && !full) return { generation: l.generation, count: l.templates.length, usage: l.usage, stored: true };
  const team = l.meta.some((m) => m.library !== LOCAL);
  return {
    templates: l.templates,
    ...(team ? { meta: l.meta, libraries: l.libraries } : {}),
    usage: l.usage,
    generation: l.generation,
    index: l.bytes ? toBase64(l.bytes) : null,
  };
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
