// @ts-check
/*
 * Quiver conversations page: WeChat mini-program customer service (docs/conversations.md).
 * Everything goes through the daemon's `wx.*` methods (the daemon talks to the team hub; this
 * page never does): the list with unread counts, each customer's quota and window and the
 * assignee; the thread, each message drawn by lib/draw.js from the display the daemon made of
 * what the customer saw (images the hub keeps are fetched with `wx.blob`); the palette (the
 * daemon's template search, the same index and ranking as the palette's), the preview from
 * `wx.preview` (the core's `preview` for wechat-mp: fallbacks and missing variables decided
 * there), the reply with `wx.reply` and each part's send state; typing while the agent writes.
 * The hub's changes arrive as `wx.changed` events.
 */
import { connect, h, showStatus } from './lib/page.js';
import { t, translate } from './lib/i18n.js';
import { drawDisplay } from './lib/draw.js';
import { LOCAL } from './lib/team.js';

/** @typedef {import('./lib/draw.js').Display} Display */
/** @typedef {import('./lib/draw.js').PartPreview} PartPreview */
/**
 * @typedef {{left: number | null, window_ends_ms: number | null,
 *   refusal: null | {errcode: number, learned?: boolean, reason?: string}}} Quota
 * @typedef {{id: string, app: string, openid: string, session_from?: any, session_from_raw?: string | null,
 *   assignee: string | null, state: string, unread: number,
 *   last: null | {id: number, dir: string, preview: string, at_ms: number}, quota: Quota,
 *   last_inbound_id: number}} Conversation
 * @typedef {{id: number, conversation: string, dir: 'in' | 'out', at_ms: number, kind: string,
 *   text?: string, state?: string, error?: string, by?: string, part?: number,
 *   display: Display | null}} Message
 * @typedef {{id: string, title: string, library?: string, shortcut?: string}} Result
 */

/**
 * The element `sel` finds (the page's markup has each one).
 * @param {string} sel
 * @returns {any}
 */
const $ = (sel) => document.querySelector(sel);

/** Messages per `wx.messages` page (the daemon's maximum). */
const PAGE = 500;
/** Typing is said again at most this often while the agent writes (WeChat shows it ~20 s). */
const TYPING_EVERY_MS = 15_000;

/** @type {ReturnType<typeof connect>} */
let rpc;
let up = false;
/** @type {Conversation[]} */
let convs = [];
/** @type {string | null} */
let current = null;
/** @type {Message[]} */
let messages = [];
/** This device's user at the hub (team.status). */
let me = '';
/** @type {Map<string, string | Promise<string | null>>} media id -> blob: URL */
const blobs = new Map();
/** @type {Result[]} */
let results = [];
let active = -1;
/** @type {{id: string, library: string, title: string} | null} */
let chosen = null;
/** @type {Record<string, string>} */
let values = {};
/** The reply's idempotency key: kept until the reply went through, so a retry never sends twice. */
let replyKey = '';
let typingAt = 0;
let typingOn = false;

/** @param {unknown} e */
function message(e) {
  const err = /** @type {{code?: string, message?: string}} */ (e);
  return t('error_code', [err?.code ?? 'error', err?.message ?? String(e)]);
}

/** @param {string | null} text */
function banner(text) {
  const b = $('#banner');
  b.hidden = !text;
  b.textContent = text ?? '';
}

/** `4 left · 47h`, or the refusal. @param {Quota | undefined} q */
function quotaText(q) {
  if (!q) return '';
  if (q.refusal) {
    if (q.refusal.errcode === 45015) return t('conv_quota_closed');
    if (q.refusal.errcode === 45047) return t('conv_quota_used_up');
    return t('conv_quota_refused', String(q.refusal.errcode));
  }
  const parts = [];
  if (typeof q.left === 'number') parts.push(t('conv_quota_left', String(q.left)));
  if (typeof q.window_ends_ms === 'number') {
    const ms = q.window_ends_ms - Date.now();
    if (ms <= 0) parts.push(t('conv_window_closed'));
    else if (ms >= 3_600_000) parts.push(t('conv_window_hours', String(Math.floor(ms / 3_600_000))));
    else parts.push(t('conv_window_minutes', String(Math.ceil(ms / 60_000))));
  }
  return parts.join(' · ');
}

