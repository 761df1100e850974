// @ts-check
/*
 * Quiver panel: the template palette, an extension page shown in an iframe inside the assistant
 * frame. It searches the library and renders parts to their wire payload with the wasm core
 * (lib/core.js) and asks the background to send them; the
 * background owns the send queue.
 *
 * URL: panel.html#<token>&platform=<platform>[&channel=<channel>] (set by the content script).
 * Port to the background: "quiver-panel:<token>", then "quiver-panel:<token>:<resume>" when it
 * reconnects (protocol and PAIRING in background.js): the background accepts it only for a token
 * its content script registered, once; `data-pairing` on the palette is "paired" or "refused".
 * It obeys focus requests from the background's port only (never from postMessage).
 *
 * Conversation context: the background forwards what the content script reports (`context`:
 * the assistant frame's URL and, on Sobot, the workbench's `selected` messages). On Sobot the
 * target's params (cid, uid, partnerId...) come from them (wasm `sobot_context`). Every send is
 * rendered when it is queued, with the cid/uid of that moment inside its payload, and carries
 * them as `conversation`/`customer`: a later conversation switch changes what the NEXT send
 * targets, never one already queued.
 *
 * Variables filled from the context (when known): `conversation.id` (Sobot cid), `customer.id`
 * (Sobot uid), `customer.partner_id` (Sobot partnerId). Others are asked for in the form.
 */
import { api } from './lib/browser.js';
import { loadCore as loadWasmCore } from './lib/core.js';
import { installDevHooks } from './dev-hooks.js';
import { t as message, translate } from './lib/i18n.js';
import { drawDisplay, renderContext, summary } from './lib/draw.js';
import { fromBase64, readStoredLibrary, unpackAt } from './lib/library-db.js';
import { boot, earlyRead, readStoredBytes } from './panel-start.js';
import { Pending, RpcError } from './lib/rpc.js';
import { LOCAL, LOCAL_META, metaOf, templateKey } from './lib/team.js';

/** @typedef {import('./lib/core.js').Core} Core */
/** The wasm core, once loaded (`state.core === 'ready'`). */
let core = /** @type {Core} */ (/** @type {unknown} */ (null));
const REQUEST_TIMEOUT_MS = 30_000;
const MAX_SENDS_SHOWN = 50;
const MAX_SHOWN = 50;
/**
 * The longest a click's feedback waits to be drawn. It is drawn as soon as a send of the click is
 * answered (posted and recorded, or queued to wait, or failed), typically 10 ms after the click;
 * a frame drawn at once would compete with the send for the CPU (docs/benchmarks.md, issue 9).
 */
const FEEDBACK_DRAW_MS = 50;
/**
 * A click's feedback not drawn yet: `draw` runs when a send of `keys` is answered, after
 * FEEDBACK_DRAW_MS, or before anything else changes what the panel shows (flushDraw), whichever
 * comes first. `sending` states that come before it are drawn after it.
 * @type {{keys: Set<string>, draw: () => void, timer: ReturnType<typeof setTimeout>, held: any[]} | null}
 */
let pendingDraw = null;

const PREVIEW_CHARS = 120;
/** A template sent to the same conversation within this window asks before going again. */
const RECENT_MS = 24 * 3600_000;

/**
 * chrome.i18n message `key` (palette_*), else the English text. `$1`.. are substituted.
 * @param {string} key
 * @param {string} fallback
 * @param {...unknown} subs
 */
const t = (key, fallback, ...subs) => message(key, subs, fallback);

translate(document, 'palette_lang');

/**
 * The element `sel` finds (the page's markup has each one).
 * @param {string} sel
 * @returns {any}
 */
const $ = (sel) => document.querySelector(sel);
const ui = {
  palette: $('[data-testid="quiver-palette"]'),
  context: $('[data-testid="quiver-context"]'),
  status: $('[data-testid="quiver-daemon-status"]'),
  statusLabel: $('[data-testid="quiver-daemon-status"] .status-label'),
  search: $('[data-testid="quiver-search"]'),
  notice: $('[data-testid="quiver-notice"]'),
  refusal: $('[data-testid="quiver-refusal"]'),
  list: $('[data-testid="quiver-templates"]'),
  empty: $('[data-testid="quiver-empty"]'),
  detail: $('[data-testid="quiver-detail"]'),
  parts: $('[data-testid="quiver-parts"]'),
  vars: $('[data-testid="quiver-variables"]'),
  varsFields: $('[data-testid="quiver-variables"] .vars-fields'),
  recent: $('[data-testid="quiver-recent"]'),
  recentText: $('[data-testid="quiver-recent"] .recent-text'),
  recentConfirm: $('[data-testid="quiver-recent-confirm"]'),
  blocked: $('[data-testid="quiver-send-blocked"]'),
  sendButton: $('[data-testid="quiver-send-button"]'),
  team: $('[data-testid="quiver-detail-team"]'),
  sendsSection: $('.sends-section'),
  sends: $('[data-testid="quiver-sends"]'),
};

/** @param {string} hash */
function parseHash(hash) {
  const [token = '', ...rest] = hash.replace(/^#/, '').split('&');
  const params = new URLSearchParams(rest.join('&'));
  return { token, platform: params.get('platform') ?? '', channel: params.get('channel') || null };
}

const { token, platform, channel } = parseHash(location.hash);

/**
 * A template as the daemon lists it (docs/protocol.md `templates.list`; parts as the library format).
 * @typedef {{id: string, title: string, shortcut?: string, folder?: string, tags?: string[], revision?: number,
 *   variables?: {name: string, label?: string, required?: boolean}[], parts: Record<string, any>[]}} Template
 * @typedef {import('./background/native.js').Status} Status
 * @typedef {{template_id: string, library?: string | null, state: string, conversation?: string | null, customer?: string | null,
 *   sent_at?: number | null, queued_at?: number | null}} HistoryRow
 * @typedef {import('./lib/team.js').TeamMeta} TeamMeta
 * @typedef {import('./lib/team.js').TeamLibrary} TeamLibrary
 * @typedef {{el: HTMLElement, state: string, dueAt: number | null, dueWall: number | null,
 *   error?: {code?: string, message?: string} | null, [k: string]: any}} SendView
 */

/**
 * @type {{core: 'loading' | 'ready' | 'error', coreReadyAt?: number, daemon: Status,
 *   templates: Template[] | null, byKey: Map<string, Template>, usage: Map<string, {usage_count: number, last_used_at: number}>,
 *   metas: TeamMeta[] | null, libraries: Map<string, TeamLibrary>, team: boolean,
 *   index: import('./lib/core.js').Core['SearchIndex']['prototype'] | null, indexFrom: 'snapshot' | 'build' | null,
 *   indexReadyAt: number | null, snapshot: string | null, snapshotBytes: Uint8Array | null,
 *   lib: {text: Uint8Array | null, ends: number[] | Uint32Array, cache: Map<number, Template>,
 *     meta: {text: Uint8Array, ends: Uint32Array} | null} | null, count: number,
 *   generation: number | null, fitAsked: number, boost: Float32Array, templatesLoaded: boolean, loadingTemplates: boolean,
 *   reloadWanted?: boolean, reloadTimer?: ReturnType<typeof setTimeout>, timing?: Record<string, number>,
 *   earlyRead?: Promise<any> | null, shown: Template[], active: number, sends: Map<string, SendView>,
 *   frameContext: {url: string, selected: unknown[]}, params: Record<string, string>,
 *   values: Map<string, Record<string, string>>, history: HistoryRow[], historyFor: string | null,
 *   confirmRepeat: string | null}}
 */
const state = {
  core: 'loading',
  daemon: { state: 'down', host: 'disconnected', reason: 'not connected yet', daemon: null },
  templates: [], // Template objects, in the order given to the index
  byKey: new Map(), // library/id -> Template (lib/team.js: ids are unique within a library only)
  usage: new Map(), // library/id -> {usage_count, last_used_at} from the daemon
  metas: null, // each template's library and team state, in index order (when given as a list)
  libraries: new Map(), // team library id -> {id, name, role}
  team: false, // some template is of a team library: every row names its library
  index: null, // wasm SearchIndex
  indexFrom: null, // 'snapshot' (the background's build) | 'build' (built here)
  indexReadyAt: null, // performance.now() when the index became usable
  snapshot: null, // the background's index snapshot (base64) until loaded
  snapshotBytes: null, // the same, read from IndexedDB
  lib: null, // {text, ends, cache}: the templates as the background stored them (see templateAt)
  count: 0, // number of templates
  generation: null, // the background's library generation of `templates`
  fitAsked: 0,
  boost: new Float32Array(0),
  templatesLoaded: false,
  loadingTemplates: false,
  shown: [], // the templates matching the search, in display order
  active: -1, // index into `shown`
  sends: new Map(), // key -> {el, state, dueAt, dueWall}
  frameContext: { url: '', selected: [] },
  params: {}, // target params (Sobot: cid, uid, partnerId, ...)
  values: new Map(), // library/id -> {name: value} typed in the form
  history: [], // history rows for the current conversation (newest first)
  historyFor: null,
  confirmRepeat: null, // library/id of the template the agent confirmed sending again
};

// ---------------------------------------------------------------------------------------------
// Background port

/** @type {chrome.runtime.Port | null} */
let port = null;
/** @type {string | null} */
let resume = null; // the secret the background gave this panel when it paired
let refused = false; // refused for good: never reconnect
/** @type {Pending<any>} */
const pending = new Pending();
let retry = 100;

function connect() {
  if (port || refused) return;
  if (!api.runtime?.id) return; // the extension is gone
  const p = api.runtime.connect({ name: resume ? `quiver-panel:${token}:${resume}` : `quiver-panel:${token}` });
  port = p;
  p.onMessage.addListener((msg) => {
    retry = 100;
    onMessage(msg);
  });
  p.onDisconnect.addListener(() => {
    if (port !== p) return;
    port = null;
    pending.rejectAll(new RpcError('background_restarted', 'the extension background restarted; try again'));
    setStatus({ state: 'down', host: 'disconnected', reason: refused ? 'refused by the extension' : 'reconnecting to the extension', daemon: null });
    if (refused) return;
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 5_000);
  });
  // The background sends `paired` and the status first once it accepts this panel.
}

