/*
 * Quiver background: a Chromium service worker and a Firefox event page (classic script).
 *
 * - Keeps ONE native-messaging port to `quiver native-host` open, reconnecting with backoff.
 * - Pairs each assistant frame's content script with the panel it injected (by token, registered
 *   by the content script first; see PAIRING below).
 * - Runs the send pipeline: send.reserve -> wait -> send.begin -> content script posts -> send.done,
 *   strictly first in, first out per workspace, surviving native-port drops and background restarts.
 *
 * Ports (runtime.connect):
 *   "quiver-cs:<token>"    from a content script in an assistant frame
 *     cs -> bg  {type:"register", workspace, parent}      first, on every (re)connect: the origins
 *                                                       of the top frame (the workspace: keys the
 *                                                       queue and meter, filters history) and of the
 *                                                       parent, as the content script established them
 *               {type:"panel-frame", frameId}           Firefox: the frame id of its panel iframe
 *               {type:"posted", send_id, ok, error?}
 *               {type:"context", url, selected: [...]}  the frame URL and the Sobot `selected`
 *                                                       messages so far (forwarded to the panel)
 *               {type:"focus"}                          the agent pressed Alt+Shift+Q or the launcher:
 *                                                       forwarded to the panel as {type:"focus-search"}
 *     bg -> cs  {type:"post", send_id, wire, post_as}
 *               {type:"open"}                           the `open-palette` command: show + focus
 *   "quiver-panel:<token>[:<resume>]" from the panel iframe that content script injected
 *     PAIRING: accepted only when a connected content script registered <token> (with its
 *     workspace), the panel is in the same tab (and, in Firefox, in the frame the content script
 *     named), and the token has not paired a panel before, unless <resume> is the secret the
 *     background gave that panel ({type:"paired", resume}) and no other panel holds the token.
 *     Otherwise: {type:"refused", code: "not_registered"|"wrong_frame"|"token_used"|"bad_request",
 *     message} and the port is closed. A stolen token is thus useless: the real panel paired first.
 *     Paired tokens and their resume secrets are kept in storage.session, so a background restart
 *     does not make a used token usable again.
 *     panel -> bg  {type:"status", req}                 -> {type:"reply", req, result: Status}
 *                  {type:"templates", req}              -> {type:"reply", req, result: {templates}}
 *                  {type:"history", req, conversation?, customer?, limit?}
 *                                                       -> {type:"reply", req, result: {rows}}: the
 *                                                          daemon's history.list for this workspace
 *                                                          only, filtered by conversation/customer
 *                  {type:"hello", req}                  -> the daemon's hello (a bare round trip)
 *                  {type:"usage", req}                  -> {type:"reply", req, result: {usage:
 *                                                          [{id, usage_count, last_used_at}]}}
 *                  {type:"send", req?, key, batch?, template_id, revision, part_index, payload,
 *                   post_as, platform, conversation?, customer?}
 *                                                       -> {type:"reply", req, result: {key}} then
 *                                                          send-state events for `key`
 *                  {type:"cancel", req?, key}           -> {type:"reply", req, result: {key, cancelled}}
 *     bg -> panel  {type:"paired", resume}                 first, when accepted
 *                  {type:"status", status: Status}      on connect and whenever it changes
 *                  {type:"focus-search"}                the agent asked for the search box
 *                  {type:"context", url, selected}     on connect and whenever the frame reports it
 *                  {type:"library-changed"}             the daemon's library.changed event
 *                  {type:"send-state", key, send_id, state, template_id, part_index,
 *                   delay_ms?, not_before_ms?, error?: {code, message}}
 *                  state: queued (delay_ms: ms until its slot, null while not yet reserved;
 *                  not_before_ms: the slot's wall-clock time, from the daemon's meter),
 *                  sending, sent, failed, cancelled. On (re)connect the panel is sent the state
 *                  of each of its sends still in the queue.
 *     A failed request replies {type:"reply", req, error: {code, message}}: protocol error codes
 *     from the daemon unchanged, plus these local ones:
 *       host_unavailable   no native port (host not installed, not started yet, or restarting)
 *       host_disconnected  the native port dropped before the reply came
 *       timeout            no reply within the time limit
 *       no_assistant_frame the panel's content script is not connected
 *       bad_request        the panel sent a message this background does not understand
 *     and in send-state errors: cancelled (with why), post_failed (the frame could not post).
 *   A template's parts carry the same `batch`: when one part fails or is cancelled, the later
 *   parts of that batch are cancelled (a template never arrives with a hole in it).
 *   Status = {state: "up"|"down", host: "connected"|"connecting"|"disconnected",
 *             reason: string|null, daemon: string|null}
 */
'use strict';

// The wasm core (wasm-bindgen no-modules: the global `wasm_bindgen`). Firefox loads it from the
// manifest's background scripts; a Chromium service worker imports it here.
if (typeof wasm_bindgen === 'undefined' && typeof importScripts === 'function') {
  try {
    importScripts('pkg/quiver_core.js');
  } catch (e) {
    console.warn('[quiver] pkg/quiver_core.js did not load in the background:', e);
  }
}

const api = globalThis.browser ?? globalThis.chrome;

const HOST_NAME = 'dev.quiver.host';
const PROTOCOL = 1;
const CLIENT = `quiver-extension/${api.runtime.getManifest().version}`;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30_000;
const REQUEST_TIMEOUT_MS = 15_000;
const POST_TIMEOUT_MS = 10_000;
/**
 * How long sends wait for their assistant frame to (re)connect, counted from when it went away
 * (or from start-up for restored sends), before they are cancelled.
 */
const CS_GRACE_MS = 3_000;
const RECONNECT_ALARM = 'quiver-reconnect';
/** Wakes a suspended background while sends are queued, so they resume or get cleaned up. */
const QUEUE_ALARM = 'quiver-queue';
const QUEUE_STORE_KEY = 'quiver.sendQueue.v1';
const TEMPLATE_PAGE = 500;
/** Errors after which a step is retried once the daemon is reachable again. */
const RECOVERABLE = new Set(['host_unavailable', 'host_disconnected', 'daemon_unavailable', 'timeout']);
const TOKEN_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const log = {
  info: (...a) => console.info('[quiver]', ...a),
  warn: (...a) => console.warn('[quiver]', ...a),
};

class ProtocolError extends Error {
  constructor(code, message, data) {
    super(message);
    this.code = code;
    if (data !== undefined) this.data = data;
  }
}