/** @param {HTMLElement} el @param {Quota | undefined} q */
function setQuota(el, q) {
  el.textContent = quotaText(q);
  el.dataset.refused = String(Boolean(q?.refusal));
  el.dataset.left = q && typeof q.left === 'number' ? String(q.left) : '';
}

// ---- the list -----------------------------------------------------------------------------

async function loadList() {
  if (!up) return;
  try {
    const r = await rpc.call('wx.conversations', { scope: $('#scope').value });
    convs = r.conversations ?? [];
    banner(null);
  } catch (e) {
    convs = [];
    banner(message(e));
  }
  drawList();
  if (current) drawHead();
}

function drawList() {
  $('#conv-empty').hidden = convs.length > 0;
  $('#conv-list').replaceChildren(...convs.map((c) => {
    const quota = h('span', { class: 'quota', dataset: { testid: 'quiver-conv-quota' } });
    setQuota(quota, c.quota);
    return h('li', {
      class: 'conv', 'aria-current': String(c.id === current),
      dataset: { testid: 'quiver-conv-item', id: c.id, assignee: c.assignee ?? '' },
      onclick: () => open(c.id),
    },
    h('div', { class: 'row' },
      h('span', { class: 'name', title: c.openid }, customerName(c)),
      h('span', { class: 'unread', dataset: { testid: 'quiver-conv-unread', count: String(c.unread ?? 0) } }, String(c.unread ?? 0))),
    h('div', { class: 'row' },
      h('span', { class: 'muted' }, c.app),
      quota,
      h('span', { class: 'muted', dataset: { testid: 'quiver-conv-item-assignee' } }, c.assignee ?? t('conv_unassigned'))),
    c.last ? h('div', { class: 'last' }, `${c.last.dir === 'in' ? '' : '↩ '}${c.last.preview}`) : null);
  }));
}

/** The customer's nickname from a Sobot-style session-from, else the OpenID. @param {Conversation} c */
function customerName(c) {
  const nick = c.session_from?.nick_name;
  return typeof nick === 'string' && nick ? `${nick} (${c.openid})` : c.openid;
}

// ---- the thread ---------------------------------------------------------------------------

/** @param {string} id */
async function open(id) {
  if (current !== id) {
    await typing(false);
    current = id;
    messages = [];
    resetReply();
  }
  $('#thread-pane').hidden = false;
  drawList();
  drawHead();
  await loadThread(true);
}

function conv() {
  return convs.find((c) => c.id === current) ?? null;
}

function drawHead() {
  const c = conv();
  if (!c) return;
  $('#who').textContent = customerName(c);
  $('#who-app').textContent = c.app;
  setQuota($('#who-quota'), c.quota);
  $('#assignee').textContent = c.assignee ? t('conv_assigned_to', c.assignee) : t('conv_unassigned');
  $('#assignee').dataset.assignee = c.assignee ?? '';
  $('#take').hidden = c.assignee === me && me !== '';
  $('#release').hidden = !c.assignee;
}

let loading = Promise.resolve();
/** A reload asked for and not started yet: whether it is a whole one (`null`: none). */
/** @type {boolean | null} */
let queued = null;
/**
 * Reloads the open thread, then the list (the thread first: the daemon serves one request of
 * the connection at a time). Events of a burst that arrive before the reload starts share it.
 * @param {boolean} whole
 */
function reloadSoon(whole) {
  if (queued !== null) {
    queued ||= whole;
    return;
  }
  queued = whole;
  queueMicrotask(() => {
    const w = Boolean(queued);
    queued = null;
    loadThread(w).then(() => loadList());
  });
}

/**
 * Loads the thread: new messages only, or `whole` (states of earlier ones changed).
 * @param {boolean} whole
 */
