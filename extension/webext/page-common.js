/*
 * Shared by the extension's own pages (options.html, popup.html): translation of the static
 * markup, the `quiver-page` port to the background (status, daemon events, a narrow RPC) and
 * small DOM helpers. Plain script: defines the global `Quiver`.
 */
'use strict';

const Quiver = (() => {
  const api = globalThis.browser ?? globalThis.chrome;

  /** A translated message (`_locales/<lang>/messages.json`); the key itself when missing. */
  function t(key, subs) {
    const s = api.i18n.getMessage(key, subs === undefined ? undefined : [].concat(subs).map(String));
    return s || key;
  }

  /** Fills `data-i18n` (text), `data-i18n-placeholder`, `-aria-label`, `-title` under `root`. */
  function translate(root = document) {
    for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
    for (const [attr, prop] of [['placeholder', 'i18nPlaceholder'], ['aria-label', 'i18nAriaLabel'], ['title', 'i18nTitle']]) {
      for (const el of root.querySelectorAll(`[data-i18n-${attr}]`)) el.setAttribute(attr, t(el.dataset[prop]));
    }
    // The language the messages are in (what chrome.i18n picked), as a BCP 47 tag.
    const lang = api.i18n.getMessage('page_lang') || 'en';
    document.documentElement.lang = lang;
  }

  /** Creates an element: h('button', {class: 'x', dataset: {testid: 'y'}, onclick}, 'text', child). */
  function h(tag, attrs = {}, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs ?? {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'value') el.value = v;
      else if (k === 'checked') el.checked = Boolean(v);
      else if (k === 'text') el.textContent = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  let uid = 0;
  const nextId = (prefix = 'q') => `${prefix}-${++uid}`;

  /**
   * The port to the background. `onStatus(status)` and `onEvent(name, data)` are called as
   * messages come; `call(method, params)` resolves with the daemon's result or rejects with an
   * Error carrying `code` (and `data`). The port is reopened if the background restarts.
   */
  function connect({ onStatus = () => {}, onEvent = () => {} } = {}) {
    let port = null;
    let seq = 0;
    const pending = new Map();
    const open = () => {
      port = api.runtime.connect({ name: `quiver-page:${crypto.randomUUID()}` });
      port.onMessage.addListener((msg) => {
        if (msg?.type === 'status') onStatus(msg.status);
        else if (msg?.type === 'event') onEvent(msg.name, msg.data);
        else if (msg?.type === 'reply') {
          const p = pending.get(msg.req);
          if (!p) return;
          pending.delete(msg.req);
          if (msg.error) {
            const e = new Error(msg.error.message ?? msg.error.code);
            e.code = msg.error.code;
            e.data = msg.error.data ?? fieldFromMessage(msg.error.message);
            p.reject(e);
          } else p.resolve(msg.result);
        }
      });
      port.onDisconnect.addListener(() => {
        port = null;
        for (const p of pending.values()) {
          const e = new Error('the extension background restarted; try again');
          e.code = 'host_disconnected';
          p.reject(e);
        }
        pending.clear();
        onStatus({ state: 'down', host: 'disconnected', reason: 'background restarting', daemon: null });
        setTimeout(open, 300);
      });
    };
    open();
    return {
      call(method, params = {}) {
        if (!port) open();
        const req = ++seq;
        return new Promise((resolve, reject) => {
          pending.set(req, { resolve, reject });
          port.postMessage({ type: 'rpc', req, method, params });
        });
      },
    };
  }

  /**
   * Error details the background does not forward (it passes code and message only): the field
   * a template error names (`templates[1].parts[0].text`), and a conflict's current revision.
   */
  function fieldFromMessage(message) {
    const m = String(message ?? '');
    const data = {};
    const field = /`((?:templates?\[\d+\]|template)(?:\.[\w]+|\[\d+\])*)`/.exec(m);
    if (field) data.field = field[1];
    const rev = /is at revision (\d+)/.exec(m);
    if (rev) data.current_revision = Number(rev[1]);
    return Object.keys(data).length ? data : undefined;
  }

  /** Sets a live status element from a background Status. */
  function showStatus(el, status) {
    const up = status?.state === 'up';
    el.dataset.state = up ? 'up' : 'down';
    const label = el.querySelector('.status-label') ?? el;
    label.textContent = up
      ? t('status_up', status.daemon ?? '?')
      : t('status_down', status?.reason ?? t('status_unknown_reason'));
  }

  return { api, t, translate, h, nextId, connect, showStatus };
})();