/**
 * One request to the background; resolves to its result.
 * @param {string} type
 * @param {object} [fields]
 * @returns {Promise<any>}
 */
function call(type, fields = {}) {
  if (!port) return Promise.reject(new RpcError('background_unavailable', 'not connected to the extension'));
  const { id: req, promise } = pending.start(
    REQUEST_TIMEOUT_MS,
    () => new RpcError('timeout', `${type}: no answer within ${REQUEST_TIMEOUT_MS / 1000} s`),
  );
  try {
    port.postMessage({ ...fields, type, req });
  } catch (e) {
    pending.reject(req, new RpcError('background_unavailable', String(/** @type {Error} */ (e)?.message ?? e)));
  }
  return promise;
}

/** @param {any} msg a message of the background's port */
function onMessage(msg) {
  switch (msg?.type) {
    case 'reply':
      if (msg.error) pending.reject(msg.req, new RpcError(msg.error.code, msg.error.message));
      else pending.resolve(msg.req, msg.result);
      break;
    case 'paired':
      resume = typeof msg.resume === 'string' ? msg.resume : null;
      ui.palette.dataset.pairing = 'paired';
      break;
    case 'refused':
      // Not this frame's panel (a stolen or unknown token): stays empty. An unregistered token
      // may be a content script still reconnecting after a background restart: keep trying.
      ui.palette.dataset.pairing = 'refused';
      ui.palette.dataset.refusedCode = String(msg.code ?? '');
      if (msg.code !== 'not_registered') refused = true;
      break;
    case 'focus-search':
      focusSearch();
      break;
    case 'status':
      setStatus(msg.status);
      break;
    case 'send-state':
      onSendState(msg);
      break;
    case 'library-changed':
      // A burst of changes (an import) costs one reload.
      clearTimeout(state.reloadTimer);
      state.reloadTimer = setTimeout(() => {
        state.reloadWanted = true;
        loadTemplates();
      }, 200);
      break;
    case 'context':
      state.frameContext = { url: String(msg.url ?? ''), selected: Array.isArray(msg.selected) ? msg.selected : [] };
      updateContext();
      break;
    default:
      break;
  }
}

function focusSearch() {
  ui.search.focus();
  ui.search.select();
  ui.palette.dataset.focusedAt = String(performance.now());
}

// Alt+Shift+Q inside the panel focuses the search too.
document.addEventListener('keydown', (e) => {
  if (!e.isTrusted) return;
  if (e.altKey && e.shiftKey && !e.ctrlKey && !e.metaKey && (e.code === 'KeyQ' || e.key?.toLowerCase() === 'q')) {
    e.preventDefault();
    focusSearch();
  }
});

// ---------------------------------------------------------------------------------------------
// Daemon status

/** @param {Status} s */
function statusLabel(s) {
  if (s.state === 'up') return s.daemon ? t('palette_status_up_version', 'Connected · daemon $1', s.daemon) : t('palette_status_up', 'Connected');
  if (s.host === 'connecting') return t('palette_status_starting', 'Starting Quiver…');
  if (s.host === 'connected') return t('palette_status_daemon_down', 'Quiver daemon is down');
  return t('palette_status_unreachable', 'Quiver app not reachable');
}

/** @param {Status} s */
function setStatus(s) {
  if (!s || typeof s !== 'object') return;
  const wasUp = state.daemon.state === 'up';
  state.daemon = s;
  ui.status.dataset.state = s.state === 'up' ? 'up' : 'down';
  ui.statusLabel.textContent = statusLabel(s);
  ui.status.title = s.state === 'up' ? '' : (s.reason ?? '');
  if (s.state === 'up' && (!wasUp || !state.templatesLoaded)) loadTemplates();
  if (s.state === 'up' && !wasUp) refreshHistory();
  renderEmpty();
}

// ---------------------------------------------------------------------------------------------
// Conversation context and target

function conversation() {
  if (platform === 'sobot') return { conversation: state.params.cid ?? null, customer: state.params.uid ?? null };
  return { conversation: null, customer: null };
}

function target() {
  /** @type {{platform: string, params: Record<string, string>, channel?: string, nonce?: string}} */
  const tg = { platform, params: state.params };
  if (channel) tg.channel = channel;
  if (platform === 'wechat-dkf') {
    const a = new Uint32Array(1);
    crypto.getRandomValues(a);
    tg.nonce = String(a[0]);
  }
  return tg;
}

/** Values known from the conversation, for the template variables. */
function contextValues() {
  /** @type {Record<string, string>} */
  const v = {};
  if (platform === 'sobot') {
    if (state.params.cid) v['conversation.id'] = state.params.cid;
    if (state.params.uid) v['customer.id'] = state.params.uid;
    if (state.params.partnerId) v['customer.partner_id'] = state.params.partnerId;
  }
  return v;
}

function updateContext() {
  if (state.core !== 'ready') return;
  if (platform === 'sobot') {
    try {
      state.params = JSON.parse(core.sobot_context(state.frameContext.url, JSON.stringify(state.frameContext.selected)));
    } catch (e) {
      state.params = {};
      showNotice(e, t('palette_context_error', 'Could not read the conversation'));
    }
  } else {
    state.params = {};
  }
  const { conversation: cid, customer: uid } = conversation();
  ui.context.dataset.conversation = cid ?? '';
  ui.context.dataset.customer = uid ?? '';
  ui.context.textContent = cid ? t('palette_context_conversation', 'Chat $1', cid) : '';
  ui.context.title = uid ? t('palette_context_customer', 'Customer $1', uid) : '';
  computeBoost();
  renderList();
  refreshHistory();
}

