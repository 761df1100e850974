// @ts-check
/**
 * Shared by the extension's own pages (options.html, popup.html): the `quiver-page` port to the
 * background (status, daemon events, a narrow RPC) and small DOM helpers.
 */
import { api } from './browser.js';
import { t } from './i18n.js';
import { Pending, RpcError } from './rpc.js';

/** @typedef {import('../background/native.js').Status} Status */

/**
 * Creates an element: h('button', {class: 'x', dataset: {testid: 'y'}, onclick}, 'text', child).
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, unknown> | null} [attrs]
 * @param {...unknown} children nodes, text, or lists of them; null, undefined and false are left out
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), /** @type {EventListener} */ (v));
    else if (k === 'value') /** @type {HTMLInputElement} */ (/** @type {unknown} */ (el)).value = String(v);
    else if (k === 'checked') /** @type {HTMLInputElement} */ (/** @type {unknown} */ (el)).checked = Boolean(v);
    else if (k === 'text') el.textContent = String(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let uid = 0;
/** A fresh element id. */
export const nextId = (prefix = 'q') => `${prefix}-${++uid}`;

/**
 * The port to the background. `onStatus(status)` and `onEvent(name, data)` are called as
 * messages come; `call(method, params)` resolves with the daemon's result or rejects with an
 * RpcError carrying `code` (and `data`). The port is reopened if the background restarts.
 * @param {{onStatus?: (status: Status) => void, onEvent?: (name: string, data: any) => void}} [handlers]
 * @returns {{call: (method: string, params?: object) => Promise<any>}}
 */
export function connect({ onStatus = () => {}, onEvent = () => {} } = {}) {
  /** @type {chrome.runtime.Port | null} */
  let port = null;
  /** @type {Pending<unknown>} */
  const pending = new Pending();
  /** @returns {chrome.runtime.Port} */
  const open = () => {
    const p = api.runtime.connect({ name: `quiver-page:${crypto.randomUUID()}` });
    port = p;
    p.onMessage.addListener((msg) => {
      if (msg?.type === 'status') onStatus(msg.status);
      else if (msg?.type === 'event') onEvent(msg.name, msg.data);
      else if (msg?.type === 'reply') {
        if (msg.error) {
          const data = msg.error.data ?? fieldFromMessage(msg.error.message);
          pending.reject(msg.req, new RpcError(msg.error.code, msg.error.message ?? msg.error.code, data));
        } else pending.resolve(msg.req, msg.result);
      }
    });
    p.onDisconnect.addListener(() => {
      port = null;
      pending.rejectAll(new RpcError('host_disconnected', 'the extension background restarted; try again'));
      onStatus({ state: 'down', host: 'disconnected', reason: 'background restarting', daemon: null });
      setTimeout(open, 300);
    });
    return p;
  };
  open();
  return {
    call(method, params = {}) {
      const p = port ?? open();
      const { id, promise } = pending.start();
      p.postMessage({ type: 'rpc', req: id, method, params });
      return promise;
    },
  };
}

/**
 * Error details the background does not forward (it passes code and message only): the field
 * a template error names (`templates[1].parts[0].text`), and a conflict's current revision.
 * @returns {{field?: string, current_revision?: number} | undefined}
 */
function fieldFromMessage(/** @type {unknown} */ message) {
  const m = String(message ?? '');
  /** @type {{field?: string, current_revision?: number}} */
  const data = {};
  const field = /`((?:templates?\[\d+\]|template)(?:\.[\w]+|\[\d+\])*)`/.exec(m);
  if (field) data.field = field[1];
  const rev = /is at revision (\d+)/.exec(m);
  if (rev) data.current_revision = Number(rev[1]);
  return Object.keys(data).length ? data : undefined;
}

/** Sets a live status element from a background Status. */
export function showStatus(/** @type {HTMLElement} */ el, /** @type {Status | null | undefined} */ status) {
  const up = status?.state === 'up';
  el.dataset.state = up ? 'up' : 'down';
  const label = el.querySelector('.status-label') ?? el;
  label.textContent = up
    ? t('status_up', status?.daemon ?? '?')
    : t('status_down', status?.reason ?? t('status_unknown_reason'));
}