function loadThread(whole) {
  loading = loading.then(async () => {
    const id = current;
    if (!id || !up) return;
    const after = whole || !messages.length ? 0 : messages[messages.length - 1].id;
    try {
      /** @type {Message[]} */
      let got = [];
      // pages of 500, oldest first, until one is not full
      for (let from = after; ;) {
        const r = await rpc.call('wx.messages', { id, after: from, limit: PAGE });
        if (id !== current) return;
        /** @type {Message[]} */
        const page = r.messages ?? [];
        got = got.concat(page);
        if (page.length < PAGE) break;
        from = page[page.length - 1].id;
      }
      messages = after === 0 ? got : messages.concat(got.filter((m) => !messages.some((x) => x.id === m.id)));
      await fetchBlobs(messages.map((m) => m.display));
      if (id !== current) return;
      drawThread();
      const lastIn = [...messages].reverse().find((m) => m.dir === 'in');
      const c = conv();
      if (lastIn && c && c.unread > 0) {
        rpc.call('wx.read', { id, up_to: lastIn.id }).then(() => loadList(), () => {});
      }
    } catch (e) {
      banner(message(e));
    }
  });
  return loading;
}

/** Gets the bytes of every `sha256:` media id the displays name. @param {(Display | null | undefined)[]} displays */
async function fetchBlobs(displays) {
  const ids = new Set();
  for (const d of displays) {
    if (!d) continue;
    if ((d.kind === 'image' || d.kind === 'miniprogram') && d.media_id?.startsWith('sha256:')) ids.add(d.media_id);
  }
  await Promise.all([...ids].map((id) => blobUrl(id)));
}

/** @param {string} id @returns {Promise<string | null>} */
function blobUrl(id) {
  const have = blobs.get(id);
  if (have !== undefined) return Promise.resolve(have);
  const p = rpc.call('wx.blob', { sha256: id }).then((r) => {
    const bin = atob(r.data);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const url = URL.createObjectURL(new Blob([bytes], { type: r.mime }));
    blobs.set(id, url);
    return url;
  }, () => {
    blobs.delete(id);
    return null;
  });
  blobs.set(id, p);
  return p;
}

/** The drawer's media hook: a `blob:` URL once the bytes are here. @param {string} id */
function media(id) {
  const v = blobs.get(id);
  return typeof v === 'string' ? v : null;
}

function drawThread() {
  const box = $('#thread');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  box.replaceChildren(...messages.map((m) => {
    const meta = h('span', { class: 'meta' }, new Date(m.at_ms).toLocaleString(),
      m.by ? ` · ${m.by}` : null,
      m.state ? h('span', { class: 'state', dataset: { state: m.state, testid: 'quiver-conv-msg-state' } },
        ` · ${t(`conv_state_${m.state}`, undefined, m.state)}${m.error ? `: ${m.error}` : ''}`) : null);
    const body = m.display
      ? drawDisplay(m.display, { media })
      : h('span', { class: 'note' }, m.kind === 'enter' ? t('conv_entered', m.text ?? '') : `[${m.kind}] ${m.text ?? ''}`);
    return h('div', {
      class: 'msg',
      dataset: { testid: 'quiver-conv-msg', dir: m.dir, id: String(m.id), kind: m.kind, state: m.state ?? '' },
    }, body, meta);
  }));
  if (atBottom || messages.length < 30) box.scrollTop = box.scrollHeight;
  drawStates();
}

/** The reply's parts under the Send button follow their messages' states in the thread. */
function drawStates() {
  for (const li of /** @type {NodeListOf<HTMLElement>} */ ($('#states').querySelectorAll('li[data-message-id]'))) {
    const m = messages.find((x) => String(x.id) === li.dataset.messageId);
    if (!m?.state || m.state === li.dataset.state) continue;
    li.dataset.state = m.state;
    li.textContent = partLine(li.dataset.kind ?? m.kind, m);
  }
}

/** `text: sent`, with WeChat's reason when it failed. @param {string} kind @param {Message} m */
function partLine(kind, m) {
  return `${kind}: ${t(`conv_state_${m.state}`, undefined, m.state ?? '')}${m.error ? ` (${m.error})` : ''}`;
}

// ---- assignment ---------------------------------------------------------------------------

/** @param {string} method @param {object} params */
async function act(method, params) {
  try {
    await rpc.call(method, params);
    banner(null);
  } catch (e) {
    banner(message(e));
  }
  await loadList();
}

// ---- the palette and the reply ------------------------------------------------------------