/** An error as panels and pages get it: code, message, and the daemon's details if any. */
const errorBody = (e) => ({
  code: typeof e?.code === 'string' ? e.code : 'internal',
  message: String(e?.message ?? e),
  ...(e?.data !== undefined ? { data: e.data } : {}),
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

/** Swallows the promise (or value) an extension API may or may not return. */
function quietly(fn) {
  try {
    const r = fn();
    if (r && typeof r.catch === 'function') r.catch((e) => log.warn(e));
  } catch (e) {
    log.warn(e);
  }
}

// ---------------------------------------------------------------------------------------------
// Native connection

const native = {
  port: null,
  host: 'disconnected', // 'connecting' until the host says something, then 'connected'
  daemonUp: false,
  daemon: null,
  reason: 'not connected yet',
  backoff: BACKOFF_MIN_MS,
  timer: null,
  nextId: 1,
  pending: new Map(), // id -> {resolve, reject, timer}
  chunks: new Map(), // id -> {total, parts: [], got, bytes}: chunked replies being joined
  upWaiters: [],
};

/** Limits of chunked replies (as quiver_shared::proto::Reassembler). */
const MAX_CHUNKS = 4096;
const MAX_REASSEMBLED = 64 * 1024 * 1024;

function status() {
  const up = Boolean(native.port) && native.daemonUp;
  return {
    state: up ? 'up' : 'down',
    host: native.port ? native.host : 'disconnected',
    reason: up ? null : native.reason,
    daemon: native.daemon,
  };
}

let lastStatusJson = '';
function statusChanged() {
  const s = status();
  const json = JSON.stringify(s);
  if (json === lastStatusJson) return;
  lastStatusJson = json;
  log.info('status', json);
  for (const pair of pairs.values()) sendToPanel(pair, { type: 'status', status: s });
  for (const page of pages) quietly(() => page.postMessage({ type: 'status', status: s }));
  if (s.state === 'up') {
    const waiters = native.upWaiters.splice(0);
    for (const w of waiters) w();
  }
}

/** Resolves when the daemon is reachable (now or later). */
function waitForUp() {
  if (status().state === 'up') return Promise.resolve();
  return new Promise((resolve) => native.upWaiters.push(resolve));
}

function connectNative() {
  if (native.port) return;
  clearTimeout(native.timer);
  native.timer = null;
  let port;
  try {
    port = api.runtime.connectNative(HOST_NAME);
  } catch (e) {
    nativeGone(null, `connectNative failed: ${e?.message ?? e}`);
    return;
  }
  native.port = port;
  native.host = 'connecting';
  native.daemonUp = false;
  port.onMessage.addListener((msg) => onNativeMessage(port, msg));
  port.onDisconnect.addListener((p) => {
    const why = api.runtime.lastError?.message ?? p?.error?.message ?? 'the native host exited';
    nativeGone(port, why);
  });
  statusChanged();
  request('hello', { protocol: PROTOCOL, client: CLIENT }).then(
    (r) => {
      if (native.port !== port) return;
      if (r?.protocol !== PROTOCOL) {
        native.reason = `protocol mismatch: daemon speaks ${r?.protocol}, extension speaks ${PROTOCOL}`;
        native.daemonUp = false;
      } else {
        native.daemonUp = true;
        native.daemon = typeof r.daemon === 'string' ? r.daemon : null;
        native.reason = null;
      }
      statusChanged();
    },
    (e) => {
      if (native.port !== port) return;
      native.daemonUp = false;
      native.reason = `${e.code}: ${e.message}`;
      statusChanged();
    },
  );
}

function nativeGone(port, why) {
  if (port && native.port !== port) return; // an old port
  native.port = null;
  native.host = 'disconnected';
  native.daemonUp = false;
  native.reason = why;
  const pending = [...native.pending.values()];
  native.pending.clear();
  native.chunks.clear();
  for (const p of pending) {
    clearTimeout(p.timer);
    p.reject(new ProtocolError('host_disconnected', `native host disconnected: ${why}`));
  }
  log.warn('native port closed:', why, `(retry in ${native.backoff} ms)`);
  statusChanged();
  scheduleReconnect();
}

function scheduleReconnect() {
  clearTimeout(native.timer);
  const delay = native.backoff;
  native.backoff = Math.min(native.backoff * 2, BACKOFF_MAX_MS);
  native.timer = setTimeout(() => {
    native.timer = null;
    connectNative();
  }, delay);
  // Safety net: if this background is suspended before the timer fires, the alarm wakes it
  // (top-level code then connects) and retries every 30 s while the host stays away.
  quietly(() => api.alarms.create(RECONNECT_ALARM, { delayInMinutes: 0.5, periodInMinutes: 0.5 }));
}

function hostAlive(port) {
  if (native.port !== port || native.host === 'connected') return;
  native.host = 'connected';
  native.backoff = BACKOFF_MIN_MS;
  quietly(() => api.alarms.clear(RECONNECT_ALARM));
}

function onNativeMessage(port, msg) {
  if (native.port !== port) return;
  hostAlive(port);
  if (!msg || typeof msg !== 'object') {
    log.warn('ignoring a native message that is not an object', msg);
    return;
  }
  if (typeof msg.event === 'string') {
    onNativeEvent(msg.event, msg.data ?? {});
    return;
  }
  if (msg.id === null || msg.id === undefined) {
    log.warn('native error without id', msg.error ?? msg);
    return;
  }
  if (msg.chunk !== undefined) {
    const whole = joinChunk(msg);
    if (whole) onNativeMessage(port, whole);
    return;
  }
  const p = native.pending.get(msg.id);
  if (!p) {
    log.warn('reply for an unknown or timed-out request', msg.id);
    return;
  }
  native.pending.delete(msg.id);
  clearTimeout(p.timer);
  if (msg.error) {
    p.reject(new ProtocolError(String(msg.error.code ?? 'internal'), String(msg.error.message ?? ''), msg.error.data));
  } else {
    p.resolve(msg.result);
  }
}

/**
 * Collects one piece of a reply too large for one native message
 * (`{"id", "chunk": {"seq", "total", "data"}}`, pieces in `seq` order concatenate to the reply's
 * JSON text). Returns the whole reply once its last piece is in, else null.
 */
function joinChunk(msg) {
  const { id } = msg;
  if (!native.pending.has(id)) return null; // a reply nobody waits for (timed out): drop it
  const { seq, total, data } = msg.chunk ?? {};
  const fail = (why) => {
    native.chunks.delete(id);
    const p = native.pending.get(id);
    log.warn(`chunked reply to ${id}: ${why}`);
    return p ? { id, error: { code: 'internal', message: `chunked reply: ${why}` } } : null;
  };
  if (!Number.isInteger(seq) || !Number.isInteger(total) || typeof data !== 'string') {
    return fail('malformed chunk');
  }
  if (total < 1 || total > MAX_CHUNKS || seq < 0 || seq >= total) {
    return fail(`chunk ${seq} of ${total} is impossible`);
  }
  let c = native.chunks.get(id);
  if (!c) {
    c = { total, parts: new Array(total), got: 0, bytes: 0 };
    native.chunks.set(id, c);
  }
  if (c.total !== total) return fail('chunks of one reply disagree on `total`');
  if (c.parts[seq] === undefined) {
    c.parts[seq] = data;
    c.got += 1;
    c.bytes += data.length;
  }
  if (c.bytes > MAX_REASSEMBLED) return fail(`reply larger than ${MAX_REASSEMBLED} bytes`);
  if (c.got < c.total) return null;
  native.chunks.delete(id);
  let whole;
  try {
    whole = JSON.parse(c.parts.join(''));
  } catch (e) {
    return fail(`the joined reply is not JSON: ${e.message}`);
  }
  if (!whole || typeof whole !== 'object' || whole.chunk !== undefined || whole.id !== id) {
    return fail('the joined reply is not a reply to this request');
  }
  return whole;
}

function onNativeEvent(name, data) {
  if (name === 'daemon.up') {
    if (!native.daemonUp && library.ready) {
      // Changes made while the daemon was out of reach sent no event here.
      libraryChanged();
      for (const pair of pairs.values()) sendToPanel(pair, { type: 'library-changed' });
    }
    native.daemonUp = true;
    native.reason = null;
    if (typeof data.version === 'string') native.daemon = data.version;
  } else if (name === 'daemon.down') {
    native.daemonUp = false;
    native.reason = `daemon down: ${data.reason ?? 'unknown reason'}`;
  } else {
    // Other daemon events (library.changed, meter.released, ...) go to the extension's pages;
    // panels hear of library changes to reload their templates.
    for (const page of pages) quietly(() => page.postMessage({ type: 'event', name, data }));
    if (name === 'library.changed') {
      libraryChanged();
      for (const pair of pairs.values()) sendToPanel(pair, { type: 'library-changed' });
    }
    return;
  }
  statusChanged();
}

/** Sends one request to the daemon; the reply is matched by id. */
function request(method, params, timeoutMs = REQUEST_TIMEOUT_MS) {
  const port = native.port;
  if (!port) {
    return Promise.reject(
      new ProtocolError('host_unavailable', `the native host is not connected (${native.reason})`),
    );
  }
  const id = native.nextId++;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      native.pending.delete(id);
      native.chunks.delete(id);
      reject(new ProtocolError('timeout', `${method}: no reply within ${timeoutMs} ms`));
    }, timeoutMs);
    native.pending.set(id, { resolve, reject, timer });
    try {
      port.postMessage({ id, method, params });
    } catch (e) {
      native.pending.delete(id);
      clearTimeout(timer);
      reject(new ProtocolError('host_disconnected', `${method}: ${e?.message ?? e}`));
    }
  });
}

