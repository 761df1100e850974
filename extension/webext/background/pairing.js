// @ts-check
/**
 * Pairing each assistant frame's content script with the panel it injected.
 *
 * PAIRING: a panel port "quiver-panel:<token>[:<resume>]" is accepted only when a connected
 * content script registered <token> (with its workspace), the panel is in the same tab (and, in
 * Firefox, in the frame the content script named), and the token has not paired a panel before,
 * unless <resume> is the secret the background gave that panel ({type:"paired", resume}) and no
 * other panel holds the token. Otherwise: {type:"refused", code: "not_registered"|"wrong_frame"|
 * "token_used"|"bad_request", message} and the port is closed. A stolen token is thus useless:
 * the real panel paired first. Paired tokens and their resume secrets are kept in
 * storage.session, so a background restart does not make a used token usable again.
 */
import { api } from '../lib/browser.js';
import { log, quietly } from './log.js';
import { status } from './native.js';

/**
 * How long sends wait for their assistant frame to (re)connect, counted from when it went away
 * (or from start-up for restored sends), before they are cancelled.
 */
export const CS_GRACE_MS = 3_000;

/** @typedef {{ok: boolean, error: string | null, unknown?: boolean}} PostResult */
/**
 * tabId/frameId/frameOrigin bind the token to the content script that first connected with it;
 * workspace/parent are what it registered.
 * @typedef {{
 *   token: string, cs: chrome.runtime.Port | null, panel: chrome.runtime.Port | null,
 *   tabId: number | undefined, frameId: number | undefined, frameOrigin: string | null | undefined,
 *   workspace: string | null, parent: string | null, panelFrameId: number | null,
 *   panelUsed: boolean, resume: string | null, csLostAt: number,
 *   postWaiters: Map<number, (r: PostResult) => void>, csWaiters: (() => void)[],
 *   context?: {url: string, selected: unknown[]}, intake?: Promise<unknown>,
 * }} Pair
 */

/** @type {Map<string, Pair>} token -> pair */
export const pairs = new Map();

/**
 * What pairing needs of the send queue, set by it (background.js wires them): whether sends of
 * a token are still queued, and what to do when a content script or a panel (re)connects.
 */
export const hooks = {
  busy: /** @type {(token: string) => boolean} */ (() => false),
  csConnected: /** @type {() => void} */ (() => {}),
  panelPaired: /** @type {(token: string) => void} */ (() => {}),
};

/** @returns {Pair} */
export function pairFor(/** @type {string} */ token) {
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

export function dropPairIfIdle(/** @type {Pair} */ pair) {
  if (pair.cs || pair.panel) return;
  if (hooks.busy(pair.token)) return;
  pairs.delete(pair.token);
  forgetPairing(pair.token);
}

// Tokens that have paired a panel, kept in storage.session (not readable by content scripts,
// cleared with the browser session) so that a background restart does not make a used token
// usable again: after it, only the panel holding the resume secret pairs. token -> {resume, tabId}
const PAIRED_KEY = 'quiver.paired.v1';
/** @typedef {{resume: string | null, tabId: number | undefined}} Paired */
/** @type {Promise<Map<string, Paired>>} */
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

function savePairings(/** @type {Map<string, Paired>} */ map) {
  quietly(() => api.storage.session?.set({ [PAIRED_KEY]: Object.fromEntries(map) }));
}

function rememberPairing(/** @type {Pair} */ pair) {
  paired.then((map) => {
    map.set(pair.token, { resume: pair.resume, tabId: pair.tabId });
    savePairings(map);
  });
}

function forgetPairing(/** @type {string} */ token) {
  paired.then((map) => {
    if (map.delete(token)) savePairings(map);
  });
}

/** @returns {string | null} */
function originOf(/** @type {string | undefined} */ url) {
  try {
    const o = new URL(url ?? '').origin;
    return o && o !== 'null' ? o : null;
  } catch {
    return null;
  }
}

/** The origin of the frame a port comes from. */
function senderOrigin(/** @type {chrome.runtime.MessageSender} */ sender) {
  return (sender.origin && sender.origin !== 'null' ? sender.origin : null) ?? originOf(sender.url);
}

/**
 * True when `v` is an http(s) origin exactly (`scheme://host[:port]`).
 * @returns {v is string}
 */
function isOrigin(/** @type {unknown} */ v) {
  return typeof v === 'string' && /^https?:\/\//.test(v) && originOf(v) === v;
}

export function sendToPanel(/** @type {Pair} */ pair, /** @type {object} */ msg) {
  if (!pair.panel) return;
  try {
    pair.panel.postMessage(msg);
  } catch (e) {
    log.warn('panel post failed', e);
  }
}

/** Tells every paired panel. */
export function sendToPanels(/** @type {object} */ msg) {
  for (const pair of pairs.values()) sendToPanel(pair, msg);
}

/**
 * A content script's port "quiver-cs:<token>" (protocol at the top of background.js).
 * @param {chrome.runtime.Port} port
 * @param {string} token
 * @param {chrome.runtime.MessageSender} sender
 */
export function connectContentScript(port, token, sender) {
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
  hooks.csConnected();
}

/**
 * @param {Pair} pair
 * @param {chrome.runtime.Port} port
 * @param {any} msg what the content script sent: checked field by field
 */
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
function isPanelUrl(/** @type {string | undefined} */ url) {
  try {
    const u = new URL(url ?? '');
    const own = new URL(api.runtime.getURL('panel.html'));
    return u.protocol === own.protocol && u.pathname === own.pathname;
  } catch {
    return false;
  }
}

/**
 * PAIRING (see the top of this file): accepts the panel for `token`, or refuses it. (The panel
 * says nothing before it is accepted, so deciding after reading storage.session loses nothing.)
 * @param {chrome.runtime.Port} port
 * @param {string} token
 * @param {string | null} resume
 * @param {chrome.runtime.MessageSender} sender
 * @param {(pair: Pair, port: chrome.runtime.Port, msg: any) => void} onMessage the panel's requests
 */
export async function connectPanel(port, token, resume, sender, onMessage) {
  let gone = false;
  port.onDisconnect.addListener(() => {
    gone = true;
  });
  const known = (await paired).get(token);
  if (gone) return;
  /** @param {string} code @param {string} message */
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
  port.onMessage.addListener((msg) => onMessage(pair, port, msg));
  port.onDisconnect.addListener(() => {
    if (pair.panel !== port) return;
    pair.panel = null;
    dropPairIfIdle(pair);
  });
  sendToPanel(pair, { type: 'paired', resume: pair.resume });
  sendToPanel(pair, { type: 'status', status: status() });
  if (pair.context) sendToPanel(pair, { type: 'context', ...pair.context });
  hooks.panelPaired(token);
}

/**
 * Resolves true once the pair's content script is connected, false when its grace runs out.
 * @returns {Promise<boolean>}
 */
export function waitForCs(/** @type {Pair} */ pair) {
  if (pair.cs) return Promise.resolve(true);
  const ms = pair.csLostAt + CS_GRACE_MS - Date.now();
  if (ms <= 0) return Promise.resolve(false);
  return new Promise((resolve) => {
    /** @param {boolean} v */
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
