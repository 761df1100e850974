// Hermetic browser + native host + daemon sessions for the end-to-end suite.
//
// Each session gets a fresh temp dir holding its own HOME, XDG_DATA_HOME, XDG_CONFIG_HOME,
// XDG_CACHE_HOME, XDG_RUNTIME_DIR (mode 0700), TMPDIR and browser profile. The browser process is
// started with that environment, so the native host it spawns, and the daemon the host starts,
// use the session's own SQLite file and socket and never touch the user's.
//
// Browsers are driven with puppeteer-core only (no browser download):
// - Chromium (`/usr/lib/chromium/chromium`) over CDP with `pipe: true`. The extension is loaded at
//   startup with `--load-extension` + `--disable-extensions-except` (Debian's Chromium still honours
//   them). We pass `enableExtensions: true` rather than a list of paths: with a list, puppeteer-core
//   24.x installs through CDP `Extensions.loadUnpacked` without awaiting it (`Promise.all([paths.map(..)])`
//   in BrowserLauncher.js), which races with the first page.
// - Firefox ESR (`/usr/lib/firefox-esr/firefox-esr`) over WebDriver BiDi (`browser: 'firefox'`), then
//   `browser.installExtension(dir)` (a temporary add-on; it keeps the Gecko id from the manifest,
//   which the native host manifest's `allowed_extensions` names).
//   `privacy.reduceTimerPrecision` is turned off so performance.now() in the pages is not rounded.
//
// Native host registration uses the real binary: `quiver install --browser chromium --user-data-dir
// <profile>` (Chromium reads <profile>/NativeMessagingHosts/) or `quiver install --browser firefox`
// with HOME set to the session's HOME (Firefox reads $HOME/.mozilla/native-messaging-hosts/).

import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';
import { startServer } from './server.mjs';

const execFileP = promisify(execFile);

export const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_ROOT = path.resolve(E2E_DIR, '..', '..');
export const ARTIFACTS_DIR = path.join(E2E_DIR, 'artifacts');

export const BROWSERS = {
  chromium: '/usr/lib/chromium/chromium',
  firefox: '/usr/lib/firefox-esr/firefox-esr',
};

/** Flags for a quiet headless Chromium as root on a closed network (toolchain.md §2). */
export const CHROMIUM_ARGS = [
  // Chromium refuses to run as root with its sandbox; a normal user keeps it.
  ...(process.getuid?.() === 0 ? ['--no-sandbox'] : []),
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--disable-sync',
  '--disable-default-apps',
];

/** Firefox prefs: exact timers in pages, no network chatter, no first-run pages. */
export const FIREFOX_PREFS = {
  'privacy.reduceTimerPrecision': false,
  'app.update.enabled': false,
  'browser.shell.checkDefaultBrowser': false,
  'datareporting.policy.dataSubmissionEnabled': false,
  'extensions.update.enabled': false,
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
};

export const VIEWPORT = { width: 1280, height: 800 };

/** Settings from the environment (set by `cargo xtask test`), with defaults for `npm test`. */
export function config() {
  const browser = process.env.QUIVER_BROWSER || 'chromium';
  if (!(browser in BROWSERS)) {
    throw new Error(`QUIVER_BROWSER must be one of ${Object.keys(BROWSERS).join(', ')}, got ${browser}`);
  }
  const quiverBin = path.resolve(process.env.QUIVER_BIN || path.join(REPO_ROOT, 'target/debug/quiver'));
  // The development build (`cargo xtask build-extension --dev`): demo site rules, open shadow root.
  const extensionDir = path.resolve(process.env.QUIVER_EXTENSION_DIR || path.join(REPO_ROOT, 'target/extension-dev'));
  for (const [what, p] of [['QUIVER_BIN', quiverBin], ['QUIVER_EXTENSION_DIR', extensionDir], [browser, BROWSERS[browser]]]) {
    if (!fs.existsSync(p)) throw new Error(`${what}: ${p} does not exist (run \`cargo xtask build\` / \`cargo xtask deps\`)`);
  }
  return { browser, quiverBin, extensionDir, executablePath: BROWSERS[browser] };
}