/**
 * Like request(), but waits out daemon/host outages and retries (only for idempotent steps).
 * Gives up with `undefined` when `wanted(maybeSent)` turns false; `maybeSent` says whether an
 * earlier attempt may have reached the daemon (its reply was lost).
 */
async function requestRetrying(method, params, wanted = () => true) {
  let pause = 250;
  let maybeSent = false;
  for (;;) {
    if (!wanted(maybeSent)) return undefined;
    try {
      return await request(method, params);
    } catch (e) {
      if (!RECOVERABLE.has(e.code)) throw e;
      if (e.code === 'host_disconnected' || e.code === 'timeout') maybeSent = true;
      log.warn(`${method} will be retried:`, e.code, e.message);
      // The host may still look up while it cannot reach the daemon: never spin.
      await Promise.all([waitForUp(), sleep(pause)]);
      pause = Math.min(pause * 2, 5_000);
    }
  }
}

/** Every template, and the usage (count, last sent) of those ever sent, for ranking. */
async function listAllTemplates() {
  const templates = [];
  const usage = [];
  let cursor = null;
  for (let page = 0; page < 10_000; page++) {
    const params = { limit: TEMPLATE_PAGE };
    if (cursor) params.cursor = cursor;
    const r = await request('templates.list', params);
    templates.push(...(r?.templates ?? []));
    usage.push(...(r?.usage ?? []));
    cursor = r?.next_cursor ?? null;
    if (!cursor) return { templates, usage };
  }
  throw new ProtocolError('internal', 'templates.list never reached the last page');
}

// ---------------------------------------------------------------------------------------------
// The library and its search index: fetched and built once per change, for every panel

/** How long after a send the ranking (usage counts) is refreshed: sends come in bursts. */
const USAGE_REFRESH_MS = 2_000;

/**
 * The wasm core in the background (Chromium: importScripts above; Firefox: the manifest's
 * background scripts). It builds the search index once per library change; each panel loads the
 * index's snapshot (copies and checks) instead of building its own (docs/benchmarks.md). Null
 * when the core cannot load here: panels then build from the templates themselves.
 */
let core = null;
function loadCore() {
  core ??= (async () => {
    if (typeof wasm_bindgen !== 'function') return null;
    try {
      await wasm_bindgen({ module_or_path: api.runtime.getURL('pkg/quiver_core_bg.wasm') });
      return wasm_bindgen;
    } catch (e) {
      log.warn('the wasm core did not load in the background; panels build their own index:', e?.message ?? e);
      return null;
    }
  })();
  return core;
}

