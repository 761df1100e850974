// `cargo xtask run`: the demo Udesk workspace in a real browser with Quiver loaded.
//
//   node tests/e2e/run-demo.mjs [--browser chromium|firefox] [--headless]
//
// Unlike the test suite this is NOT hermetic: it runs as the user, with the real HOME. The
// browser profile lives in <data dir>/browser-profiles/<browser> (data dir: ~/.local/share/quiver
// unless QUIVER_DATA_DIR or XDG_DATA_HOME say otherwise), the native host is registered for that
// profile (Chromium) or for the user (Firefox, ~/.mozilla/native-messaging-hosts/), and the daemon
// the host starts keeps its SQLite file in the per-user data dir and keeps running after the demo
// (it is the user's daemon; `quiver daemon --stop` stops it).
//
// With a display: opens the workspace and waits until you close the browser.
// Without one (no DISPLAY / WAYLAND_DISPLAY), or with --headless: sends the `greeting` template
// once through the real path (click in the panel -> background -> native host -> daemon ->
// assistant frame -> workspace page), prints what the workspace received and saves a screenshot.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  BROWSERS, REPO_ROOT, config, registerHost, launchBrowser, findPanelFrame, waitForPanelReady,
  clickTemplate, waitForReceived, waitForSendStates,
} from './lib/harness.mjs';
import { startServer } from './lib/server.mjs';

const { values: opts } = parseArgs({
  options: {
    browser: { type: 'string', default: process.env.QUIVER_BROWSER || 'chromium' },
    headless: { type: 'boolean', default: false },
  },
});
if (!(opts.browser in BROWSERS)) {
  console.error(`--browser must be one of ${Object.keys(BROWSERS).join(', ')}`);
  process.exit(2);
}
process.env.QUIVER_BROWSER = opts.browser;
const cfg = config();
const headless = opts.headless || !(process.env.DISPLAY || process.env.WAYLAND_DISPLAY);

// The daemon's data dir (ARCHITECTURE.md): $QUIVER_DATA_DIR, else $XDG_DATA_HOME/quiver,
// else ~/.local/share/quiver. The demo's browser profiles live beside the database.
const quiverDataDir = process.env.QUIVER_DATA_DIR
  || path.join(process.env.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share'), 'quiver');
const profileDir = path.join(quiverDataDir, 'browser-profiles', cfg.browser);
fs.mkdirSync(profileDir, { recursive: true });

console.log(`browser profile: ${profileDir}`);
console.log(`quiver install:  ${await registerHost({ quiverBin: cfg.quiverBin, browser: cfg.browser, profileDir, env: process.env })}`);

const server = await startServer();
const workspaceUrl = server.url('udesk/workspace.html');
console.log(`workspace:       ${workspaceUrl}`);

const browser = await launchBrowser({
  ...cfg,
  profileDir,
  env: process.env,
  headless,
  // A real window keeps its own size; headless gets the suite's fixed viewport.
  ...(headless ? {} : { defaultViewport: null }),
});
let exitCode = 0;
try {
  // Reuse the tab the browser opened at startup instead of leaving an empty one around.
  const page = (await browser.pages()).find((p) => p.url() === 'about:blank') ?? (await browser.newPage());
  await page.goto(workspaceUrl, { waitUntil: 'load' });
  const panel = await findPanelFrame(page);
  await waitForPanelReady(panel);
  console.log('panel ready: daemon up, templates listed');

  if (!headless) {
    console.log('\nThe workspace is open: click a template in the Quiver panel to send it.');
    console.log('Close the browser window to stop.');
    await new Promise((resolve) => browser.once('disconnected', resolve));
  } else {
    await clickTemplate(panel, 'greeting');
    const [msg] = await waitForReceived(page, 1);
    await waitForSendStates(panel, 1, 'sent');
    const shotDir = process.env.QUIVER_SCREENSHOT_DIR || path.join(REPO_ROOT, 'target');
    fs.mkdirSync(shotDir, { recursive: true });
    const shot = path.join(shotDir, `demo-${cfg.browser}.png`);
    await page.screenshot({ path: shot });
    console.log(`\nthe workspace received from ${msg.origin}:`);
    console.log(`  ${typeof msg.data === 'string' ? msg.data : JSON.stringify(msg.data)}`);
    console.log(`screenshot: ${shot}`);
    console.log(`history:    ${path.join(quiverDataDir, 'quiver.db')} (the daemon keeps running)`);
  }
} catch (err) {
  console.error(`demo failed: ${err.stack || err}`);
  exitCode = 1;
} finally {
  if (browser.connected) await browser.close().catch(() => {});
  await server.close();
}
process.exit(exitCode);
