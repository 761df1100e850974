/*
 * Quiver panel: the template palette, an extension page shown in an iframe inside the assistant
 * frame. It renders parts to their wire payload with the wasm core (`wasm_bindgen`, loaded by
 * pkg/quiver_core.js) and asks the background to send them; the background owns the send queue.
 *
 * URL: panel.html#<token>&platform=<platform> (set by the content script that injected it).
 * Port to the background: "quiver-panel:<token>" (protocol in background.js).
 */
'use strict';

const api = globalThis.browser ?? globalThis.chrome;

const WASM_PATH = 'pkg/quiver_core_bg.wasm';
const REQUEST_TIMEOUT_MS = 30_000;
const MAX_SENDS_SHOWN = 50;
const PREVIEW_CHARS = 120;

const $ = (sel) => document.querySelector(sel);
const ui = {
  palette: $('[data-testid="quiver-palette"]'),
  status: $('[data-testid="quiver-daemon-status"]'),
  statusLabel: $('[data-testid="quiver-daemon-status"] .status-label'),
  search: $('[data-testid="quiver-search"]'),
  notice: $('[data-testid="quiver-notice"]'),
  refusal: $('[data-testid="quiver-refusal"]'),
  list: $('[data-testid="quiver-templates"]'),
  empty: $('[data-testid="quiver-empty"]'),
  sendsSection: $('.sends-section'),
  sends: $('[data-testid="quiver-sends"]'),
};

function parseHash(hash) {
  const [token = '', ...rest] = hash.replace(/^#/, '').split('&');
  const params = new URLSearchParams(rest.join('&'));
  return { token, platform: params.get('platform') ?? '' };
}

const { token, platform } = parseHash(location.hash);

const state = {
  core: 'loading',
  daemon: { state: 'down', host: 'disconnected', reason: 'not connected yet', daemon: null },
  templates: [],
  templatesLoaded: false,
  loadingTemplates: false,
  shown: [], // the templates matching the search, in display order
  active: -1, // index into `shown`
  sends: new Map(), // key -> {el, state, dueAt}
};

// ---------------------------------------------------------------------------------------------
// Background port

let port = null;
let nextReq = 1;
const pending = new Map(); // req -> {resolve, reject, timer}
let retry = 100;

class PanelError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function connect() {
  if (port) return;
  if (!api.runtime?.id) return; // the extension is gone
  const p = api.runtime.connect({ name: `quiver-panel:${token}` });
  port = p;
  p.onMessage.addListener((msg) => {
    retry = 100;
    onMessage(msg);
  });
  p.onDisconnect.addListener(() => {
    if (port !== p) return;
    port = null;
    for (const [req, w] of pending) {
      clearTimeout(w.timer);
      w.reject(new PanelError('background_restarted', 'the extension background restarted; try again'));
      pending.delete(req);
    }
    setStatus({ state: 'down', host: 'disconnected', reason: 'reconnecting to the extension', daemon: null });
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 5_000);
  });
  call('status').then(setStatus, (e) => showNotice(e));
}

function call(type, fields = {}) {
  if (!port) return Promise.reject(new PanelError('background_unavailable', 'not connected to the extension'));
  const req = nextReq++;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      pending.delete(req);
      reject(new PanelError('timeout', `${type}: no answer within ${REQUEST_TIMEOUT_MS / 1000} s`));
    }, REQUEST_TIMEOUT_MS);
    pending.set(req, { resolve, reject, timer });
    try {
      port.postMessage({ ...fields, type, req });
    } catch (e) {
      pending.delete(req);
      clearTimeout(timer);
      reject(new PanelError('background_unavailable', String(e?.message ?? e)));
    }
  });
}

