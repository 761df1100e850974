// @ts-check
/*
 * Quiver content script. Runs in every frame of the matched pages (the manifest's static demo
 * matches, plus the user's sites registered by the background with scripting.registerContentScripts);
 * does something only in an assistant frame, found by the site rules below. There it shows the
 * launcher and the panel iframe (an extension page: the palette and the wasm core live there,
 * under the extension's CSP), and posts the payloads the background hands it to the workspace:
 * window.parent.postMessage(...).
 *
 * Plain JS on purpose, no wasm (Chromium compiles a content script's wasm under the page's CSP).
 * It holds no templates or library data and puts none in the page's DOM; the page can reach
 * neither the panel (cross-origin extension iframe) nor the background.
 *
 * SITE RULES (storage.local key `siteRules`, edited by the options page):
 *   [{pattern: "https://crm.example.com/quiver/*", platform: "udesk"|"sobot"|"wechat-dkf",
 *     workspaces: ["https://*.udesk.cn"], enabled: true,
 *     channel?: "web"|"sdk"|"miniprogram"|"wechat"|"other"}]
 *   `pattern` is matched against the frame's URL: `scheme://host/path`, where scheme may be `*`
 *   (http or https), host may start with `*.` (any subdomain) or be `*`, and `*` in the path is any
 *   run of characters (query included). A pattern without a port matches every port. User rules
 *   are tried first, in order, then the development build's demo rules (build-config.js; none in
 *   production). Only frames that are not the top frame are assistant frames (the assistant posts
 *   to window.parent). `channel` is the conversation channel when the site serves only one (Udesk
 *   does not tell the assistant); unknown otherwise.
 *   `workspaces` names the origins of the workspace consoles that may embed the assistant page
 *   (`scheme://host[:port]`, scheme may be `*`, host may start with `*.`, no port = any port; a
 *   bare `*` host is refused). The frame serves only if EVERY ancestor (parent up to top) has one of
 *   them: `location.ancestorOrigins` where the browser has it, else a handshake with each ancestor
 *   (below). A rule without `workspaces` serves no frame. Payloads are posted to the parent's exact
 *   origin as the targetOrigin, never `*`, so a page that navigates the parent away, or a hostile
 *   page framing the assistant page, receives nothing. The workspace (the top frame's origin)
 *   is reported to the background: it keys the send queue and meter and filters the history.
 *   A frame that matches a rule but not its workspaces gets `data-quiver-refused="workspace"` on
 *   its <html> (a test hook; the assistant page could tell anyway that nothing attached).
 *
 * ORIGIN HANDSHAKE (only where `location.ancestorOrigins` is missing): the frame posts
 *   {quiver: "origin?", nonce} to each ancestor window; the Quiver content script there (or anyone
 *   there: it does not matter) answers {quiver: "origin!", nonce}. The origin taken is the
 *   browser-stamped `event.origin` of an answer whose `event.source` is that ancestor window, so an
 *   answer cannot claim another origin. No answer (no Quiver there) means no panel.
 *
 * PANEL PAIRING: the frame registers its token with the background ({type:"register", workspace,
 *   parent}) before it creates the panel iframe; the background accepts one panel for that token,
 *   in the same tab, once (see background.js). The panel's URL carries the token, which is useless
 *   to anyone else once the panel has paired. The shadow root holding the panel is closed, except
 *   in the development build (build-config.js `openShadowRoot`, for the e2e suite's hooks).
 *
 * CONTEXT sent to the panel (through the background): the frame URL and, on Sobot, every
 * `{name: "selected", ...}` message the workbench (window.parent) posts when the agent switches
 * conversation. The panel derives cid/uid from them; each send carries the cid/uid it was
 * rendered with, so a send queued before a switch still goes to the conversation it was queued for.
 *
 * WECHAT 多客服: the plugin page runs inside the PC client's embedded IE control, which calls the
 * page-global `MCS_ClientNotify` (OnUserChange...) and takes replies through the COM bridge
 * `window.external.PutMsg` (platform-spec §3): no browser extension runs there. In a browser (a
 * copy of the plugin page, tests) a content script still could not do it directly: it lives in an
 * isolated world, a global it defines is not seen by the page. What would work is a small script
 * in the page's world (a `world: "MAIN"` registered content script) that defines
 * MCS_ClientNotify, relays the events here with window.postMessage and calls PutMsg. NOT
 * IMPLEMENTED: on a wechat-dkf rule the palette renders and previews, but `put_msg` payloads are
 * refused (background checkSend, and this script posts only `string`/`object` payloads).
 *
 * KEYS: Alt+Shift+Q in the assistant frame opens the palette and focuses its search (the
 * `commands` shortcut of the manifest does the same through the background when the frame does
 * not have focus; browser commands are not delivered into iframes reliably). Only trusted events
 * count (a key or click the page's scripts synthesize is ignored), and the focus request goes to
 * the panel through the background, never by postMessage (the page could post that too).
 */