/** Runs `quiver install` for this browser and profile, with the given environment. */
export async function registerHost({ quiverBin, browser, profileDir, env }) {
  const args = browser === 'chromium'
    ? ['install', '--browser', 'chromium', '--user-data-dir', profileDir]
    : ['install', '--browser', 'firefox'];
  try {
    const { stdout, stderr } = await execFileP(quiverBin, args, { env, timeout: 30_000 });
    return `${stdout}${stderr}`.trim();
  } catch (err) {
    throw new Error(`\`quiver ${args.join(' ')}\` failed: ${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}`);
  }
}

/**
 * Launches a browser with the extension loaded.
 * Returns the puppeteer Browser. `env` is the environment of the browser process (and so of
 * the native host and the daemon it starts).
 */
export async function launchBrowser({
  browser, executablePath, extensionDir, profileDir, env, headless = true, defaultViewport = VIEWPORT,
  locale = null,
}) {
  if (browser === 'chromium') {
    return puppeteer.launch({
      executablePath,
      headless,
      pipe: true, // needed for extension support in puppeteer (and faster than a websocket)
      enableExtensions: true,
      userDataDir: profileDir,
      env,
      defaultViewport,
      args: [
        ...CHROMIUM_ARGS,
        `--window-size=${VIEWPORT.width},${VIEWPORT.height}`,
        `--disable-extensions-except=${extensionDir}`,
        `--load-extension=${extensionDir}`,
        // UI language (extension pages follow it through chrome.i18n).
        ...(locale ? [`--lang=${locale}`] : []),
      ],
      timeout: 60_000,
      protocolTimeout: 60_000,
    });
  }
  const b = await puppeteer.launch({
    browser: 'firefox',
    executablePath,
    headless,
    userDataDir: profileDir,
    env,
    defaultViewport,
    // A UI language other than en-US needs its language pack (Debian: firefox-esr-l10n-*).
    extraPrefsFirefox: locale ? { ...FIREFOX_PREFS, 'intl.locale.requested': locale } : FIREFOX_PREFS,
    timeout: 60_000,
    protocolTimeout: 60_000,
  });
  try {
    await b.installExtension(extensionDir);
  } catch (err) {
    await b.close().catch(() => {});
    throw new Error(`Firefox refused to install the extension from ${extensionDir}: ${err.message}`);
  }
  return b;
}

/** Pids of processes (not us) whose environment has XDG_RUNTIME_DIR=<runtimeDir>. */
export function processesWithRuntimeDir(runtimeDir) {
  const needle = Buffer.from(`XDG_RUNTIME_DIR=${runtimeDir}\0`);
  const pids = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    let environ;
    try {
      environ = fs.readFileSync(`/proc/${pid}/environ`);
    } catch {
      continue; // gone, or not ours
    }
    if (environ.includes(needle)) pids.push(pid);
  }
  return pids;
}