function onMessage(msg) {
  switch (msg?.type) {
    case 'reply': {
      const w = pending.get(msg.req);
      if (!w) return;
      pending.delete(msg.req);
      clearTimeout(w.timer);
      if (msg.error) w.reject(new PanelError(msg.error.code, msg.error.message));
      else w.resolve(msg.result);
      break;
    }
    case 'status':
      setStatus(msg.status);
      break;
    case 'send-state':
      updateSend(msg);
      break;
    default:
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// Daemon status

function statusLabel(s) {
  if (s.state === 'up') return s.daemon ? `Connected · daemon ${s.daemon}` : 'Connected';
  if (s.host === 'connecting') return 'Starting Quiver…';
  if (s.host === 'connected') return 'Quiver daemon is down';
  return 'Quiver app not reachable';
}

function setStatus(s) {
  if (!s || typeof s !== 'object') return;
  const wasUp = state.daemon.state === 'up';
  state.daemon = s;
  ui.status.dataset.state = s.state === 'up' ? 'up' : 'down';
  ui.statusLabel.textContent = statusLabel(s);
  ui.status.title = s.state === 'up' ? '' : (s.reason ?? '');
  if (s.state === 'up' && (!wasUp || !state.templatesLoaded)) loadTemplates();
  renderEmpty();
}

// ---------------------------------------------------------------------------------------------
// Templates and search

function partText(part) {
  if (!part || typeof part !== 'object') return '';
  const out = [];
  for (const v of Object.values(part)) {
    if (typeof v === 'string') out.push(v);
    else if (v && typeof v === 'object') out.push(partText(v));
  }
  return out.join(' ');
}

function preview(t) {
  const first = t.parts?.[0];
  const text = (first?.text ?? first?.html ?? first?.name ?? first?.title ?? partText(first)).replace(/\s+/g, ' ');
  return text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS - 1)}…` : text;
}

async function loadTemplates() {
  if (state.loadingTemplates) return;
  state.loadingTemplates = true;
  try {
    const r = await call('templates');
    state.templates = (r?.templates ?? []).map((t) => ({
      t,
      haystack: [t.title, t.shortcut ?? '', (t.tags ?? []).join(' '), t.folder ?? '', ...(t.parts ?? []).map(partText)]
        .join('\n')
        .toLowerCase(),
    }));
    state.templatesLoaded = true;
    hideNotice();
    renderList();
  } catch (e) {
    showNotice(e, 'Could not load templates');
  } finally {
    state.loadingTemplates = false;
  }
}

/** Re-renders the list. A new search selects the first match; a refresh keeps the selection. */
function renderList({ keepSelection = true } = {}) {
  const q = ui.search.value.trim().toLowerCase();
  const activeId = keepSelection ? state.shown[state.active]?.id : undefined;
  state.shown = state.templates.filter((x) => !q || x.haystack.includes(q)).map((x) => x.t);
  const frag = document.createDocumentFragment();
  state.shown.forEach((t, i) => {
    const li = document.createElement('li');
    li.id = `quiver-option-${i}`;
    li.className = 'template';
    li.setAttribute('role', 'option');
    li.setAttribute('aria-selected', 'false');
    li.dataset.testid = 'quiver-template';
    li.dataset.templateId = t.id;
    li.dataset.index = String(i);

    const head = document.createElement('div');
    head.className = 'template-head';
    const title = document.createElement('span');
    title.className = 'template-title';
    title.textContent = t.title;
    head.append(title);
    if (t.shortcut) {
      const sc = document.createElement('kbd');
      sc.className = 'shortcut';
      sc.textContent = t.shortcut;
      head.append(sc);
    }
    if ((t.parts?.length ?? 0) > 1) {
      const n = document.createElement('span');
      n.className = 'parts-count';
      n.textContent = `${t.parts.length} parts`;
      head.append(n);
    }
    const body = document.createElement('div');
    body.className = 'template-preview';
    body.textContent = preview(t);
    li.append(head, body);
    frag.append(li);
  });
  ui.list.replaceChildren(frag);
  const keep = state.shown.findIndex((t) => t.id === activeId);
  setActive(keep >= 0 ? keep : state.shown.length ? 0 : -1, false);
  renderEmpty();
}

function renderEmpty() {
  let text = '';
  if (!state.templatesLoaded) {
    text = state.daemon.state === 'up' ? 'Loading templates…' : 'Templates appear when the Quiver daemon is running.';
  } else if (!state.templates.length) {
    text = 'No templates yet. Import a library with the quiver command.';
  } else if (!state.shown.length) {
    text = 'No template matches the search.';
  }
  ui.empty.textContent = text;
  ui.empty.hidden = !text;
}

function setActive(i, scroll = true) {
  const prev = ui.list.querySelector('[aria-selected="true"]');
  if (prev) prev.setAttribute('aria-selected', 'false');
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
}

function onKey(e) {
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
    const t = state.shown[state.active];
    if (t) sendTemplate(t);
  } else if (e.key === 'Escape' && e.currentTarget === ui.search && ui.search.value) {
    e.preventDefault();
    ui.search.value = '';
    renderList({ keepSelection: false });
  }
}

ui.search.addEventListener('input', () => renderList({ keepSelection: false }));
ui.search.addEventListener('keydown', onKey);
ui.list.addEventListener('keydown', onKey);
ui.list.addEventListener('click', (e) => {
  const li = e.target.closest('[data-testid="quiver-template"]');
  if (!li) return;
  const i = Number(li.dataset.index);
  setActive(i, false);
  const t = state.shown[i];
  if (t) sendTemplate(t);
});

// ---------------------------------------------------------------------------------------------
// Sending

function showRefusal(t, partIndex, e) {
  const code = e?.code ?? 'internal';
  ui.refusal.dataset.code = code;
  ui.refusal.dataset.templateId = t.id;
  const where = (t.parts?.length ?? 0) > 1 ? ` (part ${partIndex + 1} of ${t.parts.length})` : '';
  ui.refusal.replaceChildren();
  const strong = document.createElement('strong');
  strong.textContent = `Not sent: “${t.title}”${where}`;
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
}

function sendTemplate(t) {
  if (state.core !== 'ready') {
    showNotice(new PanelError('core_unavailable', 'the template engine is not loaded'), 'Cannot send');
    return;
  }
  const templateJson = JSON.stringify(t);
  const context = JSON.stringify({});
  const payloads = [];
  // Render every part first: a refused part means nothing of the template is sent.
  for (let i = 0; i < (t.parts?.length ?? 0); i++) {
    try {
      payloads.push(JSON.parse(wasm_bindgen.render_part(platform, templateJson, i, context)));
    } catch (e) {
      showRefusal(t, i, e);
      return;
    }
  }
  if (!payloads.length) {
    showRefusal(t, 0, new PanelError('invalid_template', 'the template has no parts'));
    return;
  }
  clearRefusal();
  const batch = crypto.randomUUID();
  payloads.forEach((p, i) => {
    const key = crypto.randomUUID();
    addSend(key, t, i);
    call('send', {
      key,
      batch,
      template_id: t.id,
      revision: t.revision ?? 1,
      part_index: i,
      payload: p.wire,
      post_as: p.post_as,
      platform: p.platform,
    }).catch((e) => updateSend({ key, send_id: null, state: 'failed', error: { code: e.code, message: e.message } }));
  });
}

const STATE_LABEL = {
  queued: 'Queued',
  sending: 'Sending…',
  sent: 'Sent',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

function addSend(key, t, partIndex) {
  const li = document.createElement('li');
  li.className = 'send';
  li.dataset.testid = 'quiver-send';
  li.dataset.key = key;
  li.dataset.sendId = '';
  li.dataset.sendState = 'queued';
  li.dataset.templateId = t.id;
  li.dataset.partIndex = String(partIndex);

  const title = document.createElement('span');
  title.className = 'send-title';
  const parts = t.parts?.length ?? 1;
  title.textContent = parts > 1 ? `${t.title} · ${partIndex + 1}/${parts}` : t.title;

  const st = document.createElement('span');
  st.className = 'send-state';
  st.dataset.testid = 'quiver-send-state';

  const countdown = document.createElement('span');
  countdown.className = 'send-countdown';
  countdown.dataset.testid = 'quiver-send-countdown';

  const cancel = document.createElement('button');
  cancel.type = 'button';
  cancel.className = 'send-cancel';
  cancel.dataset.testid = 'quiver-send-cancel';
  cancel.textContent = 'Cancel';
  cancel.setAttribute('aria-label', `Cancel sending ${title.textContent}`);
  cancel.addEventListener('click', () => {
    cancel.disabled = true;
    call('cancel', { key }).catch((e) => showNotice(e, 'Could not cancel'));
  });

  const err = document.createElement('div');
  err.className = 'send-error';
  err.dataset.testid = 'quiver-send-error';
  err.hidden = true;

  li.append(title, st, countdown, cancel, err);
  ui.sends.prepend(li);
  state.sends.set(key, { el: li, state: 'queued', dueAt: null });
  while (ui.sends.children.length > MAX_SENDS_SHOWN) {
    const last = ui.sends.lastElementChild;
    state.sends.delete(last.dataset.key);
    last.remove();
  }
  ui.sendsSection.hidden = false;
  renderSend(state.sends.get(key));
  tick();
}

function updateSend(msg) {
  let s = state.sends.get(msg.key);
  if (!s) {
    // A send still queued from before this panel was (re)loaded.
    if (typeof msg.template_id !== 'string' || !Number.isInteger(msg.part_index)) return;
    const known = state.templates.find((x) => x.t.id === msg.template_id)?.t;
    addSend(msg.key, known ?? { id: msg.template_id, title: msg.template_id, parts: [] }, msg.part_index);
    s = state.sends.get(msg.key);
  }
  if (s.state !== 'queued' && s.state !== 'sending' && msg.state !== s.state) {
    return; // final states are final
  }
  s.state = msg.state;
  if (msg.send_id !== null && msg.send_id !== undefined) s.el.dataset.sendId = String(msg.send_id);
  s.dueAt = msg.state === 'queued' && typeof msg.delay_ms === 'number' ? performance.now() + msg.delay_ms : null;
  s.error = msg.error ?? null;
  renderSend(s);
  tick();
}

function renderSend(s) {
  const { el } = s;
  el.dataset.sendState = s.state;
  el.querySelector('.send-state').textContent = STATE_LABEL[s.state] ?? s.state;
  const cancel = el.querySelector('.send-cancel');
  cancel.hidden = s.state !== 'queued';
  const err = el.querySelector('.send-error');
  if (s.error && (s.state === 'failed' || s.state === 'cancelled')) {
    err.dataset.code = s.error.code ?? '';
    err.textContent = `${s.error.code ?? 'error'}: ${s.error.message ?? ''}`;
    err.hidden = false;
  } else {
    err.hidden = true;
  }
  renderCountdown(s);
}

function renderCountdown(s) {
  const el = s.el.querySelector('.send-countdown');
  if (s.state !== 'queued') {
    el.textContent = '';
    delete el.dataset.remainingMs;
    return;
  }
  if (s.dueAt === null) {
    el.textContent = state.daemon.state === 'up' ? 'reserving…' : 'waiting for daemon';
    delete el.dataset.remainingMs;
    return;
  }
  const ms = Math.max(0, s.dueAt - performance.now());
  el.dataset.remainingMs = String(Math.round(ms));
  el.textContent = ms > 0 ? `in ${(ms / 1000).toFixed(1)} s` : 'due';
}

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

// ---------------------------------------------------------------------------------------------
// Start-up

async function loadCore() {
  try {
    if (typeof wasm_bindgen !== 'function') throw new Error('pkg/quiver_core.js did not load');
    await wasm_bindgen({ module_or_path: WASM_PATH });
    state.core = 'ready';
    ui.palette.dataset.core = 'ready';
    ui.palette.dataset.coreVersion = wasm_bindgen.version();
  } catch (e) {
    state.core = 'error';
    ui.palette.dataset.core = 'error';
    showNotice(new PanelError('core_error', String(e?.message ?? e)), 'The template engine failed to load');
  }
}

if (!token) {
  showNotice(new PanelError('bad_panel_url', 'this panel was opened without its frame token'));
} else {
  connect();
}
renderEmpty();
loadCore();