// ---------------------------------------------------------------------------------------------
// Templates and search

/**
 * Every string of a part (its fallback left out), for the plain-text search.
 * @param {unknown} part
 * @returns {string}
 */
function partText(part) {
  if (!part || typeof part !== 'object') return '';
  /** @type {{tp: Template, index: number}[]} */
  /** @type {string[]} */
  const out = [];
  for (const [k, v] of Object.entries(part)) {
    if (k === 'fallback' || k === 'type') continue;
    if (typeof v === 'string') out.push(v);
    else if (v && typeof v === 'object') out.push(partText(v));
  }
  return out.join(' ');
}

/**
 * The list's line for `tp`: its first part as the customer will see it (the core's preview), or
 * why it cannot be sent here.
 * @param {Template} tp
 * @param {{targetJson: string, ctxJson: string, key: string}} at the conversation's target and context
 * @returns {string}
 */
function previewText(tp, at) {
  if (state.core !== 'ready' || !tp.parts?.length) return '';
  // The same line for the same template, conversation and minute: typing a search re-lists
  // the same templates, and the core need not preview them again.
  if (lineCache.key !== at.key) {
    lineCache.key = at.key;
    lineCache.lines.clear();
  }
  const cacheKey = `${keyFor(tp)}\u0000${tp.revision ?? ''}`;
  const cached = lineCache.lines.get(cacheKey);
  if (cached !== undefined) return cached;
  const line = previewLine(tp, at);
  lineCache.lines.set(cacheKey, line);
  return line;
}

/** The list lines already previewed, for `key` (the conversation's target and values, the minute). */
const lineCache = { key: '', lines: /** @type {Map<string, string>} */ (new Map()) };