let searchSeq = 0;
async function search() {
  if (!up) return;
  const mine = ++searchSeq;
  const query = $('#search').value.trim();
  try {
    const r = await rpc.call('templates.search', { query, limit: 20, library: '*' });
    if (mine !== searchSeq) return;
    results = r.results ?? [];
  } catch (e) {
    results = [];
    banner(message(e));
  }
  active = results.length ? 0 : -1;
  drawResults();
}

function drawResults() {
  $('#results').replaceChildren(...results.map((r, i) => h('li', {
    role: 'option', 'aria-selected': String(i === active),
    dataset: { testid: 'quiver-conv-result', templateId: r.id, library: r.library ?? LOCAL },
    onclick: () => choose(r),
  }, r.title, r.shortcut ? h('kbd', {}, ` ${r.shortcut}`) : null)));
}

function resetReply() {
  chosen = null;
  values = {};
  replyKey = '';
  $('#reply').hidden = true;
  $('#states').replaceChildren();
}

/** @param {Result} r */
async function choose(r) {
  chosen = { id: r.id, library: r.library ?? LOCAL, title: r.title };
  values = {};
  replyKey = crypto.randomUUID();
  $('#states').replaceChildren();
  $('#reply').hidden = false;
  $('#reply-title').textContent = r.title;
  $('#reply-lib').textContent = chosen.library === LOCAL ? '' : chosen.library;
  await typing(true);
  await preview();
}

/** The render values: what the agent typed and the agent's zone for dates. */
function renderValues() {
  return { tz: String(-new Date().getTimezoneOffset()), ...values };
}

let previewSeq = 0;
/** @type {PartPreview[]} */
let previewParts = [];
async function preview() {
  if (!chosen || !current) return;
  const mine = ++previewSeq;
  try {
    const r = await rpc.call('wx.preview', { id: current, template: chosen.id, library: chosen.library, values: renderValues() });
    if (mine !== previewSeq) return;
    previewParts = r.parts ?? [];
    await fetchBlobs(previewParts.map((p) => p.display));
    if (mine !== previewSeq) return;
    drawPreview(r.media_errors ?? []);
  } catch (e) {
    previewParts = [];
    $('#preview').replaceChildren(h('p', { class: 'refusal' }, message(e)));
    $('#send').disabled = true;
  }
}

/** @param {string[]} mediaErrors */
function drawPreview(mediaErrors) {
  const missing = [...new Set(previewParts.flatMap((p) => p.missing ?? []))].filter((n) => n !== 'customer.openid');
  const vars = $('#vars');
  const have = new Set([...vars.querySelectorAll('input')].map((i) => /** @type {HTMLInputElement} */ (i).name));
  for (const name of missing) {
    if (have.has(name)) continue;
    const input = h('input', { name, value: values[name] ?? '', dataset: { testid: 'quiver-conv-var', name }, autocomplete: 'off' });
    input.addEventListener('input', () => {
      values[name] = input.value;
      typing(true);
      clearTimeout(varTimer);
      varTimer = setTimeout(preview, 150);
    });
    vars.append(h('label', {}, name, input));
  }
  $('#preview').replaceChildren(...previewParts.map((p) => h('div', {
    class: 'part', dataset: { testid: 'quiver-conv-preview-part', index: String(p.index), kind: p.kind ?? '' },
  }, p.display ? drawDisplay(p.display, { media }) : null,
  p.refusal ? h('p', { class: 'refusal' }, `${p.refusal.code}: ${p.refusal.message}`) : null)),
  ...mediaErrors.map((e) => h('p', { class: 'refusal' }, e)));
  $('#send').disabled = !previewParts.length || previewParts.some((p) => p.refusal);
}
/** @type {ReturnType<typeof setTimeout> | undefined} */
let varTimer;

