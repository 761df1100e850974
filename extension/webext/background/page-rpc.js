// @ts-check
/**
 * The extension's own pages (options, popup, conversations): port "quiver-page:<uuid>", opened only from
 * options.html and popup.html. They get the status on connect and whenever it changes, the
 * daemon's events, and a narrow RPC to the daemon: only the methods of PAGE_METHODS (sends go
 * through the panel's queue only; WeChat replies through the hub, `wx.reply`).
 *   page -> bg  {type:"status", req}                   -> {type:"reply", req, result: Status}
 *               {type:"rpc", req, method, params}      -> {type:"reply", req, result | error}
 *   bg -> page  {type:"status", status}  {type:"event", name, data}
 */
import { api } from '../lib/browser.js';
import { errorBody, RpcError } from '../lib/rpc.js';
import { log, quietly } from './log.js';
import { request, status } from './native.js';

/** Daemon methods an extension page may call (a subset of docs/protocol.md's, tested). */
export const PAGE_METHODS = new Set([
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
  // Team libraries (protocol 1.4): the options page's Team tab, its conflicts view and editor.
  'team.status',
  'team.conflicts',
  'team.resolve',
  'team.join',
  'team.leave',
  'team.sync',
  'team.proposals',
  'team.review',
  // WeChat conversations (protocol 1.6): the conversations page.
  'wx.conversations',
  'wx.conversation',
  'wx.messages',
  'wx.take',
  'wx.assign',
  'wx.read',
  'wx.typing',
  'wx.transfer',
  'wx.preview',
  'wx.reply',
  'wx.blob',
]);
/**
 * Methods that wait on the network (the daemon asks the hub) get longer than the usual 15 s:
 * a join's one request to the hub, a sync's `wait_ms` (the page's, capped here) and a probe.
 */
const MAX_SYNC_WAIT_MS = 60_000;
/** @returns {number | undefined} */
function timeoutFor(/** @type {string} */ method, /** @type {any} */ params) {
  if (method === 'team.join') return 60_000;
  if (method === 'team.sync') return Math.min(Number(params?.wait_ms) || 30_000, MAX_SYNC_WAIT_MS) + 15_000;
  if (method === 'team.status' && params?.probe === true) return 60_000;
  if (method === 'team.proposals' || method === 'team.review') return 45_000;
  // a reply or preview may fetch the template's images (10 s each) before the hub answers
  if (method === 'wx.reply' || method === 'wx.preview') return 60_000;
  if (method.startsWith('wx.')) return 30_000;
  return undefined;
}
const PAGE_FILES = ['options.html', 'popup.html', 'conversations.html'];
/** @type {Set<chrome.runtime.Port>} */
const pages = new Set();

/** Tells every open page. */
export function sendToPages(/** @type {object} */ msg) {
  for (const page of pages) quietly(() => page.postMessage(msg));
}

/**
 * @param {chrome.runtime.Port} port
 * @param {chrome.runtime.MessageSender} sender
 */
export function connectPage(port, sender) {
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

/**
 * @param {chrome.runtime.Port} port
 * @param {any} msg
 */
function onPageMessage(port, msg) {
  const req = msg?.req;
  /** @param {unknown} result */
  const reply = (result) => quietly(() => port.postMessage({ type: 'reply', req, result }));
  /** @param {unknown} e */
  const fail = (e) => quietly(() => port.postMessage({ type: 'reply', req, error: errorBody(e) }));
  if (msg?.type === 'status') {
    reply(status());
  } else if (msg?.type === 'rpc') {
    if (typeof msg.method !== 'string' || !PAGE_METHODS.has(msg.method)) {
      fail(new RpcError('bad_request', `method ${JSON.stringify(msg?.method)} is not open to extension pages`));
      return;
    }
    const params = msg.params ?? {};
    request(msg.method, params, timeoutFor(msg.method, params)).then(reply, fail);
  } else {
    fail(new RpcError('bad_request', `unknown page message type ${JSON.stringify(msg?.type)}`));
  }
}