/** Bytes as base64: extension messaging in Chromium is JSON, so bytes cross as text. */
function toBase64(bytes) {
  if (typeof bytes.toBase64 === 'function') return bytes.toBase64();
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/**
 * The built library is also put in the extension's IndexedDB (database `quiver-library`, store
 * `library`, key `current`): {generation, snapshot: Uint8Array, text: Uint8Array, ends: Uint32Array},
 * `text` the templates' JSON one after another (UTF-8) and `ends` where each ends. A panel is an extension page
 * and reads it there by structured clone, far faster than extension messaging, which in Chromium
 * is JSON through the browser process (1.4 s for 100,000 templates, docs/benchmarks.md). Chromium
 * gives extension pages embedded in sites their extension's own storage partition; where a
 * panel finds no record of the generation it was told, it asks for the templates over the port.
 */
const LIBRARY_DB = 'quiver-library';
const LIBRARY_STORE = 'library';
const LIBRARY_KEY = 'current';

function openLibraryDb() {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open(LIBRARY_DB, 1);
    r.onupgradeneeded = () => r.result.createObjectStore(LIBRARY_STORE);
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

async function storeLibrary(record) {
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

/** The templates' JSON texts one after another, as UTF-8, and where each ends (byte offsets). */
function packTemplates(templates) {
  const ends = new Uint32Array(templates.length);
  const enc = new TextEncoder();
  const pieces = templates.map((t) => enc.encode(JSON.stringify(t)));
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
 * `generation` counts library changes; `ready` is the last finished build (served while a
 * refresh of the ranking after sends runs), `building` the build under way. A build:
 * {generation, templates, usage, index (wasm SearchIndex | null), bytes (its snapshot | null),
 * stored (in IndexedDB)}.
 */
const library = { generation: 0, ready: null, building: null, usageTimer: null, usageStale: false };

async function buildLibrary(generation) {
  const { templates, usage } = await listAllTemplates();
  const built = { generation, templates, usage, index: null, bytes: null, stored: false };
  const c = await loadCore();
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
      log.warn('search index build failed; panels build their own:', e?.message ?? e);
      built.index?.free?.();
      built.index = null;
    }
  }
  if (built.bytes && typeof indexedDB !== 'undefined') {
    try {
      await storeLibrary({ generation, snapshot: built.bytes, ...packTemplates(templates) });
      built.stored = true;
    } catch (e) {
      log.warn('could not keep the library in IndexedDB; panels get it over the port:', e?.message ?? e);
    }
  }
  return built;
}

/**
 * Starts a build of the library. `keepServing`: the library's content did not change (only its
 * usage did), so the last build stays served until this one is done.
 */
function rebuildLibrary(keepServing) {
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

/** The library as panels get it: the last build, or the one under way, or a new one. */
function currentLibrary() {
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
function libraryChanged() {
  library.generation++;
  library.ready?.index?.free?.();
  library.ready = null;
  library.building = null;
}

/**
 * After sends: the ranking is refreshed in the background USAGE_REFRESH_MS after the last one,
 * so panels loading later get it at once; a panel that asks before then waits for the refresh.
 */
function usageChanged() {
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
 */
function libraryReply(l, full) {
  if (l.stored && !full) return { generation: l.generation, count: l.templates.length, usage: l.usage, stored: true };
  return { templates: l.templates, usage: l.usage, generation: l.generation, index: l.bytes ? toBase64(l.bytes) : null };
}

/** The channel fit of the library's templates for `target`, from the index that was built. */
function libraryFit(l, generation, target) {
  if (l.generation !== generation || !l.index) return { generation: l.generation, boost: null };
  return { generation: l.generation, boost: Array.from(l.index.channel_fit(JSON.stringify(target))) };
}

// ---------------------------------------------------------------------------------------------
// Pairing content scripts with panels

/**
 * token -> {token, cs, panel, tabId, frameId, frameOrigin, workspace, parent, panelFrameId,
 *           panelUsed, resume, csLostAt, postWaiters: Map(send_id -> resolve), csWaiters}
 * tabId/frameId/frameOrigin bind the token to the content script that first connected with it;
 * workspace/parent are what it registered.
 */
const pairs = new Map();

function pairFor(token) {
  let pair = pairs.get(token);
  if (!pair) {
    pair = {
      token,
      cs: null,
      panel: null,
      tabId: undefined,
      frameId: undefined,
      frameOrigin: undefined,
      workspace: null,
      parent: null,
      panelFrameId: null,
      panelUsed: false,
      resume: null,
      csLostAt: Date.now(),
      postWaiters: new Map(),
      csWaiters: [],
    };
    pairs.set(token, pair);
  }
  return pair;
}

function dropPairIfIdle(pair) {
  if (pair.cs || pair.panel) return;
  for (const q of queues.values()) if (q.items.some((i) => i.token === pair.token)) return;
  pairs.delete(pair.token);
  forgetPairing(pair.token);
}

// Tokens that have paired a panel, kept in storage.session (not readable by content scripts,
// cleared with the browser session) so that a background restart does not make a used token
// usable again: after it, only the panel holding the resume secret pairs. token -> {resume, tabId}
const PAIRED_KEY = 'quiver.paired.v1';
const paired = (async () => {
  try {
    const got = await api.storage.session?.get(PAIRED_KEY);
    const map = got?.[PAIRED_KEY];
    return new Map(map && typeof map === 'object' ? Object.entries(map) : []);
  } catch (e) {
    log.warn('storage.session unavailable: pairings are not kept across restarts', e);
    return new Map();
  }
})();

function savePairings(map) {
  quietly(() => api.storage.session?.set({ [PAIRED_KEY]: Object.fromEntries(map) }));
}

function rememberPairing(pair) {
  paired.then((map) => {
    map.set(pair.token, { resume: pair.resume, tabId: pair.tabId });
    savePairings(map);
  });
}

function forgetPairing(token) {
  paired.then((map) => {
    if (map.delete(token)) savePairings(map);
  });
}

function originOf(url) {
  try {
    const o = new URL(url).origin;
    return o && o !== 'null' ? o : null;
  } catch {
    return null;
  }
}

/** The origin of the frame a port comes from. */
function senderOrigin(sender) {
  return (sender.origin && sender.origin !== 'null' ? sender.origin : null) ?? originOf(sender.url);
}

/** True when `v` is an http(s) origin exactly (`scheme://host[:port]`). */
function isOrigin(v) {
  return typeof v === 'string' && /^https?:\/\//.test(v) && originOf(v) === v;
}

function sendToPanel(pair, msg) {
  if (!pair.panel) return;
  try {
    pair.panel.postMessage(msg);
  } catch (e) {
    log.warn('panel post failed', e);
  }
}

function onConnect(port) {
  const name = port.name ?? '';
  const sender = port.sender ?? {};
  if (sender.id !== undefined && sender.id !== api.runtime.id) {
    port.disconnect();
    return;
  }
  const [kind, token = '', resume = null, ...extra] = name.split(':');
  if (!TOKEN_RE.test(token) || extra.length || (resume !== null && (kind !== 'quiver-panel' || !TOKEN_RE.test(resume)))) {
    log.warn('refusing port', name);
    port.disconnect();
    return;
  }
  if (kind === 'quiver-cs') connectContentScript(port, token, sender);
  else if (kind === 'quiver-panel') connectPanel(port, token, resume, sender).catch((e) => log.warn('panel port', e));
  else if (kind === 'quiver-page') connectPage(port, sender);
  else {
    log.warn('refusing port', name);
    port.disconnect();
  }
}

// ---------------------------------------------------------------------------------------------
// Extension pages (options, popup): status, daemon events, and a narrow RPC to the daemon.

/** Daemon methods an extension page may call. Sends go through the panel's queue only. */
const PAGE_METHODS = new Set([
  'hello',
  'templates.list',
  'templates.get',
  'templates.put',
  'templates.delete',
  'templates.search',
  'templates.revisions',
  'templates.facets',
  'templates.import',
  'history.list',
  'settings.get',
  'settings.set',
  'meter.rules.get',
  'meter.rules.set',
  'doctor',
]);
const PAGE_FILES = ['options.html', 'popup.html'];
const pages = new Set();

function connectPage(port, sender) {
  const url = sender.url ?? '';
  if (!PAGE_FILES.some((f) => url.startsWith(api.runtime.getURL(f)))) {
    log.warn('refusing a page port from', url);
    port.disconnect();
    return;
  }
  pages.add(port);
  port.onDisconnect.addListener(() => pages.delete(port));
  port.onMessage.addListener((msg) => onPageMessage(port, msg));
  quietly(() => port.postMessage({ type: 'status', status: status() }));
}

function onPageMessage(port, msg) {
  const req = msg?.req;
  const reply = (result) => quietly(() => port.postMessage({ type: 'reply', req, result }));
  const fail = (e) => quietly(() => port.postMessage({ type: 'reply', req, error: errorBody(e) }));
  if (msg?.type === 'status') {
    reply(status());
  } else if (msg?.type === 'rpc') {
    if (typeof msg.method !== 'string' || !PAGE_METHODS.has(msg.method)) {
      fail(new ProtocolError('bad_request', `method ${JSON.stringify(msg?.method)} is not open to extension pages`));
      return;
    }
    request(msg.method, msg.params ?? {}).then(reply, fail);
  } else {
    fail(new ProtocolError('bad_request', `unknown page message type ${JSON.stringify(msg?.type)}`));
  }
}

function connectContentScript(port, token, sender) {
  const pair = pairFor(token);
  const tabId = sender.tab?.id;
  const frameId = sender.frameId;
  const frameOrigin = senderOrigin(sender);
  // The token stays bound to the frame that first connected with it.
  const bound = pair.tabId !== undefined;
  if (pair.cs || (bound && (pair.tabId !== tabId || pair.frameId !== frameId || pair.frameOrigin !== frameOrigin))) {
    log.warn('refusing a second content script, or one from another frame, for a token');
    port.disconnect();
    return;
  }
  pair.cs = port;
  pair.tabId = tabId;
  pair.frameId = frameId;
  pair.frameOrigin = frameOrigin;
  port.onMessage.addListener((msg) => onContentScriptMessage(pair, port, msg));
  port.onDisconnect.addListener(() => {
    if (pair.cs !== port) return;
    pair.cs = null;
    pair.csLostAt = Date.now();
    const waiters = [...pair.postWaiters.values()];
    pair.postWaiters.clear();
    for (const w of waiters) w({ ok: false, error: 'the assistant frame went away while posting', unknown: true });
    dropPairIfIdle(pair);
  });
  const waiters = pair.csWaiters.splice(0);
  for (const w of waiters) w();
  for (const q of queues.values()) notify(q);
}

function onContentScriptMessage(pair, port, msg) {
  if (pair.cs !== port) return;
  switch (msg?.type) {
    case 'register':
      // The workspace a token serves never changes (its sends are queued under it).
      if (!isOrigin(msg.workspace) || !isOrigin(msg.parent)
          || (pair.workspace !== null && (pair.workspace !== msg.workspace || pair.parent !== msg.parent))) {
        log.warn('refusing a registration', msg.workspace, msg.parent);
        port.disconnect();
        pair.cs = null;
        dropPairIfIdle(pair);
        return;
      }
      pair.workspace = msg.workspace;
      pair.parent = msg.parent;
      break;
    case 'panel-frame':
      if (pair.panelFrameId === null && Number.isInteger(msg.frameId) && msg.frameId > 0) pair.panelFrameId = msg.frameId;
      break;
    case 'context':
      pair.context = {
        url: typeof msg.url === 'string' ? msg.url : '',
        selected: Array.isArray(msg.selected) ? msg.selected.slice(-20) : [],
      };
      sendToPanel(pair, { type: 'context', ...pair.context });
      break;
    case 'focus':
      sendToPanel(pair, { type: 'focus-search' });
      break;
    case 'posted': {
      const resolve = pair.postWaiters.get(msg.send_id);
      if (resolve) {
        pair.postWaiters.delete(msg.send_id);
        resolve({ ok: msg.ok === true, error: msg.ok === true ? null : String(msg.error ?? 'post failed') });
      }
      break;
    }
    default:
      break;
  }
}

/** True when `url` is this extension's panel.html (its static or its dynamic URL). */
function isPanelUrl(url) {
  try {
    const u = new URL(url);
    const own = new URL(api.runtime.getURL('panel.html'));
    return u.protocol === own.protocol && u.pathname === own.pathname;
  } catch {
    return false;
  }
}

/**
 * PAIRING (see the top of this file): accepts the panel for `token`, or refuses it. (The panel
 * says nothing before it is accepted, so deciding after reading storage.session loses nothing.)
 */
async function connectPanel(port, token, resume, sender) {
  let gone = false;
  port.onDisconnect.addListener(() => {
    gone = true;
  });
  const known = (await paired).get(token);
  if (gone) return undefined;
  const refuse = (code, message) => {
    log.warn('refusing a panel:', code, message, sender.url);
    quietly(() => port.postMessage({ type: 'refused', code, message }));
    quietly(() => port.disconnect());
  };
  if (!isPanelUrl(sender.url)) return refuse('bad_request', 'not a panel page');
  const pair = pairs.get(token);
  if (!pair || !pair.cs || pair.workspace === null) {
    return refuse('not_registered', 'no assistant frame registered this panel');
  }
  if (sender.tab?.id === undefined || sender.tab.id !== pair.tabId) {
    return refuse('wrong_frame', 'this panel is not in the tab of its assistant frame');
  }
  if (pair.panelFrameId !== null && sender.frameId !== pair.panelFrameId) {
    return refuse('wrong_frame', 'this panel is not the frame its assistant frame created');
  }
  if (!pair.panelUsed && known && known.tabId === pair.tabId) {
    // Paired before this background restarted.
    pair.panelUsed = true;
    pair.resume = known.resume;
  }
  if (pair.panel || (pair.panelUsed && (resume === null || resume !== pair.resume))) {
    return refuse('token_used', 'this assistant frame already has its panel');
  }
  pair.panelUsed = true;
  pair.resume ??= crypto.randomUUID();
  pair.panel = port;
  rememberPairing(pair);
  pair.intake = Promise.resolve();
  port.onMessage.addListener((msg) => onPanelMessage(pair, port, msg));
  port.onDisconnect.addListener(() => {
    if (pair.panel !== port) return;
    pair.panel = null;
    dropPairIfIdle(pair);
  });
  sendToPanel(pair, { type: 'paired', resume: pair.resume });
  sendToPanel(pair, { type: 'status', status: status() });
  if (pair.context) sendToPanel(pair, { type: 'context', ...pair.context });
  ready.then(() => {
    for (const q of queues.values()) {
      for (const item of q.items) if (item.token === token) emitState(item);
    }
  });
  return undefined;
}

/** Resolves true once the pair's content script is connected, false when its grace runs out. */
function waitForCs(pair) {
  if (pair.cs) return Promise.resolve(true);
  const ms = pair.csLostAt + CS_GRACE_MS - Date.now();
  if (ms <= 0) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (v) => {
      clearTimeout(timer);
      const i = pair.csWaiters.indexOf(onCs);
      if (i >= 0) pair.csWaiters.splice(i, 1);
      resolve(v);
    };
    const onCs = () => done(true);
    const timer = setTimeout(() => done(Boolean(pair.cs)), ms);
    pair.csWaiters.push(onCs);
  });
}

function onPanelMessage(pair, port, msg) {
  if (pair.panel !== port) return;
  const req = msg?.req;
  const reply = (result) => req !== undefined && sendToPanel(pair, { type: 'reply', req, result });
  const fail = (e) => req !== undefined && sendToPanel(pair, { type: 'reply', req, error: errorBody(e) });
  switch (msg?.type) {
    case 'status':
      reply(status());
      break;
    case 'templates':
      currentLibrary().then((l) => libraryReply(l, msg.full === true)).then(reply, fail);
      break;
    case 'fit': {
      if (typeof msg.target !== 'object' || msg.target === null || !Number.isInteger(msg.generation)) {
        fail(new ProtocolError('bad_request', 'fit needs {target: object, generation: integer}'));
        break;
      }
      const { generation, target } = msg;
      currentLibrary().then((l) => libraryFit(l, generation, target)).then(reply, fail);
      break;
    }
    case 'history': {
      // Only this workspace's history, never the whole of it.
      if (!pair.workspace) {
        fail(new ProtocolError('no_assistant_frame', 'this panel has no workspace'));
        break;
      }
      const params = { limit: Math.min(Math.max(Number(msg.limit) || 20, 1), 200), workspace: pair.workspace };
      for (const k of ['conversation', 'customer']) if (typeof msg[k] === 'string' && msg[k]) params[k] = msg[k];
      request('history.list', params).then((r) => reply({ rows: r?.rows ?? [] }), fail);
      break;
    }
    case 'hello':
      request('hello', { protocol: PROTOCOL, client: CLIENT }).then(reply, fail);
      break;
    case 'send': {
      const bad = checkSend(msg);
      if (bad) {
        fail(new ProtocolError('bad_request', bad));
        break;
      }
      // One intake chain per panel keeps its sends in the order they were asked for.
      pair.intake = pair.intake.then(() => acceptSend(pair, msg)).then(reply, fail);
      break;
    }
    case 'cancel':
      ready.then(() => reply({ key: msg.key, cancelled: cancelByKey(pair.token, msg.key) }), fail);
      break;
    default:
      fail(new ProtocolError('bad_request', `unknown panel message type ${JSON.stringify(msg?.type)}`));
  }
}

function checkSend(m) {
  const str = (v) => typeof v === 'string' && v.length > 0;
  const uint = (v) => Number.isInteger(v) && v >= 0;
  if (!str(m.key)) return 'send: `key` must be a non-empty string';
  if (!str(m.template_id)) return 'send: `template_id` must be a non-empty string';
  if (!uint(m.revision)) return 'send: `revision` must be a non-negative integer';
  if (!uint(m.part_index)) return 'send: `part_index` must be a non-negative integer';
  if (!str(m.payload)) return 'send: `payload` must be a non-empty string';
  if (m.post_as !== 'string' && m.post_as !== 'object') return 'send: `post_as` must be "string" or "object"';
  if (!str(m.platform)) return 'send: `platform` must be a non-empty string';
  for (const k of ['conversation', 'customer']) {
    if (m[k] !== undefined && m[k] !== null && typeof m[k] !== 'string') return `send: \`${k}\` must be a string`;
  }
  if (m.post_as === 'object') {
    try {
      JSON.parse(m.payload);
    } catch {
      return 'send: `payload` must be JSON text when `post_as` is "object"';
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// The send queue: one FIFO per workspace, persisted in storage.local so that neither a restart of
// the background nor of the browser loses track of a reserved send: after a background restart the
// frames reconnect (same tokens) and the queue resumes; after a browser restart no frame comes back
// and the leftovers are cancelled in the daemon (never posted) once the grace has passed.
//
// Item stages: new -> reserved -> begun -> posting -> posted -> sent|failed|cancelled.
// "posting" survives a restart only as "outcome unknown" (reported failed), never as a re-post.

/** workspace -> {workspace, items: [], reserving, running, wake: [resolve]} */
const queues = new Map();
const FINAL = new Set(['sent', 'failed', 'cancelled']);

function queueFor(workspace) {
  let q = queues.get(workspace);
  if (!q) {
    q = { workspace, items: [], reserving: false, reservingItem: null, running: false, wake: [] };
    queues.set(workspace, q);
  }
  return q;
}

function notify(q) {
  const wake = q.wake.splice(0);
  for (const w of wake) w();
}

/** Waits until the queue changes, or `ms` passes (if given). */
function waitChange(q, ms) {
  return new Promise((resolve) => {
    let timer = null;
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    if (ms !== undefined) timer = setTimeout(done, Math.max(0, ms));
    q.wake.push(done);
  });
}

let persistTimer = null;
function persist() {
  if (persistTimer !== null) return;
  persistTimer = setTimeout(() => {
    persistTimer = null;
    const items = [];
    for (const q of queues.values()) for (const i of q.items) if (!FINAL.has(i.stage)) items.push(i);
    quietly(() => api.storage.local.set({ [QUEUE_STORE_KEY]: items }));
    if (items.length && !queueAlarm) {
      queueAlarm = true;
      quietly(() => api.alarms.create(QUEUE_ALARM, { delayInMinutes: 0.5, periodInMinutes: 0.5 }));
    } else if (!items.length && queueAlarm) {
      queueAlarm = false;
      quietly(() => api.alarms.clear(QUEUE_ALARM));
    }
  }, 0);
}
let queueAlarm = true; // unknown at start-up: the first persist() clears it if nothing is queued

async function restore() {
  let items = [];
  try {
    const got = await api.storage.local.get(QUEUE_STORE_KEY);
    items = Array.isArray(got?.[QUEUE_STORE_KEY]) ? got[QUEUE_STORE_KEY] : [];
  } catch (e) {
    log.warn('could not read the saved send queue', e);
  }
  for (const item of items) {
    if (!item || FINAL.has(item.stage)) continue;
    if (item.stage === 'begun') {
      // Begun but not handed to the frame before the restart: report it, never post late.
      item.stage = 'posted';
      item.result = { ok: false, error: 'not posted: the extension restarted before posting' };
    } else if (item.stage === 'new') {
      item.maybeReserved = true; // its reserve may have reached the daemon before the restart
    } else if (item.stage === 'posting') {
      item.stage = 'posted';
      item.result = { ok: false, error: 'outcome unknown: the extension restarted while posting' };
    }
    pairFor(item.token);
    queueFor(item.workspace).items.push(item);
  }
  if (items.length) log.info(`resuming ${items.length} queued send(s)`);
  for (const q of queues.values()) kick(q);
  persist();
}

function kick(q) {
  notify(q);
  reserveLoop(q);
  runLoop(q);
}

async function acceptSend(pair, msg) {
  await ready;
  if (!(await waitForCs(pair)) || !pair.workspace) {
    throw new ProtocolError('no_assistant_frame', 'the assistant frame of this panel is not connected');
  }
  const item = {
    idempotency_key: crypto.randomUUID(),
    key: msg.key,
    batch: typeof msg.batch === 'string' ? msg.batch : msg.key,
    token: pair.token,
    workspace: pair.workspace,
    platform: msg.platform,
    template_id: msg.template_id,
    revision: msg.revision,
    part_index: msg.part_index,
    payload: msg.payload,
    post_as: msg.post_as,
    conversation: typeof msg.conversation === 'string' && msg.conversation ? msg.conversation : null,
    customer: typeof msg.customer === 'string' && msg.customer ? msg.customer : null,
    send_id: null,
    stage: 'new',
    delay_ms: null,
    due_at: null,
    result: null,
    error: null,
    maybeReserved: false,
  };
  const q = queueFor(item.workspace);
  q.items.push(item);
  persist();
  emitState(item);
  kick(q);
  return { key: item.key };
}

function publicState(item) {
  if (FINAL.has(item.stage)) return item.stage;
  return item.stage === 'new' || item.stage === 'reserved' ? 'queued' : 'sending';
}

function emitState(item) {
  const pair = pairs.get(item.token);
  if (!pair) return;
  const state = publicState(item);
  const msg = {
    type: 'send-state',
    key: item.key,
    send_id: item.send_id,
    state,
    template_id: item.template_id,
    part_index: item.part_index,
  };
  if (state === 'queued') {
    msg.delay_ms = item.due_at === null ? null : Math.max(0, item.due_at - Date.now());
    msg.not_before_ms = item.due_at;
  }
  if (item.error) msg.error = item.error;
  sendToPanel(pair, msg);
}

function finish(q, item, stage, error) {
  if (FINAL.has(item.stage)) return;
  item.stage = stage;
  if (error) item.error = errorBody(error);
  emitState(item);
  persist();
  if (stage !== 'sent') cancelRestOfBatch(q, item);
  notify(q);
}

/** A part that did not go out stops the template's later parts: they would read out of order. */
function cancelRestOfBatch(q, item) {
  const at = q.items.indexOf(item);
  for (const other of q.items.slice(at + 1)) {
    if (other.batch === item.batch && other.token === item.token && !FINAL.has(other.stage)) {
      requestCancel(q, other, `an earlier part of this template was ${item.stage}`);
    }
  }
}

function requestCancel(q, item, why) {
  if (FINAL.has(item.stage)) return false;
  if (item.stage === 'new' || item.stage === 'reserved') {
    const wasNew = item.stage === 'new';
    finish(q, item, 'cancelled', new ProtocolError('cancelled', why));
    if (item.send_id !== null) cancelRemote(item.send_id);
    else if (wasNew && item.maybeReserved && q.reservingItem !== item) cancelLostReservation(item);
    // (A new item the reserve loop is working on is cancelled there when its reply comes.)
    return true;
  }
  return false; // already being posted: too late
}

function cancelByKey(token, key) {
  for (const q of queues.values()) {
    const item = q.items.find((i) => i.token === token && i.key === key);
    if (item) return requestCancel(q, item, 'cancelled by the agent');
  }
  return false;
}

/** A restored send may have been reserved before the restart: find it (same key) and cancel it. */
async function cancelLostReservation(item) {
  try {
    const r = await requestRetrying('send.reserve', reserveParams(item));
    if (r?.send_id !== undefined) await cancelRemote(r.send_id);
  } catch (e) {
    log.info('cancelling a lost reservation', e.code, e.message);
  }
}

async function cancelRemote(sendId) {
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      await request('send.cancel', { send_id: sendId });
      return;
    } catch (e) {
      if (!RECOVERABLE.has(e.code)) {
        log.info('send.cancel', sendId, e.code, e.message);
        return;
      }
      await Promise.all([waitForUp(), sleep(1_000)]);
    }
  }
}

function reserveParams(item) {
  return {
    idempotency_key: item.idempotency_key,
    platform: item.platform,
    workspace: item.workspace,
    conversation: item.conversation ?? null,
    customer: item.customer ?? null,
    template_id: item.template_id,
    revision: item.revision,
    part_index: item.part_index,
    payload: item.payload,
  };
}

/** Reserves every new item in order, as soon as it is queued, so the daemon sees the whole queue. */
async function reserveLoop(q) {
  if (q.reserving) return;
  q.reserving = true;
  try {
    for (;;) {
      const item = q.items.find((i) => i.stage === 'new');
      if (!item) break;
      const pair = pairs.get(item.token);
      if (!pair || (!pair.cs && pair.csLostAt + CS_GRACE_MS <= Date.now())) {
        requestCancel(q, item, 'the assistant frame is gone');
        continue;
      }
      q.reservingItem = item;
      let r;
      try {
        // Keep going for a cancelled send whose reservation may exist, to cancel it there too.
        r = await requestRetrying('send.reserve', reserveParams(item), (maybeSent) => {
          if (maybeSent) item.maybeReserved = true;
          return item.stage === 'new' || item.maybeReserved;
        });
      } catch (e) {
        finish(q, item, 'failed', e);
        continue;
      }
      if (item.stage !== 'new') {
        // Cancelled while the reservation was on its way: cancel it in the daemon too. (If no
        // attempt could have reached the daemon, the retry stopped and no send exists.)
        if (FINAL.has(item.stage) && r?.send_id !== undefined) cancelRemote(r.send_id);
        continue;
      }
      item.send_id = r.send_id;
      item.delay_ms = Number(r.delay_ms) || 0;
      item.due_at = dueAt(r);
      item.stage = 'reserved';
      emitState(item);
      persist();
      notify(q);
    }
  } catch (e) {
    log.warn('reserve loop', e);
  } finally {
    q.reserving = false;
    q.reservingItem = null;
  }
}

/** Runs the head of the queue, one send at a time. */
async function runLoop(q) {
  if (q.running) return;
  q.running = true;
  try {
    while (q.items.length) {
      const item = q.items[0];
      if (FINAL.has(item.stage)) {
        q.items.shift();
        persist();
        const pair = pairs.get(item.token);
        if (pair) dropPairIfIdle(pair);
        continue;
      }
      if (item.stage === 'new') {
        await waitChange(q);
        continue;
      }
      try {
        await runItem(q, item);
      } catch (e) {
        log.warn('send failed unexpectedly', e);
        finish(q, item, 'failed', e);
      }
    }
    queues.delete(q.workspace);
  } finally {
    q.running = false;
  }
}

async function runItem(q, item) {
  const pair = pairFor(item.token);
  // 1. Wait for the slot, then ask for it.
  let beginPause = 250;
  while (item.stage === 'reserved') {
    const wait = item.due_at - Date.now();
    if (wait > 0) {
      await waitChange(q, wait);
      continue; // re-check: cancelled? still waiting?
    }
    if (!(await waitForCs(pair))) {
      requestCancel(q, item, 'the assistant frame is gone');
      return;
    }
    if (item.stage !== 'reserved') return;
    let r;
    try {
      r = await request('send.begin', { send_id: item.send_id });
      beginPause = 250;
    } catch (e) {
      if (RECOVERABLE.has(e.code)) {
        await Promise.all([waitForUp(), sleep(beginPause)]);
        beginPause = Math.min(beginPause * 2, 5_000);
        continue;
      }
      finish(q, item, 'failed', e);
      return;
    }
    if (item.stage !== 'reserved') {
      // Cancelled while asking. If the slot was granted, hand it back.
      if (r?.go) await reportDone(item.send_id, { ok: false, error: 'cancelled before posting' });
      return;
    }
    if (r?.go) {
      item.stage = 'begun';
    } else {
      item.delay_ms = Number(r?.delay_ms) || 0;
      item.due_at = dueAt(r);
    }
    emitState(item);
    persist();
  }
  // 2. Hand the payload to the assistant frame.
  if (item.stage === 'begun') {
    item.stage = 'posting';
    persist();
    item.result = await postViaContentScript(pair, item);
    item.stage = 'posted';
    persist();
  }
  // 3. Report the outcome; the daemon measures the interval from here.
  if (item.stage === 'posted') {
    const result = item.result ?? { ok: false, error: 'no result' };
    let err = null;
    try {
      await reportDone(item.send_id, result);
    } catch (e) {
      err = e;
      log.warn('send.done', item.send_id, e.code, e.message);
    }
    if (result.ok) {
      finish(q, item, 'sent', null);
      usageChanged();
    }
    else finish(q, item, 'failed', new ProtocolError('post_failed', result.error));
    if (err && result.ok) log.warn('sent, but the daemon did not record it:', err.message);
  }
}

/** When a reserved slot opens: the daemon's `not_before_ms` if it gave one, else now + delay_ms. */
function dueAt(r) {
  const nb = Number(r?.not_before_ms);
  if (Number.isFinite(nb) && nb > 0) return nb;
  return Date.now() + (Number(r?.delay_ms) || 0);
}

function reportDone(sendId, result) {
  const params = { send_id: sendId, ok: result.ok };
  if (!result.ok) params.error = result.error;
  return requestRetrying('send.done', params);
}

function postViaContentScript(pair, item) {
  const cs = pair.cs;
  if (!cs) return Promise.resolve({ ok: false, error: 'the assistant frame is gone' });
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      pair.postWaiters.delete(item.send_id);
      resolve({ ok: false, error: `no answer from the assistant frame within ${POST_TIMEOUT_MS} ms` });
    }, POST_TIMEOUT_MS);
    pair.postWaiters.set(item.send_id, (r) => {
      clearTimeout(timer);
      resolve(r);
    });
    try {
      cs.postMessage({ type: 'post', send_id: item.send_id, wire: item.payload, post_as: item.post_as });
    } catch (e) {
      pair.postWaiters.delete(item.send_id);
      clearTimeout(timer);
      resolve({ ok: false, error: `could not reach the assistant frame: ${e?.message ?? e}` });
    }
  });
}

