// The production build (target/extension/, what ships): no demo host, no built-in rule, a closed
// shadow root; Quiver serves only where a user's site rule (with its workspace origins) says so.
// - As built: the demo workspace on 127.0.0.1/localhost gets no content script and no panel.
// - With host access to the demo hosts granted (a copy of the build with those host permissions,
//   as a user granting them would) and a user rule `http://localhost/udesk/assistant*` inside
//   `http://127.0.0.1`: the background registers the content script, the frame is served with a
//   closed shadow root, and a click sends the exact payload.
import test from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {
  config, withSession, openWorkspace, findPanelFrame, waitForPanelReady, clickTemplate, waitForReceived,
  assistantFrame, sel, sleep, newPage, REPO_ROOT,
} from '../lib/harness.mjs';
import { startServer } from '../lib/server.mjs';
import { openOptions, until, extensionBase } from '../lib/extension-pages.mjs';
import { GREETING_ID, GREETING_PAYLOAD } from '../lib/expected.mjs';

const { browser } = config();
const PROD_DIR = path.resolve(process.env.QUIVER_PROD_EXTENSION_DIR || path.join(REPO_ROOT, 'target/extension'));

async function assistantOf(page, server) {
  for (let i = 0; i < 300; i++) {
    const f = assistantFrame(page, server);
    if (f) return f;
    await sleep(50);
  }
  throw new Error('no assistant frame');
}

/**
 * A frame (or page) running as an extension page, to set storage.local as the options page does.
 * Chromium: the options page. Firefox: WebDriver BiDi cannot open moz-extension:// pages, and
 * openOptions goes through the demo workspace's panel, which the production build does not show:
 * embed panel.html (web-accessible) in a plain page instead; it pairs with nothing, but its
 * extension APIs work.
 */
async function extensionContext(session, server) {
  if (browser === 'chromium') return openOptions(session, '#sites');
  const base = await extensionBase(session);
  const page = await newPage(session);
  await page.goto(`${server.hostileOrigin}/hostile/index.html`, { waitUntil: 'load' });
  await page.evaluate((url) => {
    const f = document.createElement('iframe');
    f.src = url;
    document.body.append(f);
  }, `${base}panel.html`);
  return findPanelFrame(page);
}

test(`[${browser}] production build: no demo host; a user rule with its workspace serves the frame, shadow root closed`, { timeout: 180_000 }, async () => {
  const manifest = JSON.parse(await fsp.readFile(path.join(PROD_DIR, 'manifest.json'), 'utf8'));
  assert.equal(JSON.stringify(manifest).match(/127\.0\.0\.1|localhost/), null, 'the production manifest names no demo host');
  assert.equal(manifest.content_scripts, undefined, 'no static content script');

  const server = await startServer();
  const granted = await fsp.mkdtemp(path.join(os.tmpdir(), 'quiver-e2e-prod-ext-'));
  try {
    // 1. As built: nothing runs on the demo pages.
    await withSession('production-as-built', async (session) => {
      const page = await openWorkspace(session, server);
      const assistant = await assistantOf(page, server);
      await assistant.waitForSelector('[data-testid="assistant-origin"]');
      await sleep(2_000); // the content script would have attached by now (document_idle)
      assert.equal(await assistant.evaluate(() => document.documentElement.hasAttribute('data-quiver-frame')), false);
      assert.equal(await assistant.evaluate((S) => document.querySelector(S) === null, sel.root), true);
    }, { extensionDir: PROD_DIR });

    // 2. Access granted to the demo hosts, and a user rule naming its workspace.
    await fsp.cp(PROD_DIR, granted, { recursive: true });
    const m = { ...manifest, host_permissions: ['http://127.0.0.1/*', 'http://localhost/*'] };
    await fsp.writeFile(path.join(granted, 'manifest.json'), JSON.stringify(m, null, 2));
    await withSession('production-user-rule', async (session) => {
      const options = await extensionContext(session, server);
      await options.evaluate(async () => {
        const api = globalThis.browser ?? chrome;
        await api.storage.local.set({ siteRules: [{ pattern: 'http://localhost/udesk/assistant*', platform: 'udesk', workspaces: ['http://127.0.0.1'], enabled: true }] });
      });
      if (browser === 'chromium') {
        const registered = await until(options, 'the content script registered for the rule', async () => {
          const [s] = await chrome.scripting.getRegisteredContentScripts({ ids: ['quiver-user-sites'] });
          return s ? JSON.stringify({ js: s.js, matches: [...s.matches].sort() }) : null;
        }, undefined, 20_000);
        assert.deepEqual(JSON.parse(registered), { js: ['build-config.js', 'content.js'], matches: ['http://127.0.0.1/*', 'http://localhost/*'] });
      }
      // (Firefox: an extension page framed in a web page has no `scripting`: the panel showing up
      // is the proof; reload in case the page loaded before the registration.)
      const page = await openWorkspace(session, server);
      let panel = null;
      for (let attempt = 0; !panel; attempt++) {
        panel = await findPanelFrame(page, 5_000).catch((err) => {
          if (attempt >= 4) throw err;
          return null;
        });
        if (!panel) await page.reload({ waitUntil: 'load' });
      }
      await waitForPanelReady(panel);
      const assistant = await assistantOf(page, server);
      const root = await assistant.evaluate((S) => {
        const el = document.querySelector(S);
        return el ? { shadowRoot: el.shadowRoot === null ? 'hidden' : 'visible' } : null;
      }, sel.root);
      assert.deepEqual(root, { shadowRoot: 'hidden' }, 'the shadow root is closed in production');
      await clickTemplate(panel, GREETING_ID);
      const [msg] = await waitForReceived(page, 1);
      assert.equal(msg.data, GREETING_PAYLOAD);
      assert.equal(msg.origin, server.assistantOrigin);
    }, { extensionDir: granted });
  } finally {
    await server.close();
    await fsp.rm(granted, { recursive: true, force: true });
  }
});
