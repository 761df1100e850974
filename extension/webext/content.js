/*
 * Quiver content script. Runs in every frame of the matched pages; does something only in an
 * assistant frame (see platformForFrame). There it shows the launcher and the panel iframe (an
 * extension page: the palette and the wasm core live there, under the extension's CSP), and posts
 * the payloads the background hands it to the workspace: window.parent.postMessage(...).
 *
 * Plain JS on purpose, no wasm (Chromium compiles a content script's wasm under the page's CSP).
 * It holds no templates or library data; the page can reach neither the panel nor the background.
 */
(() => {
  'use strict';

  const api = globalThis.browser ?? globalThis.chrome;

  /**
   * The platform whose assistant runs in this frame, or null.
   * For now: a frame that is not the top frame and whose path contains `/udesk/assistant`.
   * (To be replaced by site settings.)
   */
  function platformForFrame(loc, isTop = window.top === window) {
    if (isTop) return null;
    if (loc.protocol !== 'http:' && loc.protocol !== 'https:') return null;
    return loc.pathname.includes('/udesk/assistant') ? 'udesk' : null;
  }

  const platform = platformForFrame(location);
  if (!platform) return;
  // One instance per document, even if the script is injected twice.
  if (document.documentElement.hasAttribute('data-quiver-frame')) return;
  document.documentElement.setAttribute('data-quiver-frame', platform);

  const token = crypto.randomUUID();
  const PANEL_SIZE = { width: 360, height: 420 };

  // ---------------------------------------------------------------------------------------------
  // UI: <div data-testid="quiver-root"> with an open shadow root. Styles are set through the CSSOM
  // (element.style), which no page CSP blocks, with !important so page CSS cannot move the host.

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
  frame.src = `${api.runtime.getURL('panel.html')}#${token}&platform=${encodeURIComponent(platform)}`;
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
  launcher.setAttribute('aria-label', 'Quiver');
  launcher.setAttribute('aria-expanded', 'true');
  launcher.setAttribute('title', 'Quiver templates');
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
  launcher.addEventListener('click', () => {
    open = !open;
    frame.style.setProperty('display', open ? 'block' : 'none', 'important');
    launcher.setAttribute('aria-expanded', String(open));
  });

  shadow.append(frame, launcher);
  (document.body ?? document.documentElement).append(root);

  // ---------------------------------------------------------------------------------------------
  // Background connection: reconnects with the same token if the background restarts.

  let port = null;
  let retry = 100;
  let stopped = false;

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
  }

  function onMessage(p, msg) {
    if (msg?.type !== 'post') return;
    let reply;
    try {
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
})();
