// The toolbar popup (status, quick search, Enter opens the template in the options page's
// editor), the site rules of the options page (storage.local `siteRules`), and the history
// browser over `history.list` with its filters.
import test from 'node:test';
import assert from 'node:assert/strict';
import { config, withSession, withWorkspace, clickTemplate, waitForSendStates, sleep } from '../lib/harness.mjs';
import { openExtensionPage, openOptions, setValue, until, screenshot } from '../lib/extension-pages.mjs';
import { GREETING_ID } from '../lib/expected.mjs';

const { browser } = config();

/** Clicks `selector`; again if the page re-rendered it between finding and clicking. */
async function click(page, selector) {
  for (let attempt = 1; ; attempt++) {
    const el = await page.waitForSelector(selector, { timeout: 10_000 });
    try {
      await el.click();
      return;
    } catch (err) {
      if (attempt >= 5 || !/detached|not clickable|no longer/i.test(err.message)) throw err;
    } finally {
      await el.dispose().catch(() => {});
    }
  }
}

test(`[${browser}] popup: daemon status, quick search, Enter opens the editor`, { timeout: 120_000 }, async () => {
  await withSession('popup', async (session) => {
    const popup = await openExtensionPage(session, 'popup.html');
    await popup.waitForSelector('[data-testid="quiver-popup-status"][data-state="up"]', { timeout: 30_000 });
    await popup.waitForSelector('[data-testid="quiver-popup-result"]', { timeout: 15_000 });
    const before = new Set(await session.browser.pages());
    await setValue(popup, '[data-testid="quiver-popup-search"]', 'refund');
    await until(popup, 'refund-policy first', () => document.querySelector('[data-testid="quiver-popup-result"]')?.dataset.templateId === 'refund-policy');
    await popup.setViewport({ width: 360, height: 420 });
    await screenshot(popup, `popup-${browser}-en.png`);
    await popup.focus('[data-testid="quiver-popup-search"]');
    // Enter opens the editor and closes the popup (here: its tab), which may end the key event.
    await popup.keyboard.press('Enter').catch((err) => {
      if (!/closed|detached/i.test(err.message)) throw err;
    });
    // The options page opens in a new tab on that template.
    const deadline = Date.now() + 15_000;
    let options = null;
    while (!options && Date.now() < deadline) {
      for (const p of await session.browser.pages()) {
        if (before.has(p)) continue;
        const href = await p.evaluate(() => location.href).catch(() => '');
        if (/options\.html#edit=refund-policy$/.test(href)) options = p;
      }
      if (!options) await sleep(100);
    }
    assert.ok(options, 'options.html#edit=refund-policy opened');
    await until(options, 'the editor on refund-policy', () => document.querySelector('[data-testid="quiver-field-id"]')?.value === 'refund-policy', undefined, 30_000);
  });
});

test(`[${browser}] options: site rules are kept in storage.local siteRules`, { timeout: 120_000 }, async () => {
  await withSession('site-rules', async (session) => {
    const page = await openOptions(session, '#sites');
    await page.waitForSelector('#panel-sites:not([hidden])');
    // A pattern that is not a match pattern is refused in place.
    await setValue(page, '[data-testid="quiver-site-pattern"]', 'assistant.example.com');
    await click(page, '[data-testid="quiver-site-add"]');
    await page.waitForSelector('[data-testid="quiver-site-message"][data-kind="error"]');

    await setValue(page, '[data-testid="quiver-site-pattern"]', 'https://assistant.example.com/*');
    // A rule must name the workspace origins it serves; a bare `*` is refused.
    await setValue(page, '[data-testid="quiver-site-workspaces"]', '*://*');
    await click(page, '[data-testid="quiver-site-add"]');
    await page.waitForSelector('[data-testid="quiver-site-message"][data-kind="error"]');
    await setValue(page, '[data-testid="quiver-site-workspaces"]', 'https://*.udesk.cn https://crm.example.com:8443/');
    await page.select('[data-testid="quiver-site-platform"]', 'sobot');
    await page.select('[data-testid="quiver-site-channel"]', 'web');
    await click(page, '[data-testid="quiver-site-add"]');
    // The browser may show its permission prompt (nobody answers it here): the rule is saved anyway.
    await page.waitForSelector('[data-testid="quiver-site-rule"][data-pattern="https://assistant.example.com/*"]', { timeout: 10_000 });
    const rules = await page.evaluate(async () => (await (globalThis.browser ?? chrome).storage.local.get('siteRules')).siteRules);
    assert.deepEqual(rules, [{
      pattern: 'https://assistant.example.com/*', platform: 'sobot', workspaces: ['https://*.udesk.cn', 'https://crm.example.com:8443'], enabled: true, channel: 'web',
    }]);

    await click(page, '[data-testid="quiver-site-rule"] [data-testid="quiver-site-enabled"]');
    await until(page, 'the rule disabled in storage', async () => (await (globalThis.browser ?? chrome).storage.local.get('siteRules')).siteRules?.[0]?.enabled === false);
    await click(page, '[data-testid="quiver-site-rule"] [data-testid="quiver-site-remove"]');
    await until(page, 'the rule removed from storage', async () => (await (globalThis.browser ?? chrome).storage.local.get('siteRules')).siteRules?.length === 0);
  });
});

test(`[${browser}] options: history browser lists sends and filters them`, { timeout: 180_000 }, async () => {
  await withWorkspace('options-history', 'udesk/workspace.html', async ({ session, panel }) => {
    await clickTemplate(panel, GREETING_ID);
    await waitForSendStates(panel, 1, 'sent');
    const page = await openOptions(session, '#history');
    const row = await until(page, 'a sent greeting row', (id) => {
      const r = document.querySelector(`[data-testid="quiver-history-row"][data-template-id="${id}"]`);
      return r ? r.dataset.state : null;
    }, GREETING_ID);
    assert.equal(row, 'sent');
    // Filter: failed sends only -> none.
    await page.select('[data-testid="quiver-history-state"]', 'failed');
    await click(page, '[data-testid="quiver-history-apply"]');
    await page.waitForSelector('#history-empty:not([hidden])', { timeout: 10_000 });
    // Filter: this template, sent, from today.
    await page.select('[data-testid="quiver-history-state"]', 'sent');
    await setValue(page, '[data-testid="quiver-history-template"]', GREETING_ID);
    const today = await page.evaluate(() => {
      const d = new Date();
      return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
    });
    await setValue(page, '[data-testid="quiver-history-since"]', today);
    await setValue(page, '[data-testid="quiver-history-until"]', today);
    await click(page, '[data-testid="quiver-history-apply"]');
    await until(page, 'the filtered row', () => document.querySelectorAll('[data-testid="quiver-history-row"][data-state="sent"]').length === 1);
  });
});

test(`[${browser}] options: the daemon tab shows what quiver doctor finds`, { timeout: 120_000 }, async () => {
  await withSession('options-doctor', async (session) => {
    const page = await openOptions(session, '#daemon');
    // The daemon's own checks (socket owned by this user, hello) pass in every hermetic run;
    // browsers are reported as the doctor finds them under this session's HOME.
    const daemonChecks = await until(page, 'the doctor findings', () => {
      const box = document.querySelector('[data-testid="quiver-doctor"]');
      if (!box || !['ok', 'broken'].includes(box.dataset.state)) return null;
      return [...box.querySelectorAll('[data-testid="quiver-doctor-daemon"] [data-testid="quiver-doctor-check"]')]
        .map((li) => `${li.dataset.name}:${li.dataset.ok}`);
    });
    assert.deepEqual(daemonChecks, ['socket:true', 'hello:true']);
    // Every broken link names its fix.
    const unfixed = await page.evaluate(() => [...document.querySelectorAll('[data-testid="quiver-doctor-check"][data-ok="false"]')]
      .filter((li) => !li.querySelector('[data-testid="quiver-doctor-fix"]')).length);
    assert.equal(unfixed, 0);
  });
});
