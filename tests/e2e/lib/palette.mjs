// Helpers for the palette tests (tests/7-palette, 8-sobot, 9-palette-zh) and bench/palette.mjs.
import fsp from 'node:fs/promises';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ARTIFACTS_DIR, pollFrame, sel, sleep } from './harness.mjs';

const execFileP = promisify(execFile);

/** Screenshots kept for people (not failure artifacts); see tests/e2e/README or the report. */
export const SCREENSHOTS_DIR = path.join(ARTIFACTS_DIR, 'screenshots');

/** A mini-program card template for Sobot (the daemon seeds only text templates). */
export const MP_TEMPLATE = {
  id: 'mp-order',
  title: 'Order card',
  folder: 'Orders',
  tags: ['card', 'miniprogram'],
  shortcut: 'oc',
  parts: [{
    type: 'miniprogram',
    name: 'Demo Shop',
    title: 'View your order',
    pagepath: 'pages/order/index?id=1',
    thumb_media_id: 'MEDIA-1',
  }],
};

/** What Sobot's workbench must receive for MP_TEMPLATE in conversation cid/uid (msgType 26). */
export function mpPayload(cid, uid) {
  return {
    cid,
    uid,
    msgType: 26,
    miniPage: { name: 'Demo Shop', title: 'View your order', pagepath: 'pages/order/index?id=1', thumbMediaId: 'MEDIA-1' },
  };
}

/** Imports templates into the session's daemon with the real CLI (`quiver templates import`). */
export async function importTemplates(session, templates) {
  const file = path.join(session.dirs.tmp, `library-${Date.now()}.json`);
  await fsp.writeFile(file, JSON.stringify({ quiver: 1, templates }));
  const { stdout, stderr } = await execFileP(session.cfg.quiverBin, ['templates', 'import', file], { env: session.env, timeout: 600_000, maxBuffer: 16 << 20 });
  session.log(`quiver templates import: ${`${stdout}${stderr}`.trim()}`);
}

export const psel = {
  detail: '[data-testid="quiver-detail"]',
  part: '[data-testid="quiver-part"]',
  partReason: '[data-testid="quiver-part-reason"]',
  vars: '[data-testid="quiver-variables"]',
  varInput: (name) => `[data-testid="quiver-var"][data-name="${name}"]`,
  sendButton: '[data-testid="quiver-send-button"]',
  blocked: '[data-testid="quiver-send-blocked"]',
  refusal: '[data-testid="quiver-refusal"]',
  recent: '[data-testid="quiver-recent"]',
  recentConfirm: '[data-testid="quiver-recent-confirm"]',
  context: '[data-testid="quiver-context"]',
};

/** The template ids the palette lists, in order. */
export function listedIds(panel) {
  return panel.evaluate(() => [...document.querySelectorAll('[data-testid="quiver-template"]')].map((e) => e.dataset.templateId));
}

/** Types a query into the search box (clearing it first) and waits for the list to settle. */
export async function searchFor(panel, query) {
  await panel.evaluate((S) => {
    const i = document.querySelector(S);
    i.focus();
    i.value = '';
    i.dispatchEvent(new Event('input', { bubbles: true }));
  }, sel.search);
  await panel.type(sel.search, query);
  await sleep(50);
}

/** Waits until the detail section shows `id`. */
export function waitForDetail(panel, id) {
  return pollFrame(panel, `detail of ${id}`, ([S, id]) => {
    const d = document.querySelector(S);
    return d && !d.hidden && d.dataset.templateId === id;
  }, [psel.detail, id], 10_000);
}

/** Saves a screenshot of the workspace page under artifacts/screenshots/. */
export async function saveScreenshot(page, name) {
  await fsp.mkdir(SCREENSHOTS_DIR, { recursive: true });
  const file = path.join(SCREENSHOTS_DIR, name);
  await page.screenshot({ path: file });
  return file;
}