async function send() {
  if (!chosen || !current) return;
  const id = current;
  $('#send').disabled = true;
  const states = $('#states');
  states.replaceChildren(...previewParts.map((p) => h('li', { dataset: { state: 'sending', testid: 'quiver-conv-part-state' } },
    `${p.kind ?? ''}: ${t('conv_state_sending')}`)));
  try {
    const seen = [...messages].reverse().find((m) => m.dir === 'in');
    /** @type {Record<string, unknown>} */
    const params = { id, template: chosen.id, library: chosen.library, values: renderValues(), idempotency_key: replyKey };
    if (seen) params.seen_inbound_id = seen.id;
    const r = await rpc.call('wx.reply', params);
    /** @type {Message[]} */
    const sent = r.messages ?? [];
    states.replaceChildren(...sent.map((m, i) => {
      const kind = r.parts?.[i]?.kind ?? m.kind;
      return h('li', {
        dataset: { state: m.state ?? '', testid: 'quiver-conv-part-state', messageId: String(m.id), kind },
      }, partLine(kind, m));
    }));
    if (!sent.some((m) => m.state === 'failed' || m.state === 'unknown')) replyKey = crypto.randomUUID();
    banner(null);
  } catch (e) {
    // the same key stays: sending again cannot send twice
    states.replaceChildren(h('li', { dataset: { state: 'failed', testid: 'quiver-conv-part-state' } }, message(e)));
    $('#send').disabled = false;
  }
  await typing(false);
  await Promise.all([loadThread(true), loadList()]);
  if (id === current) $('#send').disabled = false;
}

/** Typing on while the agent writes (said again every 15 s), off when they leave or send. @param {boolean} on */
async function typing(on) {
  const id = current;
  if (!id || !up) return;
  const now = Date.now();
  if (on && typingOn && now - typingAt < TYPING_EVERY_MS) return;
  if (!on && !typingOn) return;
  typingOn = on;
  typingAt = now;
  try {
    await rpc.call('wx.typing', { id, on });
  } catch {
    // typing is a courtesy: WeChat refuses it outside its window, nothing to show
  }
}

// ---- wiring -------------------------------------------------------------------------------

/** @param {import('./lib/page.js').Status} status */
async function onStatus(status) {
  showStatus($('[data-testid="quiver-conv-status"]'), status);
  const wasUp = up;
  up = status.state === 'up';
  if (up && !wasUp) {
    try {
      const st = await rpc.call('team.status', {});
      me = st.hubs?.[0]?.user_name ?? '';
    } catch {
      me = '';
    }
    await loadList();
    if (current) await loadThread(true);
    search();
  }
}

/** @param {string} name @param {any} data */
function onEvent(name, data) {
  if (name === 'wx.changed') {
    if (current && data?.conversation === current) reloadSoon(data?.kind !== 'message');
    else loadList();
  } else if (name === 'events.lost') {
    if (current) reloadSoon(true);
    else loadList();
  } else if (name === 'library.changed') {
    search();
  }
}

function start() {
  translate();
  rpc = connect({ onStatus, onEvent });
  $('#scope').addEventListener('change', () => loadList());
  $('#take').addEventListener('click', () => current && act('wx.take', { id: current, force: Boolean(conv()?.assignee) }));
  $('#handover').addEventListener('click', () => {
    const to = $('#handover-to').value.trim();
    if (current && to) act('wx.assign', { id: current, to });
  });
  $('#release').addEventListener('click', () => current && act('wx.assign', { id: current, to: null }));
  $('#transfer').addEventListener('click', () => current && act('wx.transfer', { id: current }));
  $('#send').addEventListener('click', () => send());
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  $('#search').addEventListener('input', () => {
    typing(true);
    clearTimeout(timer);
    timer = setTimeout(search, 80);
  });
  $('#search').addEventListener('keydown', (/** @type {KeyboardEvent} */ e) => {
    if (e.key === 'ArrowDown' && results.length) { e.preventDefault(); active = (active + 1) % results.length; drawResults(); }
    else if (e.key === 'ArrowUp' && results.length) { e.preventDefault(); active = (active - 1 + results.length) % results.length; drawResults(); }
    else if (e.key === 'Enter' && active >= 0) { e.preventDefault(); choose(results[active]); }
  });
  $('#composer').addEventListener('focusout', (/** @type {FocusEvent} */ e) => {
    if (!(e.relatedTarget instanceof Node && $('#composer').contains(e.relatedTarget))) typing(false);
  });
  const q = new URLSearchParams(location.hash.slice(1));
  const want = q.get('c');
  if (want) current = want;
  if (current) $('#thread-pane').hidden = false;
}

start();
