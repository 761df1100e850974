// Helpers for the extension's own pages (options.html, popup.html) in both browsers.
//
// Base URL of the extension:
// - Chromium: fixed, `chrome-extension://lohhppipbmnliinhpikegpolikiblpfg/` (the manifest's `key`).
// - Firefox: `moz-extension://<uuid>/`, where <uuid> is chosen per profile at install time.
//   Firefox records it in the pref `extensions.webextensions.uuids` ({"quiver@quiver.dev": uuid}),
//   which it writes to <profile>/prefs.js shortly after the install (an asynchronous save of
//   changed prefs). We poll prefs.js for it; if it does not show up, we fall back to opening the
//   demo workspace and reading `location.origin` inside the panel frame (an extension page).
//   WebDriver BiDi will not navigate a tab to a moz-extension:// URL, though: see openExtensionPage.
import fs from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { newPage, findPanelFrame, sleep, ARTIFACTS_DIR, VIEWPORT } from './harness.mjs';
import { startServer } from './server.mjs';

const execFileP = promisify(execFile);
export const CHROMIUM_ID = 'lohhppipbmnliinhpikegpolikiblpfg';
export const GECKO_ID = 'quiver@quiver.dev';
export const SCREENSHOTS_DIR = path.join(ARTIFACTS_DIR, 'screenshots');

function uuidFromPrefs(profileDir) {
  let text;
  try {
    text = fs.readFileSync(path.join(profileDir, 'prefs.js'), 'utf8');
  } catch {
    return null;
  }
  const m = /user_pref\("extensions\.webextensions\.uuids",\s*"((?:[^"\\]|\\.)*)"\);/.exec(text);
  if (!m) return null;
  try {
    const map = JSON.parse(JSON.parse(`"${m[1]}"`));
    return map[GECKO_ID] ?? null;
  } catch {
    return null;
  }
}

/** `chrome-extension://<id>/` or `moz-extension://<uuid>/`. */
export async function extensionBase(session) {
  if (session.cfg.browser === 'chromium') return `chrome-extension://${CHROMIUM_ID}/`;
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const uuid = uuidFromPrefs(session.dirs.profile);
    if (uuid) return `moz-extension://${uuid}/`;
    await sleep(200);
  }
  session.log('extension uuid not in prefs.js; finding it through the panel frame');
  const server = await startServer();
  try {
    const page = await newPage(session);
    await page.goto(server.url('udesk/workspace.html'), { waitUntil: 'load' });
    const panel = await findPanelFrame(page);
    const origin = await panel.evaluate(() => location.origin);
    await page.close();
    return `${origin}/`;
  } finally {
    await server.close();
  }
}

/**
 * Opens an extension page (`options.html#...`) in a new tab and returns its puppeteer Page.
 * Chromium: a plain navigation to chrome-extension://<id>/options.html.
 * Firefox: WebDriver BiDi refuses to navigate a tab to a moz-extension:// URL ("not allowed in
 * this context"), so an extension page already open — the panel frame in the demo workspace —
 * opens it with `window.open` (that frame has neither `tabs.create` nor `runtime.openOptionsPage`
 * in Firefox; BiDi's script evaluation counts as a user activation, so no popup blocking), we
 * pick the new tab up, and set the hash (options.js follows hash changes).
 */
export async function openExtensionPage(session, file) {
  if (session.cfg.browser === 'chromium') {
    const page = await newPage(session);
    await page.goto(`${await extensionBase(session)}${file}`, { waitUntil: 'load' });
    return page;
  }
  const server = await startServer();
  try {
    const ws = await newPage(session);
    await ws.goto(server.url('udesk/workspace.html'), { waitUntil: 'load' });
    const panel = await findPanelFrame(ws);
    const before = new Set(await session.browser.pages());
    await panel.evaluate((f) => { window.open(browser.runtime.getURL(f), '_blank'); }, file.replace(/#.*/, ''));
    const deadline = Date.now() + 15_000;
    let page = null;
    while (!page) {
      for (const p of await session.browser.pages()) {
        if (before.has(p)) continue;
        const href = await p.evaluate(() => location.href).catch(() => '');
        if (href.startsWith('moz-extension://') && href.includes(file.replace(/#.*/, ''))) page = p;
      }
      if (!page) {
        if (Date.now() > deadline) throw new Error(`the extension page ${file} did not open`);
        await sleep(100);
      }
    }
    await ws.close();
    page.on('console', (msg) => session.log(`console.${msg.type()} ${msg.text()}`));
    page.on('pageerror', (err) => session.log(`pageerror ${err.message}`));
    const hash = file.replace(/^[^#]*/, '');
    if (hash) await page.evaluate((h) => { location.hash = h; }, hash);
    await page.setViewport(VIEWPORT);
    await page.bringToFront();
    return page;
  } finally {
    await server.close();
  }
}

/** Opens options.html in a new tab and waits for the daemon and the wasm core. */
export async function openOptions(session, hash = '') {
  const page = await openExtensionPage(session, `options.html${hash}`);
  await page.waitForSelector('[data-testid="quiver-options-status"][data-state="up"]', { timeout: 30_000 });
  await page.waitForSelector('[data-testid="quiver-options"][data-core="ready"]', { timeout: 30_000 });
  await page.waitForSelector('[data-testid="quiver-lib-item"]', { timeout: 30_000 });
  return page;
}

/** `quiver templates list --format json` with the session's environment (its own daemon). */
export async function cliTemplates(session) {
  const { stdout } = await execFileP(session.cfg.quiverBin, ['templates', 'list', '--format', 'json'], { env: session.env, timeout: 30_000 });
  return JSON.parse(stdout);
}

/** Rows of the daemon's SQLite `templates` table, read-only, with the sqlite3 CLI. */
export async function sqlite(session, sql) {
  const { stdout } = await execFileP('sqlite3', ['-readonly', '-json', `file:${session.dbPath}?mode=ro`, sql], { timeout: 30_000 });
  return stdout.trim() ? JSON.parse(stdout) : [];
}

/** Sets an input's or textarea's value the way typing would (input event). */
export async function setValue(page, selector, value) {
  await page.$eval(selector, (el, v) => {
    el.value = v;
    el.dispatchEvent(new Event('input', { bubbles: true }));
  }, value);
}

/** Waits until `fn(arg)` evaluated in the page is truthy; returns it. */
export async function until(page, what, fn, arg, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await page.evaluate(fn, arg);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

export async function screenshot(page, name) {
  await fs.promises.mkdir(SCREENSHOTS_DIR, { recursive: true });
  const file = path.join(SCREENSHOTS_DIR, name);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