function alive(pid) {
  try {
    process.kill(pid, 0);
    // A zombie still answers kill(0); treat it as gone.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

/** SIGTERM the pids, wait up to `graceMs`, then SIGKILL what is left. */
export async function terminate(pids, graceMs = 3000) {
  for (const pid of pids) {
    try { process.kill(pid, 'SIGTERM'); } catch { /* already gone */ }
  }
  const deadline = Date.now() + graceMs;
  while (pids.some(alive) && Date.now() < deadline) await sleep(50);
  for (const pid of pids.filter(alive)) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Creates the session's directories and environment. `root` is a fresh temp dir.
 * The daemon's data lands in <dataHome>/quiver (quiver.db, logs/), its socket in <runtimeDir>/quiver.
 */
export async function makeHermeticEnv(prefix = 'quiver-e2e-') {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  const dirs = {
    root,
    home: path.join(root, 'home'),
    dataHome: path.join(root, 'data'),
    configHome: path.join(root, 'config'),
    cacheHome: path.join(root, 'cache'),
    runtimeDir: path.join(root, 'run'),
    tmp: path.join(root, 'tmp'),
    profile: path.join(root, 'profile'),
  };
  for (const d of Object.values(dirs)) await fsp.mkdir(d, { recursive: true });
  await fsp.chmod(dirs.runtimeDir, 0o700);
  const env = { ...process.env };
  // Variables that would point the daemon or the browsers elsewhere.
  for (const k of ['QUIVER_DATA_DIR', 'QUIVER_RUNTIME_DIR', 'DBUS_SESSION_BUS_ADDRESS', 'MOZ_PROFILE', 'CHROME_USER_DATA_DIR']) delete env[k];
  Object.assign(env, {
    HOME: dirs.home,
    XDG_DATA_HOME: dirs.dataHome,
    XDG_CONFIG_HOME: dirs.configHome,
    XDG_CACHE_HOME: dirs.cacheHome,
    XDG_RUNTIME_DIR: dirs.runtimeDir,
    TMPDIR: dirs.tmp,
    RUST_LOG: process.env.RUST_LOG || 'debug',
  });
  return {
    dirs,
    env,
    dataDir: path.join(dirs.dataHome, 'quiver'),
    dbPath: path.join(dirs.dataHome, 'quiver', 'quiver.db'),
  };
}

// Sessions not yet closed. If the runner is interrupted (Ctrl+C, or node --test killing a test
// file), a synchronous cleanup still stops their native hosts and daemons and removes their
// temp dirs; puppeteer's own SIGINT/SIGTERM/SIGHUP handlers kill the browsers.
const openSessions = new Set();
let signalHandlersInstalled = false;

function cleanupOnSignal(signal) {
  for (const s of openSessions) {
    for (const pid of processesWithRuntimeDir(s.dirs.runtimeDir)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    try { fs.rmSync(s.dirs.root, { recursive: true, force: true }); } catch { /* best effort */ }
  }
  process.exit(signal === 'SIGINT' ? 130 : 143);
}

function installSignalHandlers() {
  if (signalHandlersInstalled) return;
  signalHandlersInstalled = true;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.once(sig, () => cleanupOnSignal(sig));
}

/**
 * Removes session dirs left in the temp dir by runs that were killed outright (SIGKILL), once
 * no process uses them any more and they are over an hour old (a concurrent run's dirs are safe).
 */
function sweepStaleSessions() {
  const tmp = os.tmpdir();
  let names;
  try { names = fs.readdirSync(tmp); } catch { return; }
  for (const name of names.filter((n) => n.startsWith('quiver-e2e-'))) {
    const dir = path.join(tmp, name);
    try {
      if (Date.now() - fs.statSync(dir).mtimeMs < 3600_000) continue;
      if (processesWithRuntimeDir(path.join(dir, 'run')).length) continue;
      fs.rmSync(dir, { recursive: true, force: true });
    } catch { /* not ours to touch, or gone */ }
  }
}

/**
 * Starts a hermetic session: temp dirs, host registration, browser with the extension.
 * Always pair with `session.close()` in a `finally`.
 */
export async function startSession(opts = {}) {
  const cfg = { ...config(), ...opts };
  installSignalHandlers();
  sweepStaleSessions();
  const hermetic = await makeHermeticEnv();
  // Chromium on Linux takes its UI language from the environment as well as --lang.
  if (opts.locale) Object.assign(hermetic.env, { LANGUAGE: opts.locale.replace('-', '_'), LANG: `${opts.locale.replace('-', '_')}.UTF-8` });
  const session = {
    ...hermetic,
    cfg,
    browser: null,
    logs: [],
    log(line) { session.logs.push(`[${new Date().toISOString()}] ${line}`); },
    async close(testContext) { await closeSession(session, testContext); },
  };
  openSessions.add(session);
  try {
    const out = await registerHost({ quiverBin: cfg.quiverBin, browser: cfg.browser, profileDir: hermetic.dirs.profile, env: hermetic.env });
    session.log(`quiver install: ${out}`);
    session.browser = await launchBrowser({
      browser: cfg.browser,
      executablePath: cfg.executablePath,
      extensionDir: cfg.extensionDir,
      profileDir: hermetic.dirs.profile,
      env: hermetic.env,
      headless: opts.headless ?? true,
      locale: opts.locale ?? null,
    });
    session.log(`launched ${cfg.browser} ${await session.browser.version()}`);
    if (cfg.browser === 'chromium') logServiceWorkers(session);
  } catch (err) {
    await closeSession(session);
    throw err;
  }
  return session;
}

/**
 * Chromium: records the extension background's (service worker's) console in the session log,
 * from the moment puppeteer sees the worker. (Firefox's background page is not reachable over
 * BiDi; its errors show in the daemon/host logs only when they reach the host.)
 */
function logServiceWorkers(session) {
  const attach = async (target) => {
    if (target.type() !== 'service_worker') return;
    const worker = await target.worker().catch(() => null);
    worker?.on('console', (msg) => session.log(`background console.${msg.type()} ${msg.text()}`));
  };
  session.browser.on('targetcreated', attach);
  for (const t of session.browser.targets()) attach(t);
}

/** Opens a page (a new tab) and records its console output in the session log. */
export async function newPage(session) {
  const page = await session.browser.newPage();
  page.on('console', (msg) => session.log(`console.${msg.type()} ${msg.text()}`));
  page.on('pageerror', (err) => session.log(`pageerror ${err.message}`));
  return page;
}

/**
 * Closes the browser, stops every process that still carries the session's XDG_RUNTIME_DIR
 * (the native host and the daemon it started), and removes the temp dir.
 * When `failed` is true the daemon logs and the session log are copied to artifacts/ first.
 */
async function closeSession(session, { failed = false, name = 'session' } = {}) {
  const { dirs } = session;
  if (session.browser) {
    let timer;
    await Promise.race([
      session.browser.close().catch(() => {}),
      new Promise((r) => { timer = setTimeout(r, 10_000); }),
    ]);
    clearTimeout(timer);
    // If close() hung, make sure the browser process is gone.
    const proc = session.browser.process?.();
    if (proc && proc.exitCode === null) {
      try { proc.kill('SIGKILL'); } catch { /* gone */ }
    }
    session.browser = null;
  }
  // The daemon outlives the browser by design (one per user): stop it the documented way
  // (`quiver daemon --stop`, with the session's environment so it finds the session's socket),
  // then SIGTERM whatever still carries the session's XDG_RUNTIME_DIR (a native host that did
  // not exit, or a daemon that did not answer).
  try {
    const { stdout, stderr } = await execFileP(session.cfg.quiverBin, ['daemon', '--stop'], { env: session.env, timeout: 15_000 });
    session.log(`quiver daemon --stop: ${`${stdout}${stderr}`.trim()}`);
  } catch (err) {
    session.log(`quiver daemon --stop failed: ${err.message} ${err.stderr ?? ''}`);
  }
  const leftover = processesWithRuntimeDir(dirs.runtimeDir);
  if (leftover.length) session.log(`terminating leftover processes: ${leftover.join(' ')}`);
  await terminate(leftover);
  openSessions.delete(session);
  if (failed) await saveArtifacts(session, name).catch((err) => console.error(`saving artifacts: ${err.message}`));
  if (!process.env.QUIVER_E2E_KEEP) {
    await fsp.rm(dirs.root, { recursive: true, force: true, maxRetries: 3 });
  } else {
    console.error(`kept session dir ${dirs.root}`);
  }
}

async function saveArtifacts(session, name) {
  const dest = path.join(ARTIFACTS_DIR, `${session.cfg.browser}-${name.replace(/[^\w.-]+/g, '_')}`);
  await fsp.mkdir(dest, { recursive: true });
  await fsp.writeFile(path.join(dest, 'session.log'), session.logs.join('\n') + '\n');
  const logsDir = path.join(session.dataDir, 'logs');
  if (fs.existsSync(logsDir)) await fsp.cp(logsDir, path.join(dest, 'daemon-logs'), { recursive: true });
  console.error(`artifacts saved in ${dest}`);
}

// ---------------------------------------------------------------------------------------------
// Page helpers shared by the tests and run-demo.mjs.

/** Opens the demo workspace page (e.g. 'udesk/workspace.html') in a new tab. */
export async function openWorkspace(session, server, pagePath = 'udesk/workspace.html') {
  const page = await newPage(session);
  await page.goto(server.url(pagePath), { waitUntil: 'load' });
  return page;
}

const PANEL_URL = /^(chrome|moz)-extension:\/\/[^/]+\/.*panel\.html/;

/** The frame's real URL. */
async function frameHref(frame) {
  const url = frame.url();
  if (url && url !== 'about:blank') return url;
  // Firefox over BiDi (puppeteer-core 24.x, Firefox ESR 153): a moz-extension:// iframe keeps
  // reporting `about:blank` from frame.url() (no navigation event reaches puppeteer for it),
  // but scripts can still be evaluated in it, so ask the frame itself.
  try {
    return await frame.evaluate(() => location.href);
  } catch {
    return url;
  }
}

/** Waits until the extension's panel frame shows up among the page's frames. */
export async function findPanelFrame(page, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const f of page.frames()) {
      if (PANEL_URL.test(await frameHref(f))) return f;
    }
    if (Date.now() > deadline) {
      throw new Error(`no extension panel frame (panel.html) after ${timeoutMs} ms; frames: ${page.frames().map((f) => f.url()).join(', ')}`);
    }
    await sleep(100);
  }
}

/** Finds the assistant frame (the cross-origin iframe on localhost). */
export function assistantFrame(page, server) {
  return page.frames().find((f) => f.url().startsWith(`${server.assistantOrigin}/`));
}

export const sel = {
  root: '[data-testid="quiver-root"]',
  launcher: '[data-testid="quiver-launcher"]',
  panelFrame: '[data-testid="quiver-panel-frame"]',
  palette: '[data-testid="quiver-palette"]',
  status: '[data-testid="quiver-daemon-status"]',
  statusUp: '[data-testid="quiver-daemon-status"][data-state="up"]',
  search: '[data-testid="quiver-search"]',
  template: (id) => `[data-testid="quiver-template"][data-template-id="${id}"]`,
  send: '[data-testid="quiver-send"]',
};

/** Waits for the panel: daemon status `up` and the template entry `templateId` present. */
export async function waitForPanelReady(panel, templateId = 'greeting', timeoutMs = 30_000) {
  try {
    await panel.waitForSelector(sel.statusUp, { timeout: timeoutMs });
  } catch (err) {
    const state = await panel.$eval(sel.status, (e) => `data-state=${e.getAttribute('data-state')} text=${e.textContent.trim()}`).catch(() => 'status element missing');
    throw new Error(`daemon status never became "up" in the panel (${state}): ${err.message}`);
  }
  await panel.waitForSelector(sel.template(templateId), { timeout: timeoutMs });
}

/** Clicks a template entry in the panel (this sends it). */
export async function clickTemplate(panel, templateId) {
  const handle = await panel.waitForSelector(sel.template(templateId), { timeout: 10_000 });
  await handle.click();
  await handle.dispose();
}

/** Messages the workspace page has received so far (see pages/udesk/workspace.js). */
export function received(page) {
  return page.evaluate(() => window.__quiverReceived);
}

/** Waits until the workspace page has received at least `n` messages; returns them. */
export async function waitForReceived(page, n, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const msgs = await received(page);
    if (msgs.length >= n) return msgs;
    if (Date.now() > deadline) {
      throw new Error(`workspace received ${msgs.length} message(s), expected ${n}, within ${timeoutMs} ms: ${JSON.stringify(msgs)}`);
    }
    await sleep(50);
  }
}

/**
 * Runs `fn(session)` in a fresh hermetic session and always cleans up. On failure a screenshot
 * of the first page, the daemon logs and the console log are saved under artifacts/.
 */
export async function withSession(name, fn, opts = {}) {
  const session = await startSession(opts);
  let failed = false;
  try {
    return await fn(session);
  } catch (err) {
    failed = true;
    try {
      const pages = await session.browser?.pages();
      const page = pages?.find((p) => p.url().startsWith('http'));
      if (page) {
        await fsp.mkdir(ARTIFACTS_DIR, { recursive: true });
        const file = path.join(ARTIFACTS_DIR, `${session.cfg.browser}-${name.replace(/[^\w.-]+/g, '_')}.png`);
        await page.screenshot({ path: file });
        console.error(`screenshot saved: ${file}`);
      }
    } catch { /* best effort */ }
    throw err;
  } finally {
    await session.close({ failed, name });
  }
}

/**
 * Polls `fn` (evaluated in `frame`) until it returns a truthy value; returns that value.
 * (A plain evaluate loop rather than frame.waitForFunction, which behaves the same over CDP and
 * BiDi, including in the moz-extension panel frame.)
 */
export async function pollFrame(frame, what, fn, arg, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await frame.evaluate(fn, arg);
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * Installs a recorder in the panel frame that keeps, for each `quiver-send` entry, the sequence
 * of `data-send-state` values it went through (read back with `sendHistories`). It uses a
 * MutationObserver with attributeOldValue, so states that last less than one task are seen too.
 */
export async function recordSendStates(panel) {
  await panel.evaluate((SEL) => {
    const hist = new Map();
    const order = [];
    const note = (el, state) => {
      if (!hist.has(el)) { hist.set(el, []); order.push(el); }
      const h = hist.get(el);
      if (state !== null && h[h.length - 1] !== state) h.push(state);
    };
    const sweep = () => { for (const el of order) note(el, el.getAttribute('data-send-state')); };
    for (const el of document.querySelectorAll(SEL)) note(el, null);
    sweep();
    new MutationObserver((records) => {
      for (const r of records) {
        if (r.type === 'attributes') {
          if (r.target.matches(SEL)) note(r.target, r.oldValue); // the state before this change
        } else {
          for (const n of r.addedNodes) {
            if (n.nodeType !== 1) continue;
            if (n.matches(SEL)) note(n, null);
            for (const el of n.querySelectorAll(SEL)) note(el, null);
          }
        }
      }
      sweep(); // and the state now
    }).observe(document, {
      subtree: true, childList: true, attributes: true,
      attributeFilter: ['data-send-state'], attributeOldValue: true,
    });
    window.__quiverSendHistories = () => order.map((el) => ({
      states: hist.get(el).slice(),
      text: el.textContent.trim().slice(0, 200),
      connected: el.isConnected,
    }));
  }, sel.send);
}

/** What `recordSendStates` saw: [{ states: ['queued', 'sending', 'sent'], text, connected }]. */
export function sendHistories(panel) {
  return panel.evaluate(() => window.__quiverSendHistories());
}

/** Waits until the panel shows `n` send entries, all in state `state`. */
export function waitForSendStates(panel, n, state = 'sent', timeoutMs = 30_000) {
  return pollFrame(panel, `${n} send entries in state "${state}"`, ([SEL, n, state]) => {
    const els = [...document.querySelectorAll(SEL)];
    return els.length >= n && els.every((e) => e.getAttribute('data-send-state') === state)
      ? els.map((e) => e.getAttribute('data-send-state'))
      : null;
  }, [sel.send, n, state], timeoutMs);
}

/**
 * The common start of every test: serve the demo pages, start a hermetic session, open the
 * workspace page and wait for the panel to be ready (daemon up, `greeting` listed).
 */
export async function withWorkspace(name, pagePath, fn) {
  const server = await startServer();
  try {
    return await withSession(name, async (session) => {
      const page = await openWorkspace(session, server, pagePath);
      const panel = await findPanelFrame(page);
      await waitForPanelReady(panel);
      return await fn({ session, server, page, panel });
    });
  } finally {
    await server.close();
  }
}

/**
 * The agent's shortcut with real input: a click in the assistant frame `frame` (on its `h1`, so
 * the frame has focus), then Alt+Shift+Q typed on `page`'s keyboard.
 */
export async function pressOpenShortcut(page, frame) {
  await frame.click('h1');
  await page.keyboard.down('Alt');
  await page.keyboard.down('Shift');
  await page.keyboard.press('KeyQ');
  await page.keyboard.up('Shift');
  await page.keyboard.up('Alt');
}

/**
 * Clicks the launcher in the assistant frame `frame` with real input (CDP / WebDriver BiDi):
 * the content script ignores synthetic (untrusted) clicks. The development build's open shadow
 * root lets the test find it.
 */
export async function clickLauncher(frame) {
  const handle = await frame.evaluateHandle((S) => document.querySelector(S).shadowRoot.querySelector('[data-testid="quiver-launcher"]'), sel.root);
  try {
    await handle.asElement().click();
  } finally {
    await handle.dispose();
  }
}