// ---------------------------------------------------------------------------------------------
// The `open-palette` command: tell the assistant frames of the active tab to show the palette.

async function openPaletteInActiveTab(tab) {
  let tabId = tab?.id;
  if (tabId === undefined && api.tabs?.query) {
    const [active] = await api.tabs.query({ active: true, currentWindow: true });
    tabId = active?.id;
  }
  for (const pair of pairs.values()) {
    if (pair.cs && (tabId === undefined || pair.tabId === tabId)) {
      quietly(() => pair.cs.postMessage({ type: 'open' }));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// User sites: content scripts for the origins of the user's site rules (storage.local `siteRules`,
// shape documented in content.js) that the user granted (optional_host_permissions). The
// manifest's static matches cover the demo pages; rules cannot be matched by URL here (a match
// pattern has no port wildcard and no query), so the script runs on the rule's whole origin and
// content.js applies the rule itself.

const USER_SCRIPT_ID = 'quiver-user-sites';

/** The match pattern of the origin a rule pattern names, or null. */
function originPatternOf(rulePattern) {
  const m = /^(\*|https?):\/\/([^/]+)/.exec(String(rulePattern ?? '').trim());
  if (!m) return null;
  const host = m[2].replace(/:\d+$/, '');
  if (!/^(\*|(\*\.)?[a-z0-9.-]+)$/i.test(host)) return null;
  return `${m[1]}://${host}/*`;
}

let syncingUserSites = Promise.resolve();
function syncUserSites() {
  syncingUserSites = syncingUserSites.then(syncUserSitesNow).catch((e) => log.warn('user sites', e));
  return syncingUserSites;
}

async function syncUserSitesNow() {
  if (!api.scripting?.registerContentScripts || !api.permissions?.contains) return;
  const got = await api.storage.local.get('siteRules');
  const rules = Array.isArray(got?.siteRules) ? got.siteRules : [];
  // The assistant pages' origins, and the workspaces' (where granted: there the script only
  // answers the origin handshake of browsers without location.ancestorOrigins, see content.js).
  const enabled = rules.filter((r) => r && r.enabled !== false);
  const patterns = enabled.flatMap((r) => [r.pattern, ...(Array.isArray(r.workspaces) ? r.workspaces : [])]);
  const wanted = [...new Set(patterns.map(originPatternOf).filter(Boolean))];
  const granted = [];
  for (const origin of wanted) {
    try {
      if (await api.permissions.contains({ origins: [origin] })) granted.push(origin);
    } catch {
      // an origin the browser does not accept as a permission
    }
  }
  const existing = await api.scripting.getRegisteredContentScripts({ ids: [USER_SCRIPT_ID] }).catch(() => []);
  if (existing.length) await api.scripting.unregisterContentScripts({ ids: [USER_SCRIPT_ID] });
  if (!granted.length) return;
  await api.scripting.registerContentScripts([{
    id: USER_SCRIPT_ID,
    matches: granted,
    js: ['build-config.js', 'content.js'],
    allFrames: true,
    runAt: 'document_idle',
    persistAcrossSessions: true,
  }]);
  log.info('content script registered for', granted.join(' '));
}

// ---------------------------------------------------------------------------------------------
// Start-up. Listeners are registered synchronously (a service worker must do so to be woken).

api.runtime.onConnect.addListener(onConnect);
api.alarms.onAlarm.addListener((alarm) => {
  // Being woken is the point; top-level code has already restored the queue and connected.
  if (alarm.name === RECONNECT_ALARM && !native.port) connectNative();
});
// With this listener Chromium starts the background with the browser: the native host connects
// before the agent opens a workspace, and sends left over from the last session are cleaned up.
api.runtime.onStartup.addListener(() => {});
api.commands?.onCommand?.addListener((command, tab) => {
  if (command === 'open-palette') openPaletteInActiveTab(tab).catch((e) => log.warn('open-palette', e));
});
api.storage.onChanged?.addListener((changes, area) => {
  if (area === 'local' && changes.siteRules) syncUserSites();
});
api.permissions?.onAdded?.addListener(() => syncUserSites());
api.permissions?.onRemoved?.addListener(() => syncUserSites());
api.runtime.onInstalled?.addListener(() => syncUserSites());

const ready = restore();
connectNative();