(() => {
  'use strict';

  const api = globalThis.browser ?? globalThis.chrome;

  /**
   * The build's settings (build-config.js, loaded before this script in the same isolated world):
   * production has no built-in rules and a closed shadow root; the development build
   * (`cargo xtask build-extension --dev`) adds the demo workspaces' rules (tests/e2e/pages,
   * `cargo xtask run`) and opens the shadow root for the e2e suite. Real-world consoles embed an
   * assistant page the integrator hosts on their own domain, so there is no real-world URL to know
   * in advance: those are added as user rules.
   */
  /** @type {{dev?: boolean, openShadowRoot?: boolean, rules?: unknown[]}} */
  const BUILD = /** @type {{QUIVER_BUILD?: typeof BUILD}} */ (/** @type {unknown} */ (globalThis)).QUIVER_BUILD ?? {};
  const DEFAULT_RULES = Array.isArray(BUILD.rules) ? BUILD.rules : [];
  const PLATFORMS = new Set(['udesk', 'sobot', 'wechat-dkf']);
  const OPEN_KEY = { key: 'q', altKey: true, shiftKey: true };

  /** @param {string} glob */
  function globToRe(glob) {
    return glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  }

  /**
   * True when `url` (a URL) matches `pattern` (see SITE RULES above).
   * @param {unknown} pattern
   * @param {URL} url
   */
  function ruleMatches(pattern, url) {
    const m = /^(\*|https?):\/\/([^/]+)(\/.*)?$/.exec(String(pattern ?? '').trim());
    if (!m) return false;
    const [, scheme, hostPort, pathGlob = '/*'] = m;
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
    if (scheme !== '*' && `${scheme}:` !== url.protocol) return false;
    const [host, port] = hostPort.split(/:(?=\d+$)/);
    if (port !== undefined && port !== (url.port || (url.protocol === 'https:' ? '443' : '80'))) return false;
    const h = url.hostname.toLowerCase();
    const ph = host.toLowerCase();
    if (ph !== '*') {
      if (ph.startsWith('*.')) {
        const base = ph.slice(2);
        if (h !== base && !h.endsWith(`.${base}`)) return false;
      } else if (ph !== h) {
        return false;
      }
    }
    return new RegExp(`^${globToRe(pathGlob)}$`).test(url.pathname + url.search);
  }

  /**
   * True when `origin` (`scheme://host[:port]`) matches the origin pattern `pattern`
   * (`scheme://host[:port]`, scheme may be `*`, host may start with `*.`; no port = any port).
   * @param {unknown} pattern
   * @param {string} origin
   */
  function originMatches(pattern, origin) {
    const m = /^(\*|https?):\/\/([^/:]+)(?::(\d+))?\/?$/.exec(String(pattern ?? '').trim());
    if (!m || m[2] === '*') return false;
    let url;
    try {
      url = new URL(origin);
    } catch {
      return false;
    }
    if (url.origin !== origin || (url.protocol !== 'http:' && url.protocol !== 'https:')) return false;
    const [, scheme, host, port] = m;
    if (scheme !== '*' && `${scheme}:` !== url.protocol) return false;
    if (port !== undefined && port !== (url.port || (url.protocol === 'https:' ? '443' : '80'))) return false;
    const h = url.hostname.toLowerCase();
    const ph = host.toLowerCase();
    if (ph.startsWith('*.')) return h === ph.slice(2) || h.endsWith(ph.slice(1));
    return h === ph;
  }

  /**
   * A site rule as stored (storage.local `siteRules`, or the build's defaults): checked where used.
   * @typedef {{pattern?: unknown, platform?: unknown, channel?: unknown, workspaces?: unknown, enabled?: unknown}} Rule
   */

  /**
   * True when every ancestor origin (parent first, top last) is one of the rule's workspaces.
   * @param {Rule} rule
   * @param {string[] | null} ancestors
   * @returns {ancestors is string[]}
   */
  function servesAncestors(rule, ancestors) {
    const allowed = /** @type {unknown[]} */ (Array.isArray(rule?.workspaces) ? rule.workspaces : []);
    return Array.isArray(ancestors) && ancestors.length > 0
      && ancestors.every((o) => allowed.some((p) => originMatches(p, o)));
  }

  /**
   * The first enabled rule matching this frame, or null.
   * @param {Rule[]} rules
   * @param {{href: string}} loc
   * @param {boolean} isTop
   * @returns {Rule | null}
   */
  function ruleForFrame(rules, loc, isTop) {
    if (isTop) return null;
    let url;
    try {
      url = new URL(loc.href);
    } catch {
      return null;
    }
    for (const r of rules) {
      if (!r || r.enabled === false || typeof r.platform !== 'string' || !PLATFORMS.has(r.platform)) continue;
      if (ruleMatches(r.pattern, url)) return r;
    }
    return null;
  }

  /** @returns {Promise<Rule[]>} */
  async function loadRules() {
    /** @type {Rule[]} */
    let user = [];
    try {
      const got = await api.storage.local.get('siteRules');
      if (Array.isArray(got?.siteRules)) user = got.siteRules;
    } catch {
      // storage unavailable: the defaults still apply
    }
    return [...user, .../** @type {Rule[]} */ (DEFAULT_RULES)];
  }

  const isTop = window.top === window;
  // One instance per document, even if the script is injected twice (static + registered).
  const g = /** @type {{__quiverContentScript?: boolean}} */ (/** @type {unknown} */ (globalThis));
  if (g.__quiverContentScript) return;
  g.__quiverContentScript = true;
  const HAS_ANCESTOR_ORIGINS = typeof location.ancestorOrigins?.length === 'number';

  // Where ancestorOrigins is missing, answer the origin handshake of the frames below (any frame
  // may ask: the answer carries only its nonce, and its origin is stamped by the browser).
  if (!HAS_ANCESTOR_ORIGINS) {
    window.addEventListener('message', (e) => {
      const d = e.data;
      if (!e.source || !d || typeof d !== 'object' || d.quiver !== 'origin?' || typeof d.nonce !== 'string') return;
      try {
        /** @type {Window} */ (e.source).postMessage({ quiver: 'origin!', nonce: d.nonce }, '*');
      } catch {
        // the asking frame went away
      }
    });
  }
  if (isTop) return;

  /** The ancestors' windows, parent first, top last. */
  function ancestorWindows() {
    const out = [];
    for (let w = window.parent; ; w = w.parent) {
      out.push(w);
      if (w === window.top || out.length > 64) return out;
    }
  }

  /**
   * Asks `win` for its origin (ORIGIN HANDSHAKE above); resolves to it, or null.
   * @param {Window} win
   * @returns {Promise<string | null>}
   */
  function handshake(win, timeoutMs = 3_000) {
    return new Promise((resolve) => {
      const nonce = crypto.randomUUID();
      /** @param {string | null} v */
      const done = (v) => {
        clearTimeout(timer);
        window.removeEventListener('message', onReply);
        resolve(v);
      };
      /** @param {MessageEvent} e */
      const onReply = (e) => {
        if (e.source !== win || e.data?.quiver !== 'origin!' || e.data?.nonce !== nonce) return;
        done(e.origin && e.origin !== 'null' ? e.origin : null);
      };
      const timer = setTimeout(() => done(null), timeoutMs);
      window.addEventListener('message', onReply);
      try {
        win.postMessage({ quiver: 'origin?', nonce }, '*');
      } catch {
        done(null);
      }
    });
  }

  /**
   * The ancestors' origins, parent first, top last; null where one cannot be established.
   * @returns {Promise<string[] | null>}
   */
  async function ancestorOrigins() {
    if (HAS_ANCESTOR_ORIGINS) {
      const list = [...location.ancestorOrigins];
      if (list.length && list.every((o) => o && o !== 'null')) return list;
      return null;
    }
    const origins = await Promise.all(ancestorWindows().map((w) => handshake(w)));
    return origins.every((o) => o !== null) ? /** @type {string[]} */ (origins) : null;
  }

  loadRules().then(async (rules) => {
    const rule = ruleForFrame(rules, location, isTop);
    if (!rule) return;
    const ancestors = await ancestorOrigins();
    if (!servesAncestors(rule, ancestors)) {
      document.documentElement.setAttribute('data-quiver-refused', 'workspace');
      return;
    }
    start(rule, { parent: ancestors[0], workspace: ancestors[ancestors.length - 1] });
  });

  /**
   * Attaches to this assistant frame.
   * @param {Rule} rule the frame's rule (its platform checked by ruleForFrame)
   * @param {{parent: string, workspace: string}} where the parent's and the workspace's origins
   */
  function start(rule, where) {
    const platform = String(rule.platform);
    document.documentElement.setAttribute('data-quiver-frame', platform);

    const token = crypto.randomUUID();
    const PANEL_SIZE = { width: 380, height: 520 };
    // With use_dynamic_url (Chromium) this is the session's dynamic URL, which pages cannot guess.
    const panelUrl = api.runtime.getURL('panel.html');

    // -------------------------------------------------------------------------------------------
    // UI: <div data-testid="quiver-root"> with a closed shadow root (open in the development build).
    // Styles are set through the CSSOM (element.style), which no page CSP blocks, with !important
    // so page CSS cannot move it.

    /**
     * @param {HTMLElement} el
     * @param {Record<string, string>} props
     */
    function css(el, props) {
      for (const [name, value] of Object.entries(props)) el.style.setProperty(name, value, 'important');
    }

    const root = document.createElement('div');
    root.setAttribute('data-testid', 'quiver-root');
    css(root, {
      all: 'initial',
      position: 'fixed',
      right: '8px',
      bottom: '8px',
      'z-index': '2147483647',
      display: 'flex',
      'flex-direction': 'column',
      'align-items': 'flex-end',
      gap: '6px',
      margin: '0',
      padding: '0',
      border: '0',
      width: 'auto',
      height: 'auto',
      'pointer-events': 'none', // only the children take clicks: the page stays usable around them
    });
    const shadow = root.attachShadow({ mode: BUILD.openShadowRoot === true ? 'open' : 'closed' });

    const frame = document.createElement('iframe');
    frame.setAttribute('data-testid', 'quiver-panel-frame');
    frame.setAttribute('title', 'Quiver templates');
    const hash = new URLSearchParams({ platform });
    if (rule.channel) hash.set('channel', String(rule.channel));
    frame.src = `${panelUrl}#${token}&${hash}`;
    css(frame, {
      display: 'block',
      width: `min(${PANEL_SIZE.width}px, calc(100vw - 16px))`,
      height: `min(${PANEL_SIZE.height}px, calc(100vh - 60px))`,
      border: '1px solid #c5ccd6',
      'border-radius': '8px',
      'box-shadow': '0 6px 24px rgba(15, 23, 42, 0.18)',
      background: '#ffffff',
      margin: '0',
      padding: '0',
      'pointer-events': 'auto',
      'color-scheme': 'light',
    });

    const launcher = document.createElement('button');
    launcher.type = 'button';
    launcher.setAttribute('data-testid', 'quiver-launcher');
    const label = api.i18n?.getMessage?.('palette_launcher_label') || 'Quiver templates (Alt+Shift+Q)';
    launcher.setAttribute('aria-label', label);
    launcher.setAttribute('aria-expanded', 'true');
    launcher.setAttribute('title', label);
    launcher.textContent = 'Q';
    css(launcher, {
      all: 'initial',
      display: 'flex',
      'align-items': 'center',
      'justify-content': 'center',
      width: '36px',
      height: '36px',
      'border-radius': '50%',
      background: '#1f4e79',
      color: '#ffffff',
      font: '700 16px/1 system-ui, sans-serif',
      cursor: 'pointer',
      'box-shadow': '0 2px 8px rgba(15, 23, 42, 0.25)',
      'pointer-events': 'auto',
    });

    let open = true;
    /** @param {boolean} v */
    function setOpen(v) {
      open = v;
      frame.style.setProperty('display', open ? 'block' : 'none', 'important');
      launcher.setAttribute('aria-expanded', String(open));
      root.setAttribute('data-open', String(open));
    }
    /**
     * Shows the palette and puts the caret in its search box: the request goes through the
     * background's port to this frame's panel (a postMessage could come from the page as well).
     */
    function openAndFocus() {
      setOpen(true);
      frame.focus();
      sendToBackground({ type: 'focus' });
    }
    launcher.addEventListener('click', (e) => {
      if (!e.isTrusted) return; // a click the page synthesized
      if (open) setOpen(false);
      else openAndFocus();
    });
    setOpen(true);

    window.addEventListener(
      'keydown',
      (e) => {
        if (!e.isTrusted) return; // a key event the page synthesized
        if (e.altKey === OPEN_KEY.altKey && e.shiftKey === OPEN_KEY.shiftKey && !e.ctrlKey && !e.metaKey
            && (e.key?.toLowerCase() === OPEN_KEY.key || e.code === 'KeyQ')) {
          e.preventDefault();
          e.stopPropagation();
          openAndFocus();
        }
      },
      true,
    );

    // -------------------------------------------------------------------------------------------
    // Conversation context: the frame URL, and Sobot's `selected` messages from the workbench.

    /** @type {unknown[]} */
    const selected = [];
    const MAX_SELECTED = 20;
    function contextMessage() {
      return { type: 'context', url: location.href, selected: selected.slice() };
    }
    if (platform === 'sobot') {
      window.addEventListener('message', (e) => {
        if (e.source !== window.parent || e.origin !== where.parent) return;
        let data = e.data;
        if (typeof data === 'string') {
          if (data.length > 65_536) return;
          try {
            data = JSON.parse(data);
          } catch {
            return;
          }
        }
        if (!data || typeof data !== 'object' || data.name !== 'selected') return;
        let copy;
        try {
          copy = JSON.parse(JSON.stringify(data));
        } catch {
          return;
        }
        if (JSON.stringify(copy).length > 65_536) return;
        selected.push(copy);
        if (selected.length > MAX_SELECTED) selected.splice(0, selected.length - MAX_SELECTED);
        sendToBackground(contextMessage());
      });
    }

    // -------------------------------------------------------------------------------------------
    // Background connection: reconnects with the same token if the background restarts.

    /** @type {chrome.runtime.Port | null} */
    let port = null;
    let retry = 100;
    let stopped = false;
    /** @type {number | null} */
    let panelFrameId = null; // Firefox: the panel iframe's frame id, once it is in the document

    /** @param {Record<string, unknown>} msg */
    function sendToBackground(msg) {
      try {
        port?.postMessage(msg);
      } catch {
        // reconnecting: the context is sent again on connect
      }
    }

    function connect() {
      if (port || stopped) return;
      if (!api.runtime?.id) {
        // The extension was updated or removed: this script is orphaned.
        stopped = true;
        root.remove();
        return;
      }
      let p;
      try {
        p = api.runtime.connect({ name: `quiver-cs:${token}` });
      } catch {
        stopped = true;
        root.remove();
        return;
      }
      port = p;
      // First message: this frame's workspace, as established above (keys the queue and meter).
      sendToBackground({ type: 'register', workspace: where.workspace, parent: where.parent });
      if (panelFrameId !== null) sendToBackground({ type: 'panel-frame', frameId: panelFrameId });
      p.onMessage.addListener((msg) => {
        retry = 100;
        onMessage(p, msg);
      });
      p.onDisconnect.addListener(() => {
        if (port !== p) return;
        port = null;
        setTimeout(connect, retry);
        retry = Math.min(retry * 2, 5_000);
      });
      sendToBackground(contextMessage());
    }

    /**
     * An order from the background (the only one this frame obeys).
     * @param {chrome.runtime.Port} p
     * @param {any} msg
     */
    function onMessage(p, msg) {
      if (msg?.type === 'open') {
        openAndFocus();
        return;
      }
      // `expect` (a post may follow) needs nothing: receiving it woke this frame's process.
      if (msg?.type !== 'post') return;
      let reply;
      try {
        if (msg.post_as !== 'string' && msg.post_as !== 'object') {
          throw new Error(`this frame delivers by postMessage only, not as ${msg.post_as}`);
        }
        const data = msg.post_as === 'string' ? String(msg.wire) : JSON.parse(msg.wire);
        // To the parent's exact origin: if the parent is no longer the workspace, nothing arrives.
        window.parent.postMessage(data, where.parent);
        reply = { type: 'posted', send_id: msg.send_id, ok: true };
      } catch (e) {
        reply = { type: 'posted', send_id: msg.send_id, ok: false, error: String(/** @type {Error} */ (e)?.message ?? e) };
      }
      try {
        p.postMessage(reply);
      } catch {
        // The port went away; the background treats the outcome as unknown.
      }
    }

    // A page restored from the back/forward cache had its port closed: connect again.
    window.addEventListener('pageshow', () => connect());
    // Register the token first, then create the panel that will present it.
    connect();
    if (stopped) return;
    shadow.append(frame, launcher);
    (document.body ?? document.documentElement).append(root);
    // Firefox can name the panel's frame: the background then accepts the panel from that frame only.
    try {
      // Firefox's runtime.getFrameId (not in Chromium, nor in its typings).
      const frameId = /** @type {{getFrameId?: (f: Element) => number}} */ (api.runtime).getFrameId?.(frame);
      if (frameId !== undefined && Number.isInteger(frameId) && frameId > 0) {
        panelFrameId = frameId;
        sendToBackground({ type: 'panel-frame', frameId });
      }
    } catch {
      // not available (Chromium)
    }
  }
})();
