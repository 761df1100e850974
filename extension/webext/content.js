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
 *     enabled: true, channel?: "web"|"sdk"|"miniprogram"|"wechat"|"other"}]
 *   `pattern` is matched against the frame's URL: `scheme://host/path`, where scheme may be `*`
 *   (http or https), host may start with `*.` (any subdomain) or be `*`, and `*` in the path is any
 *   run of characters (query included). A pattern without a port matches every port. User rules
 *   are tried first, in order, then DEFAULT_RULES. Only frames that are not the top frame are
 *   assistant frames (the assistant posts to window.parent). `channel` is the conversation channel
 *   when the site serves only one (Udesk does not tell the assistant); unknown otherwise.
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
 * not have focus; browser commands are not delivered into iframes reliably).
 */
(() => {
  'use strict';

  const api = globalThis.browser ?? globalThis.chrome;

  /**
   * Built-in rules. The demo workspaces (tests/e2e/pages, `cargo xtask run`) are on localhost.
   * Real-world consoles embed an assistant page the integrator hosts on their own domain, so
   * there is no real-world URL to know in advance: those are added as user rules. (Udesk's and
   * Sobot's own consoles are the parents, not the assistant frames, and are not matched.)
   */
  const DEFAULT_RULES = [
    { pattern: 'http://localhost/udesk/assistant*', platform: 'udesk', enabled: true },
    { pattern: 'http://localhost/sobot/assistant*', platform: 'sobot', enabled: true },
  ];
  const PLATFORMS = new Set(['udesk', 'sobot', 'wechat-dkf']);
  const OPEN_KEY = { key: 'q', altKey: true, shiftKey: true };

  function globToRe(glob) {
    return glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  }

  /** True when `url` (a URL) matches `pattern` (see SITE RULES above). */
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

  /** The first enabled rule matching this frame, or null. */
  function ruleForFrame(rules, loc, isTop) {
    if (isTop) return null;
    let url;
    try {
      url = new URL(loc.href);
    } catch {
      return null;
    }
    for (const r of rules) {
      if (!r || r.enabled === false || !PLATFORMS.has(r.platform)) continue;
      if (ruleMatches(r.pattern, url)) return r;
    }
    return null;
  }

  async function loadRules() {
    let user = [];
    try {
      const got = await api.storage.local.get('siteRules');
      if (Array.isArray(got?.siteRules)) user = got.siteRules;
    } catch {
      // storage unavailable: the defaults still apply
    }
    return [...user, ...DEFAULT_RULES];
  }

  const isTop = window.top === window;
  if (isTop) return;
  // One instance per document, even if the script is injected twice (static + registered).
  if (globalThis.__quiverContentScript) return;
  globalThis.__quiverContentScript = true;

  loadRules().then((rules) => {
    const rule = ruleForFrame(rules, location, isTop);
    if (rule) start(rule);
  });

  function start(rule) {
    const platform = rule.platform;
    document.documentElement.setAttribute('data-quiver-frame', platform);

    const token = crypto.randomUUID();
    const PANEL_SIZE = { width: 380, height: 520 };
    const panelUrl = api.runtime.getURL('panel.html');
    const panelOrigin = new URL(panelUrl).origin;

    // -------------------------------------------------------------------------------------------
    // UI: <div data-testid="quiver-root"> with an open shadow root. Styles are set through the
    // CSSOM (element.style), which no page CSP blocks, with !important so page CSS cannot move it.

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
    const shadow = root.attachShadow({ mode: 'open' });

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
    function setOpen(v) {
      open = v;
      frame.style.setProperty('display', open ? 'block' : 'none', 'important');
      launcher.setAttribute('aria-expanded', String(open));
      root.setAttribute('data-open', String(open));
    }
    /** Shows the palette and puts the caret in its search box. */
    function openAndFocus() {
      setOpen(true);
      frame.focus();
      // Only a focus request: whoever else posts it to the panel gains nothing.
      try {
        frame.contentWindow?.postMessage({ quiver: 'focus-search' }, panelOrigin);
      } catch {
        // not loaded yet: the panel focuses its search when it loads
      }
    }
    launcher.addEventListener('click', () => {
      if (open) setOpen(false);
      else openAndFocus();
    });
    setOpen(true);

    shadow.append(frame, launcher);
    (document.body ?? document.documentElement).append(root);

    window.addEventListener(
      'keydown',
      (e) => {
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

    const selected = [];
    const MAX_SELECTED = 20;
    function contextMessage() {
      return { type: 'context', url: location.href, selected: selected.slice() };
    }
    if (platform === 'sobot') {
      window.addEventListener('message', (e) => {
        if (e.source !== window.parent) return;
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

    let port = null;
    let retry = 100;
    let stopped = false;

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

    function onMessage(p, msg) {
      if (msg?.type === 'open') {
        openAndFocus();
        return;
      }
      if (msg?.type !== 'post') return;
      let reply;
      try {
        if (msg.post_as !== 'string' && msg.post_as !== 'object') {
          throw new Error(`this frame delivers by postMessage only, not as ${msg.post_as}`);
        }
        const data = msg.post_as === 'string' ? String(msg.wire) : JSON.parse(msg.wire);
        window.parent.postMessage(data, '*');
        reply = { type: 'posted', send_id: msg.send_id, ok: true };
      } catch (e) {
        reply = { type: 'posted', send_id: msg.send_id, ok: false, error: String(e?.message ?? e) };
      }
      try {
        p.postMessage(reply);
      } catch {
        // The port went away; the background treats the outcome as unknown.
      }
    }

    // A page restored from the back/forward cache had its port closed: connect again.
    window.addEventListener('pageshow', () => connect());
    connect();
  }
})();