/** @param {Template} tp @param {{targetJson: string, ctxJson: string}} at */
function previewLine(tp, at) {
  let text = '';
  try {
    const p = JSON.parse(core.preview_part(at.targetJson, JSON.stringify(tp), 0, at.ctxJson));
    text = p.display ? summary(p.display) : p.refusal?.message ?? '';
  } catch (e) {
    text = String(/** @type {Error} */ (e)?.message ?? e);
  }
  text = text.replace(/\s+/g, ' ').trim();
  return text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS - 1)}…` : text;
}

async function loadTemplates() {
  if (state.loadingTemplates) {
    state.reloadWanted = true; // once this load is done
    return;
  }
  state.loadingTemplates = true;
  state.reloadWanted = false;
  try {
    const asked = performance.now();
    let r = await call('templates');
    state.timing = { ...boot, asked, received: performance.now() };
    state.usage = new Map((r?.usage ?? []).map((/** @type {{id: string, library?: string, usage_count: number, last_used_at: number}} */ x) => [templateKey(x.library, x.id), x]));
    state.generation = Number.isInteger(r?.generation) ? r.generation : null;
    // The read started at load (earlyRead) overlaps the core's start-up and this request.
    const early = state.earlyRead;
    state.earlyRead = null;
    let stored = r?.stored === true && early ? await early : null;
    if (stored && stored.rec.generation !== state.generation) stored = null;
    if (!stored && r?.stored === true) stored = readStoredBytes(await readStoredLibrary(state.generation));
    const bytes = stored && await stored.snapshot;
    if (stored && bytes) state.timing = { ...state.timing, ...boot, read: performance.now() };
    if (!(stored && bytes && await setStoredLibrary(stored.rec, bytes, stored.text))) {
      if (r?.stored === true) r = await call('templates', { full: true });
      state.generation = Number.isInteger(r?.generation) ? r.generation : null;
      state.snapshot = typeof r?.index === 'string' ? r.index : null;
      setLibraries(r?.libraries);
      setTemplates(r?.templates ?? [], Array.isArray(r?.meta) ? r.meta : null);
    }
    hideNotice();
  } catch (e) {
    showNotice(e, t('palette_load_failed', 'Could not load templates'));
  } finally {
    state.loadingTemplates = false;
    if (state.reloadWanted) loadTemplates();
  }
}

/**
 * The team libraries' names and roles (for the rows' library badges).
 * @param {unknown} list
 */
function setLibraries(list) {
  state.libraries = new Map((Array.isArray(list) ? list : []).map((/** @type {TeamLibrary} */ l) => [l.id, l]));
}

/** Each template's team state, kept beside it (the core's templates stay plain library JSON). */
const metaByTemplate = /** @type {WeakMap<Template, TeamMeta>} */ (new WeakMap());
/** The library and team state of `tp` (a template of the library shown). */
const metaFor = (/** @type {Template} */ tp) => metaByTemplate.get(tp) ?? LOCAL_META;
/** The key of `tp` across libraries (`library/id`). */
const keyFor = (/** @type {Template} */ tp) => templateKey(metaFor(tp).library, tp.id);

/**
 * @param {Template[]} list
 * @param {unknown[] | null} [metas] list[i]'s library and team state (none: all local)
 */
function setTemplates(list, metas = null) {
  state.templates = list;
  state.lib = null;
  state.count = list.length;
  state.metas = metas && metas.length === list.length ? metas.map(metaOf) : null;
  state.team = Boolean(state.metas?.some((m) => m.library !== LOCAL));
  if (state.metas) list.forEach((x, i) => metaByTemplate.set(x, /** @type {TeamMeta[]} */ (state.metas)[i]));
  state.byKey = new Map(list.map((x) => [keyFor(x), x]));
  state.templatesLoaded = true;
  lineCache.lines.clear(); // the library changed: its lines too
  buildIndex();
  renderList();
}

/**
 * The library as the background keeps it in IndexedDB (lib/library-db.js): the index is
 * loaded from the snapshot as soon as the core is ready; the templates' JSON texts (parsed one
 * by one when shown) arrive meanwhile or after, and the rows are drawn then ("Loading
 * templates…" until). False without them (a file gone): the library is then asked over the port.
 * @param {import('./lib/library-db.js').LibraryRecord} rec
 * @param {Uint8Array} bytes the snapshot
 * @param {Promise<Uint8Array | null>} text the templates' texts
 * @returns {Promise<boolean>}
 */
async function setStoredLibrary(rec, bytes, text) {
  state.templates = null;
  /** @type {NonNullable<typeof state.lib>} */
  const lib = { text: null, ends: rec.ends, cache: new Map(), meta: rec.meta ?? null };
  state.lib = lib;
  state.count = rec.ends.length;
  state.metas = null;
  state.team = Boolean(rec.meta);
  setLibraries(rec.libraries);
  state.byKey = new Map();
  state.snapshotBytes = bytes;
  state.templatesLoaded = false; // until the texts are here: no rows yet
  lineCache.lines.clear(); // the library changed: its lines too
  buildIndex();
  renderList();
  const texts = await text;
  if (state.lib !== lib) return true; // a newer library meanwhile
  if (!texts) return false;
  lib.text = texts;
  state.templatesLoaded = true;
  if (state.timing) state.timing.text = performance.now();
  renderList(); // with the channel fit, if it came first (buildIndex asked for it)
  return true;
}

/**
 * The template at `i` in index order.
 * @param {number} i
 * @returns {Template | undefined}
 */
function templateAt(i) {
  if (state.templates) return state.templates[i];
  const lib = state.lib;
  if (!lib?.text || !(i >= 0 && i < lib.ends.length)) return undefined;
  let tp = lib.cache.get(i);
  if (!tp) {
    const parsed = /** @type {Template} */ (JSON.parse(utf8.decode(lib.text.subarray(i ? lib.ends[i - 1] : 0, lib.ends[i]))));
    // Its team state, stored beside it (lib/library-db.js): read with the template, when shown.
    if (lib.meta) {
      const m = unpackAt(lib.meta, i);
      if (m) metaByTemplate.set(parsed, metaOf(m));
    }
    lib.cache.set(i, parsed);
    state.byKey.set(keyFor(parsed), parsed);
    tp = parsed;
  }
  return tp;
}

const utf8 = new TextDecoder();
/**
 * The search index: loaded from the snapshot the background built for this library (no build
 * here), or, when the background had none, built from the templates.
 */
function buildIndex() {
  // A stored snapshot is loaded before the templates' texts are here (setStoredLibrary).
  if (state.core !== 'ready' || !(state.templatesLoaded || state.snapshotBytes)) return;
  state.index?.free?.();
  state.index = null;
  state.indexFrom = null;
  if (state.snapshot || state.snapshotBytes) {
    state.boost = new Float32Array(0); // until the background's fit for this library arrives
    try {
      const bytes = state.snapshotBytes ?? fromBase64(state.snapshot ?? '');
      if (state.timing) state.timing.decoded = performance.now();
      state.index = core.SearchIndex.from_snapshot(bytes);
      state.indexFrom = 'snapshot';
    } catch (e) {
      console.warn('[quiver] the index snapshot did not load; building here:', /** @type {Error} */ (e)?.message ?? e);
    }
    state.snapshot = null; // not needed any more
    state.snapshotBytes = null;
  }
  if (!state.index && state.templates) {
    try {
      // Usage and recency ride along for the ranking (the index ignores them for matching).
      const rows = state.templates.map((x) => {
        const u = state.usage.get(keyFor(x));
        return u ? { ...x, usage_count: u.usage_count, last_used_at: u.last_used_at } : x;
      });
      state.index = new core.SearchIndex(JSON.stringify(rows));
      state.indexFrom = 'build';
    } catch (e) {
      state.index = null;
      showNotice(e, t('palette_index_failed', 'Search is unavailable'));
    }
  }
  ui.palette.dataset.index = state.index ? 'ready' : 'none';
  ui.palette.dataset.indexFrom = state.indexFrom ?? '';
  if (state.index) state.indexReadyAt = performance.now();
  computeBoost();
}

/**
 * Channel fit: templates whose first part this conversation can show come first. An index built
 * here computes it itself; for a loaded snapshot the background's index (which has the parts)
 * does, and the list is redrawn when it arrives.
 */
function computeBoost() {
  if (state.core !== 'ready' || !(state.templatesLoaded || state.indexFrom === 'snapshot')) return;
  if (state.indexFrom === 'snapshot') {
    const generation = state.generation;
    const asked = ++state.fitAsked;
    call('fit', { generation, target: target() })
      .then((r) => {
        if (asked !== state.fitAsked || r?.generation !== state.generation || !Array.isArray(r?.boost)) return;
        if (r.boost.length !== state.count) return;
        state.boost = Float32Array.from(r.boost);
        renderList();
      })
      .catch(() => {});
    return;
  }
  if (!state.templates) return;
  try {
    state.boost = state.index
      ? state.index.channel_fit(JSON.stringify(target()))
      : core.channel_fit(JSON.stringify(target()), JSON.stringify(state.templates));
  } catch {
    state.boost = new Float32Array(0);
  }
}

/** The templates matching `q`, best first, with their positions in index order. */
/**
 * The templates matching `q`, best first (with their index positions).
 * @param {string} q
 * @returns {{tp: Template, index: number}[]}
 */
function search(q) {
  if (state.index) {
    const hits = JSON.parse(state.index.search(q, MAX_SHOWN, Date.now(), state.boost));
    return /** @type {{tp: Template, index: number}[]} */ (hits.map((/** @type {{index: number}} */ h) => ({ tp: templateAt(h.index), index: h.index })).filter((/** @type {{tp: Template | undefined}} */ x) => x.tp));
  }
  if (!state.templates) return [];
  // Before the core is loaded: a plain substring filter.
  const ql = q.toLowerCase();
  /** @type {{tp: Template, index: number}[]} */
  const out = [];
  state.templates.forEach((x, index) => {
    if (out.length < MAX_SHOWN
        && (!ql || [x.title, x.shortcut ?? '', (x.tags ?? []).join(' '), ...(x.parts ?? []).map(partText)].join('\n').toLowerCase().includes(ql))) {
      out.push({ tp: x, index });
    }
  });
  return out;
}

/** Re-renders the list. A new search selects the first match; a refresh keeps the selection. */
function renderList({ keepSelection = true } = {}) {
  flushDraw();
  const q = ui.search.value.trim();
  const activeTp = keepSelection ? state.shown[state.active] : undefined;
  const activeKey = activeTp ? keyFor(activeTp) : undefined;
  const found = state.templatesLoaded ? search(q) : [];
  state.shown = found.map((x) => x.tp);
  const frag = document.createDocumentFragment();
  const withFit = state.boost.length === state.count;
  const values = contextValues();
  const now = new Date();
  const tg = target();
  const at = {
    targetJson: JSON.stringify(tg),
    ctxJson: JSON.stringify(renderContext(values, now)),
    key: JSON.stringify([{ ...tg, nonce: undefined }, values, Math.floor(now.getTime() / 60_000), now.getTimezoneOffset()]),
  };
  state.shown.forEach((tp, i) => {
    const li = document.createElement('li');
    li.id = `quiver-option-${i}`;
    li.className = 'template';
    li.setAttribute('role', 'option');
    li.setAttribute('aria-selected', 'false');
    li.dataset.testid = 'quiver-template';
    li.dataset.templateId = tp.id;
    const meta = metaFor(tp);
    li.dataset.library = meta.library;
    li.dataset.key = keyFor(tp);
    if (meta.sync) li.dataset.sync = meta.sync;
    li.dataset.index = String(i);
    const f = withFit ? state.boost[found[i].index] : undefined;
    if (f === 0) {
      li.dataset.fit = 'none';
      li.setAttribute('aria-description', t('palette_fit_none', 'This conversation cannot show it'));
    } else if (f === 0.5) {
      li.dataset.fit = 'fallback';
    }

    const head = document.createElement('div');
    head.className = 'template-head';
    const title = document.createElement('span');
    title.className = 'template-title';
    title.textContent = tp.title;
    head.append(title);
    if (tp.shortcut) {
      const sc = document.createElement('kbd');
      sc.className = 'shortcut';
      sc.textContent = tp.shortcut;
      head.append(sc);
    }
    if ((tp.parts?.length ?? 0) > 1) {
      const n = document.createElement('span');
      n.className = 'parts-count';
      n.textContent = t('palette_parts_count', '$1 parts', tp.parts.length);
      head.append(n);
    }
    if (state.team) head.append(...teamBadges(meta));
    const body = document.createElement('div');
    body.className = 'template-preview';
    body.textContent = previewText(tp, at);
    li.append(head, body);
    frag.append(li);
  });
  ui.list.replaceChildren(frag);
  const keep = activeKey === undefined ? -1 : state.shown.findIndex((x) => keyFor(x) === activeKey);
  setActive(keep >= 0 ? keep : state.shown.length ? 0 : -1, false);
  // The same template still selected after a reload: its team state may have changed (pushed,
  // refused, in conflict).
  const shownTp = state.shown[state.active];
  if (shownTp && !ui.detail.hidden) renderTeam(shownTp);
  renderEmpty();
}

/** A library's name for people: the team library's name, "Personal" for the local one. */
function libraryName(/** @type {string} */ id) {
  if (id === LOCAL) return t('palette_library_local', 'Personal');
  return state.libraries.get(id)?.name ?? id.slice(0, 8);
}

/**
 * What a team state is called in the palette, and its longer explanation (the title).
 * @param {TeamMeta} meta
 * @returns {{label: string, title: string} | null} null when there is nothing to say (synced)
 */
function syncLabel(meta) {
  switch (meta.sync) {
    case 'pending':
      return { label: t('palette_sync_pending', 'not uploaded'), title: t('palette_sync_pending_title', 'Saved on this computer; not on the team hub yet') };
    case 'draft': {
      const why = meta.reason ?? t('palette_sync_draft_unknown', 'the hub refused it');
      return { label: t('palette_sync_draft', 'local draft'), title: t('palette_sync_draft_title', 'Only on this computer: $1', why) };
    }
    case 'proposed':
      return { label: t('palette_sync_proposed', 'in review'), title: t('palette_sync_proposed_title', 'Waiting for a maintainer to approve it') };
    case 'conflict':
      return { label: t('palette_sync_conflict', '2 versions'), title: t('palette_sync_conflict_title', 'Two versions were kept; the one shown is the first the hub got. Resolve it in the options page.') };
    default:
      return null;
  }
}

/**
 * The library badge and the sync badge of a row (only drawn when some template is a team one).
 * @param {TeamMeta} meta
 * @returns {HTMLElement[]}
 */
function teamBadges(meta) {
  const lib = el('span', `library-badge${meta.library === LOCAL ? ' local' : ''}`, libraryName(meta.library));
  lib.dataset.testid = 'quiver-template-library';
  const out = [lib];
  const sync = syncLabel(meta);
  if (sync) {
    const b = el('span', `sync-badge sync-${meta.sync}`, sync.label);
    b.dataset.testid = 'quiver-template-sync';
    b.dataset.sync = meta.sync ?? '';
    b.title = sync.title;
    out.push(b);
  }
  return out;
}

function renderEmpty() {
  let text = '';
  if (!state.templatesLoaded) {
    text = state.daemon.state === 'up'
      ? t('palette_loading', 'Loading templates…')
      : t('palette_needs_daemon', 'Templates appear when the Quiver daemon is running.');
  } else if (!state.count) {
    text = t('palette_no_templates', 'No templates yet. Import a library with the quiver command.');
  } else if (!state.shown.length) {
    text = t('palette_no_match', 'No template matches the search.');
  }
  ui.empty.textContent = text;
  ui.empty.hidden = !text;
}

/** @param {number} i */
/**
 * @param {number} i
 * @param {boolean} [scroll]
 * @param {Assessment} [assessed] the preview of that template just made (by a send): drawn as is
 */
function setActive(i, scroll = true, assessed = undefined) {
  flushDraw();
  const prev = ui.list.querySelector('[aria-selected="true"]');
  if (prev) prev.setAttribute('aria-selected', 'false');
  const next = state.shown[i];
  const changed = state.active !== i || (next ? keyFor(next) : undefined) !== ui.detail.dataset.templateKey;
  state.active = i;
  const el = i >= 0 ? ui.list.children[i] : null;
  if (el) {
    el.setAttribute('aria-selected', 'true');
    ui.list.setAttribute('aria-activedescendant', el.id);
    ui.search.setAttribute('aria-activedescendant', el.id);
    if (scroll) el.scrollIntoView({ block: 'nearest' });
  } else {
    ui.list.removeAttribute('aria-activedescendant');
    ui.search.removeAttribute('aria-activedescendant');
  }
  if (changed) renderDetail(assessed);
}

/** @param {KeyboardEvent} e */
function onKey(e) {
  flushDraw();
  const n = state.shown.length;
  if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
    e.preventDefault();
    if (!n) return;
    const step = e.key === 'ArrowDown' ? 1 : -1;
    setActive(state.active < 0 ? 0 : (state.active + step + n) % n);
  } else if (e.key === 'Home' && e.currentTarget === ui.list) {
    e.preventDefault();
    if (n) setActive(0);
  } else if (e.key === 'End' && e.currentTarget === ui.list) {
    e.preventDefault();
    if (n) setActive(n - 1);
  } else if (e.key === 'Enter') {
    e.preventDefault();
    const tp = state.shown[state.active];
    if (tp) sendTemplate(tp);
  } else if (e.key === 'Escape' && e.currentTarget === ui.search && ui.search.value) {
    e.preventDefault();
    ui.search.value = '';
    renderList({ keepSelection: false });
  }
}

ui.search.addEventListener('input', () => renderList({ keepSelection: false }));
ui.search.addEventListener('keydown', onKey);
ui.list.addEventListener('keydown', onKey);
ui.list.addEventListener('click', (/** @type {MouseEvent} */ e) => {
  const li = /** @type {HTMLElement | null} */ (/** @type {HTMLElement} */ (e.target).closest('[data-testid="quiver-template"]'));
  if (!li) return;
  const i = Number(li.dataset.index);
  const tp = state.shown[i];
  if (tp) sendTemplate(tp, i);
  else setActive(i, false);
});
/** The template the detail shows. */
const detailTemplate = () => state.byKey.get(ui.detail.dataset.templateKey ?? '');
ui.sendButton.addEventListener('click', () => {
  const tp = detailTemplate();
  if (tp) sendTemplate(tp);
});
ui.vars.addEventListener('submit', (/** @type {SubmitEvent} */ e) => {
  e.preventDefault();
  const tp = detailTemplate();
  if (tp) sendTemplate(tp);
});
ui.recentConfirm.addEventListener('click', () => {
  const tp = detailTemplate();
  if (!tp) return;
  state.confirmRepeat = keyFor(tp);
  sendTemplate(tp);
});

// ---------------------------------------------------------------------------------------------
// The selected template: preview of each part as the customer sees it, variables, warnings.

/**
 * @param {Template} tp
 * @param {string} [tpJson] `tp` as JSON text, if the caller has it already
 * @returns {{name: string, label: string | null, required: boolean}[]}
 */
function templateVariables(tp, tpJson = JSON.stringify(tp)) {
  if (state.core !== 'ready') return [];
  try {
    return JSON.parse(core.variables(tpJson));
  } catch {
    return [];
  }
}

/** Context for rendering `tp`: what the conversation knows, then what the agent typed. */
/** @param {Template} tp */
function valuesFor(tp) {
  const typed = state.values.get(keyFor(tp)) ?? {};
  /** @type {Record<string, string>} */
  const out = { ...contextValues() };
  for (const [k, v] of Object.entries(typed)) if (v !== '') out[k] = v;
  return renderContext(out);
}

/**
 * What the customer will see of every part, from the core (`preview`: the rendition sent, its
 * display with every text filled as on the wire, the refusal if any); [] while it loads.
 * @param {Template} tp
 * @param {string} tpJson `tp` as JSON text
 * @param {string} tgJson the target as JSON text
 * @param {Record<string, string>} ctx
 * @returns {import('./lib/draw.js').PartPreview[]}
 */
function previewParts(tp, tpJson, tgJson, ctx) {
  if (state.core !== 'ready') return [];
  try {
    return JSON.parse(core.preview(tgJson, tpJson, JSON.stringify(ctx)));
  } catch (e) {
    const err = /** @type {{code?: string, message?: string}} */ (e);
    const refusal = { code: err?.code ?? 'internal', message: String(err?.message ?? e) };
    return (tp.parts ?? []).map((_, /** @type {number} */ index) => ({ index, wire: null, refusal, rendition: null, kind: null, missing: [], display: null }));
  }
}

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {string} [cls]
 * @param {string} [text]
 * @returns {HTMLElementTagNameMap[K]}
 */
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** @param {Assessment} [assessed] the preview of the active template, if just made */
function renderDetail(assessed = undefined) {
  const tp = state.shown[state.active];
  if (!tp) {
    ui.detail.hidden = true;
    delete ui.detail.dataset.templateId;
    delete ui.detail.dataset.templateKey;
    delete ui.detail.dataset.library;
    return;
  }
  ui.detail.hidden = false;
  ui.detail.dataset.templateId = tp.id;
  ui.detail.dataset.templateKey = keyFor(tp);
  ui.detail.dataset.library = metaFor(tp).library;
  renderTeam(tp);
  renderVariables(tp);
  updateDetail(tp, assessed);
}

/**
 * The selected template's library and team state, in words: which library, who changed it
 * last and when, and what is not synced (a draft with the hub's reason).
 * @param {Template} tp
 */
function renderTeam(tp) {
  const meta = metaFor(tp);
  if (!state.team) {
    ui.team.hidden = true;
    return;
  }
  ui.team.hidden = false;
  ui.team.dataset.library = meta.library;
  ui.team.dataset.sync = meta.sync ?? '';
  const parts = [libraryName(meta.library)];
  if (meta.author) {
    const when = meta.changed_at ? new Intl.DateTimeFormat(t('palette_lang', 'en'), { dateStyle: 'short', timeStyle: 'short' }).format(new Date(meta.changed_at)) : '';
    parts.push(when ? t('palette_changed_by_at', 'changed by $1, $2', meta.author, when) : t('palette_changed_by', 'changed by $1', meta.author));
  }
  const sync = syncLabel(meta);
  if (sync) parts.push(sync.title);
  ui.team.textContent = parts.join(' · ');
}

/** @param {Template} tp */
function renderVariables(tp) {
  const vars = templateVariables(tp);
  const known = contextValues();
  const ask = vars.filter((v) => !known[v.name]);
  ui.varsFields.replaceChildren();
  const key = keyFor(tp);
  const typed = state.values.get(key) ?? {};
  for (const v of ask) {
    const id = `quiver-var-${v.name.replace(/[^\w-]/g, '_')}`;
    const row = el('div', 'var-row');
    const label = el('label', 'var-label', v.label || v.name);
    label.htmlFor = id;
    const input = document.createElement('input');
    input.id = id;
    input.className = 'var-input';
    input.dataset.testid = 'quiver-var';
    input.dataset.name = v.name;
    input.autocomplete = 'off';
    input.value = typed[v.name] ?? '';
    if (v.required) {
      input.required = true;
      input.setAttribute('aria-required', 'true');
      label.append(el('span', 'var-required', ' *'));
    }
    input.addEventListener('input', () => {
      const cur = state.values.get(key) ?? {};
      cur[v.name] = input.value;
      state.values.set(key, cur);
      updateDetail(tp);
    });
    row.append(label, input);
    ui.varsFields.append(row);
  }
  ui.vars.hidden = ask.length === 0;
}

/**
 * What will happen to each part of a template, and why it cannot be sent now (none when it can).
 * @typedef {{key: string, previews: import('./lib/draw.js').PartPreview[], reasons: {code: string, part?: number, message: string}[]}} Assessment
 */
/**
 * The last assessment made and what it was made from, while its template does not read the clock
 * (the core's `reads_clock`): the core has no other input, so the same template, target and
 * values assess the same, and a click on the template the detail shows sends that very preview
 * without making it again (0.3-0.4 ms on the click's path; docs/benchmarks.md, issue 9).
 * @type {{inputs: string, assessed: Assessment} | null}
 */
let lastAssessment = null;

/**
 * @param {Template} tp
 * @returns {Assessment}
 */
function assess(tp) {
  const ctx = valuesFor(tp);
  // a fresh nonce where the platform wants one: never the same inputs twice
  const tgJson = JSON.stringify(target());
  const { now: _now, tz: _tz, ...values } = ctx;
  const tpJson = JSON.stringify(tp);
  const inputs = JSON.stringify([state.core, keyFor(tp), tgJson, values, tpJson]);
  if (lastAssessment?.inputs === inputs) return lastAssessment.assessed;
  const assessed = assessNow(tp, tpJson, tgJson, ctx);
  lastAssessment = state.core === 'ready' && !readsClock(tpJson) ? { inputs, assessed } : null;
  return assessed;
}

/** Whether rendering the template (JSON text) reads the clock; true when the core cannot tell. */
function readsClock(/** @type {string} */ tpJson) {
  try {
    return core.reads_clock(tpJson);
  } catch {
    return true;
  }
}

/**
 * @param {Template} tp
 * @param {string} tpJson `tp` as JSON text
 * @param {string} tgJson the target as JSON text
 * @param {Record<string, string>} ctx
 * @returns {Assessment}
 */
function assessNow(tp, tpJson, tgJson, ctx) {
  const previews = previewParts(tp, tpJson, tgJson, ctx);
  const reasons = [];
  const missing = new Set(templateVariables(tp, tpJson).filter((v) => v.required && !ctx[v.name]).map((v) => v.name));
  for (const p of previews) for (const name of p.missing ?? []) missing.add(name);
  if (missing.size) reasons.push({ code: 'missing_variable', message: t('palette_missing_vars', 'Fill in: $1', [...missing].join(', ')) });
  for (const p of previews) {
    if (p.refusal && p.refusal.code !== 'missing_variable') {
      reasons.push({ code: p.refusal.code, part: p.index, message: p.refusal.message });
    }
  }
  if (state.core !== 'ready') reasons.push({ code: 'core_unavailable', message: t('palette_core_loading', 'The template engine is loading') });
  return { key: keyFor(tp), previews, reasons };
}

/**
 * @param {Template} tp
 * @param {Assessment} [assessed] its preview, if just made (a send draws what it sent)
 */
function updateDetail(tp, assessed = undefined) {
  const { previews, reasons } = assessed?.key === keyFor(tp) ? assessed : assess(tp);
  ui.parts.replaceChildren();
  (tp.parts ?? []).forEach((part, i) => {
    const p = previews[i];
    const li = el('li', 'part');
    li.dataset.testid = 'quiver-part';
    li.dataset.partIndex = String(i);
    let partState = 'ok';
    if (p?.refusal && p.refusal.code !== 'missing_variable') partState = 'disabled';
    else if (p && (p.rendition ?? 0) > 0) partState = 'fallback';
    li.dataset.state = partState;
    if ((tp.parts?.length ?? 0) > 1) li.append(el('div', 'part-label', t('palette_part_n', 'Part $1 of $2', i + 1, tp.parts.length)));
    if (p?.display) li.append(drawDisplay(p.display));
    if (partState === 'disabled' && p?.refusal) {
      li.setAttribute('aria-disabled', 'true');
      const why = el('div', 'part-reason', p.refusal.message);
      why.dataset.testid = 'quiver-part-reason';
      why.dataset.code = p.refusal.code;
      li.append(why);
    } else if (partState === 'fallback') {
      const why = el('div', 'part-fallback', t('palette_fallback_used', 'This conversation cannot show a $1; sent as its fallback ($2).', part.type, p?.kind ?? ''));
      why.dataset.testid = 'quiver-part-fallback';
      li.append(why);
    }
    ui.parts.append(li);
  });
  const blocked = reasons.length > 0;
  // A refusal shown for this template is stale once it can be sent (e.g. the form was filled).
  if (!blocked && ui.refusal.dataset.templateKey === keyFor(tp)) clearRefusal();
  ui.sendButton.disabled = blocked;
  ui.sendButton.setAttribute('aria-disabled', String(blocked));
  ui.blocked.hidden = !blocked;
  ui.blocked.textContent = reasons.map((r) => r.message).join(' · ');
  ui.blocked.dataset.code = reasons[0]?.code ?? '';
  renderRecent(tp);
}

// ---------------------------------------------------------------------------------------------
// Recent sends to this conversation (daemon history.list, filtered there by conversation)

let historySeq = 0;
async function refreshHistory() {
  const { conversation: cid, customer: uid } = conversation();
  const key = `${cid ?? ''}\u0000${uid ?? ''}`;
  if (!cid && !uid) {
    state.history = [];
    state.historyFor = key;
    const tp = detailTemplate();
    if (tp) renderRecent(tp);
    return;
  }
  if (state.daemon.state !== 'up') return;
  const seq = ++historySeq;
  try {
    /** @type {{limit: number, conversation?: string, customer?: string}} */
    const params = { limit: 50 };
    if (cid) params.conversation = cid;
    else params.customer = uid;
    const r = await call('history', params);
    if (seq !== historySeq) return;
    state.history = r?.rows ?? [];
    state.historyFor = key;
  } catch {
    return; // no warning is better than a wrong one; sends still go
  }
  const tp = detailTemplate();
  if (tp) renderRecent(tp);
}

/** @param {Template} tp */
function recentSendOf(tp) {
  const { conversation: cid, customer: uid } = conversation();
  if (!cid && !uid) return undefined; // nothing says who the customer is (Udesk): no warning
  const now = Date.now();
  const library = metaFor(tp).library;
  return state.history.find((r) => r.template_id === tp.id && (r.library || LOCAL) === library
    && (cid ? r.conversation === cid : r.customer === uid)
    && ['sent', 'queued', 'sending'].includes(r.state)
    && now - (r.sent_at ?? r.queued_at ?? 0) < RECENT_MS);
}

/** @param {Template} tp */
function renderRecent(tp) {
  const row = recentSendOf(tp);
  if (!row) {
    ui.recent.hidden = true;
    return;
  }
  const when = row.sent_at ?? row.queued_at ?? 0;
  const mins = Math.max(0, Math.round((Date.now() - when) / 60_000));
  ui.recent.hidden = false;
  ui.recent.dataset.templateId = tp.id;
  ui.recent.dataset.templateKey = keyFor(tp);
  ui.recentText.textContent = mins < 1
    ? t('palette_recent_now', 'Already sent to this customer just now.')
    : t('palette_recent_ago', 'Already sent to this customer $1 min ago.', mins);
  ui.recentConfirm.hidden = state.confirmRepeat === keyFor(tp);
}

// ---------------------------------------------------------------------------------------------
// Sending

/**
 * @param {Template} tp
 * @param {number | undefined} partIndex
 * @param {{code?: string, message?: string}} e
 */
function showRefusal(tp, partIndex, e) {
  const code = e?.code ?? 'internal';
  ui.refusal.dataset.code = code;
  ui.refusal.dataset.templateId = tp.id;
  ui.refusal.dataset.templateKey = keyFor(tp);
  const where = (tp.parts?.length ?? 0) > 1 && partIndex !== undefined ? ` (${t('palette_part_n', 'Part $1 of $2', partIndex + 1, tp.parts.length)})` : '';
  ui.refusal.replaceChildren();
  const strong = document.createElement('strong');
  strong.textContent = `${t('palette_not_sent', 'Not sent: “$1”', tp.title)}${where}`;
  const codeEl = document.createElement('code');
  codeEl.textContent = code;
  ui.refusal.append(strong, ' ', codeEl, ` ${e?.message ?? e}`);
  ui.refusal.hidden = false;
}

function clearRefusal() {
  ui.refusal.hidden = true;
  ui.refusal.replaceChildren();
  delete ui.refusal.dataset.code;
  delete ui.refusal.dataset.templateId;
  delete ui.refusal.dataset.templateKey;
}

/**
 * Sends every part of `tp` (or shows why not). The wires sent are those of one preview, which the
 * detail then draws: what the agent sees is what went. The sends leave before any drawing.
 * @param {Template} tp
 * @param {number} [row] the list row clicked: selected once the sends are on their way
 */
function sendTemplate(tp, row = undefined) {
  flushDraw();
  /** Selects the clicked row, or shows `tp` in the detail, drawing `assessed`. */
  const show = (/** @type {Assessment | undefined} */ assessed) => {
    if (row !== undefined) setActive(row, false, assessed);
    else if (ui.detail.dataset.templateKey !== keyFor(tp)) renderDetail(assessed);
  };
  if (state.core !== 'ready') {
    show(undefined);
    showNotice(new RpcError('core_unavailable', 'the template engine is not loaded'), t('palette_cannot_send', 'Cannot send'));
    return;
  }
  // The conversation is fixed here: the payload carries its cid/uid, the reserve names it.
  const conv = conversation();
  const assessed = assess(tp);
  const { previews, reasons } = assessed;
  // A refused part (or a missing variable) means nothing of the template is sent.
  const missing = reasons.find((r) => r.code === 'missing_variable');
  if (missing) {
    show(assessed);
    showRefusal(tp, undefined, missing);
    ui.varsFields.querySelector('input:invalid, input[aria-required="true"]')?.focus();
    return;
  }
  const bad = previews.findIndex((r) => !r.wire);
  if (bad >= 0) {
    show(assessed);
    showRefusal(tp, bad, previews[bad].refusal ?? { code: 'internal', message: 'nothing to send' });
    return;
  }
  if (!previews.length) {
    show(assessed);
    showRefusal(tp, 0, new RpcError('invalid_template', 'the template has no parts'));
    return;
  }
  const tpKey = keyFor(tp);
  const { library } = metaFor(tp);
  if (recentSendOf(tp) && state.confirmRepeat !== tpKey) {
    show(assessed);
    renderRecent(tp);
    ui.recentConfirm.focus();
    return;
  }
  state.confirmRepeat = null;
  const batch = crypto.randomUUID();
  const keys = previews.map(({ wire }, i) => {
    const p = /** @type {import('./lib/draw.js').WirePayload} */ (wire);
    const key = crypto.randomUUID();
    call('send', {
      key,
      batch,
      template_id: tp.id,
      library,
      revision: tp.revision ?? 1,
      part_index: i,
      payload: p.wire,
      post_as: p.post_as,
      platform: p.platform,
      conversation: conv.conversation,
      customer: conv.customer,
    }).catch((e) => onSendState({ key, send_id: null, state: 'failed', error: { code: e.code, message: e.message } }));
    return key;
  });
  // What the agent sees is drawn once the sends are answered (or FEEDBACK_DRAW_MS from now).
  drawSoon(keys, () => {
    show(assessed);
    clearRefusal();
    keys.forEach((key, i) => addSend(key, tp, i, conv));
  });
  // Counted as recent from now on (the daemon's history follows).
  if (conv.conversation || conv.customer) {
    state.history.unshift({
      template_id: tp.id, library, state: 'queued', queued_at: Date.now(), conversation: conv.conversation, customer: conv.customer,
    });
  }
}

/** @type {Record<string, () => string>} */
const STATE_LABEL = {
  queued: () => t('palette_state_queued', 'Queued'),
  sending: () => t('palette_state_sending', 'Sending…'),
  sent: () => t('palette_state_sent', 'Sent'),
  failed: () => t('palette_state_failed', 'Failed'),
  cancelled: () => t('palette_state_cancelled', 'Cancelled'),
};

/**
 * @param {string} key
 * @param {Template} tp
 * @param {number} partIndex
 * @param {{conversation?: string | null, customer?: string | null}} [conv]
 */
function addSend(key, tp, partIndex, conv = {}) {
  const li = document.createElement('li');
  li.className = 'send';
  li.dataset.testid = 'quiver-send';
  li.dataset.key = key;
  li.dataset.sendId = '';
  li.dataset.sendState = 'queued';
  li.dataset.templateId = tp.id;
  li.dataset.library = metaFor(tp).library;
  li.dataset.partIndex = String(partIndex);
  if (conv.conversation) li.dataset.conversation = conv.conversation;

  const title = document.createElement('span');
  title.className = 'send-title';
  const parts = tp.parts?.length ?? 1;
  title.textContent = parts > 1 ? `${tp.title} · ${partIndex + 1}/${parts}` : tp.title;
  if (conv.conversation) title.title = t('palette_context_conversation', 'Chat $1', conv.conversation);

  const st = document.createElement('span');
  st.className = 'send-state';
  st.dataset.testid = 'quiver-send-state';

  const countdown = document.createElement('span');
  countdown.className = 'send-countdown';
  countdown.dataset.testid = 'quiver-send-countdown';
  countdown.setAttribute('aria-hidden', 'true'); // a number changing 10 times a second is not read out

  const cancel = document.createElement('button');
  cancel.type = 'button';
  cancel.className = 'send-cancel';
  cancel.dataset.testid = 'quiver-send-cancel';
  cancel.textContent = t('palette_cancel', 'Cancel');
  cancel.setAttribute('aria-label', t('palette_cancel_label', 'Cancel sending $1', title.textContent));
  cancel.addEventListener('click', () => {
    cancel.disabled = true;
    call('cancel', { key }).catch((e) => showNotice(e, t('palette_cancel_failed', 'Could not cancel')));
  });

  const err = document.createElement('div');
  err.className = 'send-error';
  err.dataset.testid = 'quiver-send-error';
  err.hidden = true;

  li.append(title, st, countdown, cancel, err);
  ui.sends.prepend(li);
  state.sends.set(key, { el: li, state: 'queued', dueAt: null, dueWall: null });
  while (ui.sends.children.length > MAX_SENDS_SHOWN) {
    const last = ui.sends.lastElementChild;
    state.sends.delete(last.dataset.key);
    last.remove();
  }
  ui.sendsSection.hidden = false;
  renderSend(/** @type {SendView} */ (state.sends.get(key)));
  tick();
}

/**
 * @param {string[]} keys
 * @param {() => void} draw
 */
function drawSoon(keys, draw) {
  flushDraw();
  pendingDraw = { keys: new Set(keys), draw, timer: setTimeout(flushDraw, FEEDBACK_DRAW_MS), held: [] };
}

/** Draws the pending feedback now, then the states that came before it. */
function flushDraw() {
  const p = pendingDraw;
  if (!p) return;
  pendingDraw = null;
  clearTimeout(p.timer);
  p.draw();
  for (const msg of p.held) updateSend(msg);
}

/** @param {any} msg a `send-state` message (or a failed `send` call) */
function onSendState(msg) {
  if (pendingDraw?.keys.has(msg.key)) {
    if (msg.state === 'sending') {
      pendingDraw.held.push(msg); // on its way: the row is drawn with the answer
      return;
    }
    flushDraw();
  }
  updateSend(msg);
}

/** @param {any} msg a `send-state` message */
function updateSend(msg) {
  let s = state.sends.get(msg.key);
  if (!s) {
    // A send still queued from before this panel was (re)loaded.
    if (typeof msg.template_id !== 'string' || !Number.isInteger(msg.part_index)) return;
    const known = state.byKey.get(templateKey(typeof msg.library === 'string' ? msg.library : LOCAL, msg.template_id));
    addSend(msg.key, known ?? { id: msg.template_id, title: msg.template_id, parts: [] }, msg.part_index);
    s = state.sends.get(msg.key);
    if (!s) return;
  }
  if (s.state !== 'queued' && s.state !== 'sending' && msg.state !== s.state) {
    return; // final states are final
  }
  const wasFinal = s.state === 'sent';
  s.state = msg.state;
  if (msg.send_id !== null && msg.send_id !== undefined) s.el.dataset.sendId = String(msg.send_id);
  const queued = msg.state === 'queued';
  s.dueWall = queued && typeof msg.not_before_ms === 'number' ? msg.not_before_ms : null;
  s.dueAt = queued && typeof msg.delay_ms === 'number' ? performance.now() + msg.delay_ms : null;
  s.error = msg.error ?? null;
  renderSend(s);
  tick();
  if (msg.state === 'sent' && !wasFinal) refreshHistory();
}

/** @param {SendView} s */
function renderSend(s) {
  const { el: li } = s;
  li.dataset.sendState = s.state;
  /** @type {HTMLElement} */ (li.querySelector('.send-state')).textContent = STATE_LABEL[s.state]?.() ?? s.state;
  const cancel = /** @type {HTMLElement} */ (li.querySelector('.send-cancel'));
  cancel.hidden = s.state !== 'queued';
  const err = /** @type {HTMLElement} */ (li.querySelector('.send-error'));
  if (s.error && (s.state === 'failed' || s.state === 'cancelled')) {
    err.dataset.code = s.error.code ?? '';
    err.textContent = `${s.error.code ?? 'error'}: ${s.error.message ?? ''}`;
    err.hidden = false;
  } else {
    err.hidden = true;
  }
  renderCountdown(s);
}

/** @param {SendView} s */
function remainingMs(s) {
  // The daemon's meter gives the slot as a wall-clock time (not_before_ms); else delay_ms.
  if (s.dueWall !== null) return Math.max(0, s.dueWall - Date.now());
  if (s.dueAt !== null) return Math.max(0, s.dueAt - performance.now());
  return null;
}

/** @param {SendView} s */
function renderCountdown(s) {
  const cd = /** @type {HTMLElement} */ (s.el.querySelector('.send-countdown'));
  if (s.state !== 'queued') {
    cd.textContent = '';
    delete cd.dataset.remainingMs;
    return;
  }
  const ms = remainingMs(s);
  if (ms === null) {
    cd.textContent = state.daemon.state === 'up' ? t('palette_reserving', 'reserving…') : t('palette_waiting_daemon', 'waiting for daemon');
    delete cd.dataset.remainingMs;
    return;
  }
  cd.dataset.remainingMs = String(Math.round(ms));
  cd.textContent = ms > 0 ? t('palette_in_seconds', 'in $1 s', (ms / 1000).toFixed(1)) : t('palette_due', 'due');
}

/** @type {ReturnType<typeof setInterval> | null} */
let ticker = null;
function tick() {
  let queued = false;
  for (const s of state.sends.values()) {
    if (s.state === 'queued') {
      queued = true;
      renderCountdown(s);
    }
  }
  if (queued && ticker === null) ticker = setInterval(tick, 100);
  if (!queued && ticker !== null) {
    clearInterval(ticker);
    ticker = null;
  }
}

// ---------------------------------------------------------------------------------------------
// Notices

/**
 * @param {any} e an error (with its code)
 * @param {string} [prefix]
 */
function showNotice(e, prefix = '') {
  ui.notice.textContent = '';
  const code = e?.code;
  if (code) ui.notice.dataset.code = code;
  else delete ui.notice.dataset.code;
  ui.notice.textContent = `${prefix ? `${prefix}: ` : ''}${code ? `${code}: ` : ''}${e?.message ?? e}`;
  ui.notice.hidden = false;
}

function hideNotice() {
  if (state.core === 'error') return; // a broken core stays visible
  ui.notice.hidden = true;
  ui.notice.textContent = '';
  delete ui.notice.dataset.code;
}

// Development hooks: the benchmark's (tests/e2e/bench/palette.mjs), in the development build
// only (extension/dev/dev-hooks.js; the production dev-hooks.js installs nothing).
installDevHooks({ call, target, maxShown: MAX_SHOWN, state });

// ---------------------------------------------------------------------------------------------
// Start-up

boot.evaluated = performance.now();

async function loadCore() {
  try {
    core = await loadWasmCore();
    state.core = 'ready';
    state.coreReadyAt = performance.now();
    ui.palette.dataset.core = 'ready';
    ui.palette.dataset.coreVersion = core.version();
    updateContext();
    buildIndex();
    renderList();
  } catch (e) {
    state.core = 'error';
    ui.palette.dataset.core = 'error';
    showNotice(new RpcError('core_error', String(/** @type {Error} */ (e)?.message ?? e)), t('palette_core_failed', 'The template engine failed to load'));
  }
}

if (!token) {
  showNotice(new RpcError('bad_panel_url', 'this panel was opened without its frame token'));
} else {
  connect();
}
renderEmpty();
// The stored library is read at once (panel-start.js), in parallel with the core and the
// background's answer.
state.earlyRead = token ? earlyRead : null;
loadCore();
