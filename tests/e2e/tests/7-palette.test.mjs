// The palette on the Udesk demo workspace: the in-frame shortcut, search by pinyin initials with
// arrows + Enter, the variables form (Send blocked until filled, then the exact payload), a
// two-part template in order and spaced by the meter, and a live countdown on the queued part.
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  config, withWorkspace, assistantFrame, clickLauncher, pollFrame, received, waitForReceived, sel, sleep,
  findPanelFrame, waitForPanelReady, pressOpenShortcut,
} from '../lib/harness.mjs';
import { MIN_GAP_MS } from '../lib/expected.mjs';
import { psel, listedIds, searchFor, waitForDetail, saveScreenshot, importTemplates } from '../lib/palette.mjs';

const { browser } = config();
const udesk = (content) => JSON.stringify({ method: 'sendMsg', type: 'text', content });

test(`[${browser}] palette: shortcut, pinyin search, variables form, multi-part order, countdown`, { timeout: 180_000 }, async (t) => {
  await withWorkspace('palette', 'udesk/workspace.html', async ({ page, panel, server }) => {
    const assistant = assistantFrame(page, server);
    assert.ok(assistant, 'assistant frame');
    const isOpen = () => assistant.evaluate((S) => {
      const root = document.querySelector(S);
      const f = root.shadowRoot.querySelector('[data-testid="quiver-panel-frame"]');
      return getComputedStyle(f).display !== 'none';
    }, sel.root);

    // 1. Shortcut in the assistant frame: close with the launcher, Alt+Shift+Q opens and focuses.
    await clickLauncher(assistant);
    assert.equal(await isOpen(), false, 'the launcher closes the palette');
    await pressOpenShortcut(page, assistant);
    await pollFrame(assistant, 'palette open after Alt+Shift+Q', (S) => {
      const f = document.querySelector(S).shadowRoot.querySelector('[data-testid="quiver-panel-frame"]');
      return getComputedStyle(f).display !== 'none';
    }, sel.root, 5_000);
    await pollFrame(panel, 'search focused', (S) => document.hasFocus() && document.activeElement === document.querySelector(S), sel.search, 5_000);

    // 2. Search by pinyin initials (稍等 = shao deng) and by a syllable mix; arrows + Enter send.
    await page.keyboard.type('shd');
    await pollFrame(panel, 'shd lists 稍等 first', () => document.querySelector('[data-testid="quiver-template"]')?.dataset.templateId === 'wait-a-moment', null, 5_000);
    await searchFor(panel, 'sdeng');
    assert.equal((await listedIds(panel))[0], 'wait-a-moment', 'sdeng finds 稍等');
    await searchFor(panel, '');
    await searchFor(panel, 'sd');
    assert.equal((await listedIds(panel))[0], 'wait-a-moment', 'the shortcut sd');
    await panel.focus(sel.search);
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowUp');
    const activeId = await panel.evaluate(() => document.querySelector('[data-testid="quiver-template"][aria-selected="true"]')?.dataset.templateId);
    assert.equal(activeId, 'wait-a-moment', 'arrows move the selection (aria-selected)');
    await page.keyboard.press('Enter');
    const [first] = await waitForReceived(page, 1);
    assert.equal(first.data, udesk('您好，请稍等，我正在为您查询。'));

    // 3. Variables form: order-status needs order.id.
    await searchFor(panel, 'order status');
    await waitForDetail(panel, 'order-status');
    await panel.click(sel.template('order-status'));
    await panel.waitForSelector(`${psel.vars}:not([hidden]) ${psel.varInput('order.id')}`, { timeout: 5_000 });
    const blocked = await panel.evaluate((P) => ({
      disabled: document.querySelector(P.sendButton).disabled,
      reason: document.querySelector(P.blocked).textContent,
      code: document.querySelector(P.blocked).dataset.code,
      refusal: document.querySelector(P.refusal).dataset.code,
    }), { sendButton: psel.sendButton, blocked: psel.blocked, refusal: psel.refusal });
    t.diagnostic(`blocked: ${JSON.stringify(blocked)}`);
    assert.equal(blocked.disabled, true, 'Send is disabled while order.id is empty');
    assert.equal(blocked.code, 'missing_variable');
    assert.match(blocked.reason, /order\.id/);
    assert.equal(blocked.refusal, 'missing_variable', 'clicking it shows why it was not sent');
    await sleep(300);
    assert.equal((await received(page)).length, 1, 'nothing was sent without order.id');
    await panel.type(psel.varInput('order.id'), 'A-1001');
    await pollFrame(panel, 'Send enabled', (S) => !document.querySelector(S).disabled, psel.sendButton, 5_000);
    await saveScreenshot(page, `${browser}-palette-en.png`);
    await panel.click(psel.sendButton);
    const msgs = await waitForReceived(page, 2);
    assert.equal(msgs[1].data, udesk('Your order A-1001 has shipped. You can follow it from the Orders page of your account.'));

    // 4. Two parts in order, spaced by the meter; the queued part counts down.
    await searchFor(panel, 'rf');
    await waitForDetail(panel, 'refund-policy');
    const parts = await panel.$$eval(psel.part, (els) => els.map((e) => e.dataset.state));
    assert.deepEqual(parts, ['ok', 'ok'], 'both parts previewed');
    await page.keyboard.press('Enter');
    const seen = await pollFrame(panel, 'part 2 queued with a countdown', () => {
      const e = document.querySelector('[data-testid="quiver-send"][data-template-id="refund-policy"][data-part-index="1"][data-send-state="queued"] [data-testid="quiver-send-countdown"][data-remaining-ms]');
      return e ? Number(e.dataset.remainingMs) : null;
    }, null, 10_000);
    await sleep(250);
    const later = await panel.evaluate(() => {
      const e = document.querySelector('[data-testid="quiver-send"][data-template-id="refund-policy"][data-part-index="1"] [data-testid="quiver-send-countdown"]');
      return e?.dataset.remainingMs === undefined ? null : Number(e.dataset.remainingMs);
    });
    t.diagnostic(`countdown: ${seen} ms, then ${later} ms`);
    assert.ok(later === null || later < seen, `the countdown decreases (${seen} -> ${later})`);
    const all = await waitForReceived(page, 4);
    assert.equal(all[2].data, udesk('You can return any item within 30 days of delivery for a full refund.'));
    assert.equal(all[3].data, udesk('Once we receive the item, the refund reaches your original payment method within 5 business days.'));
    assert.ok(all[3].t - all[2].t >= MIN_GAP_MS, `parts spaced by the meter (${(all[3].t - all[2].t).toFixed(0)} ms)`);

    // 5. Usage ranks: with an empty search, the templates sent come before those never sent.
    await pollFrame(panel, 'all sent', () => [...document.querySelectorAll('[data-testid="quiver-send"]')].every((e) => e.dataset.sendState === 'sent'), null, 10_000);
    await page.reload({ waitUntil: 'load' });
    const again = await findPanelFrame(page);
    await waitForPanelReady(again);
    const ids = await listedIds(again);
    t.diagnostic(`empty search after sends: ${ids.join(', ')}`);
    const used = ['wait-a-moment', 'order-status', 'refund-policy'];
    assert.deepEqual(new Set(ids.slice(0, 3)), new Set(used), 'sent templates rank first');
  });
});

// The palette draws what the core previews, with the agent's clock and zone: a `{{date}}` shows
// the date the wire carries (not `[date]`), in the agent's local date, in the list and the detail.
test(`[${browser}] palette: a {{date}} template previews the date the wire carries`, { timeout: 120_000 }, async (t) => {
  await withWorkspace('palette-date', 'udesk/workspace.html', async ({ session, page, panel }) => {
    const DATED = { id: 'dated', title: 'Dated note', shortcut: 'dn', parts: [{ type: 'text', text: 'Checked on {{date}}.' }] };
    await importTemplates(session, [DATED]);
    await waitForPanelReady(panel, DATED.id);
    await searchFor(panel, 'dated note');
    await waitForDetail(panel, DATED.id);
    const shown = await panel.evaluate((P) => {
      const d = new Date();
      const pad = (n) => String(n).padStart(2, '0');
      return {
        detail: document.querySelector(`${P} .bubble`)?.textContent,
        row: document.querySelector('[data-testid="quiver-template"][data-template-id="dated"] .template-preview')?.textContent,
        local: `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`,
      };
    }, psel.part);
    t.diagnostic(`shown: ${JSON.stringify(shown)}`);
    assert.equal(shown.detail, `Checked on ${shown.local}.`, 'the detail shows the agent\'s local date');
    assert.equal(shown.row, `Checked on ${shown.local}.`, 'the list row too');
    await panel.click(psel.sendButton);
    const [msg] = await waitForReceived(page, 1);
    assert.equal(msg.data, udesk(shown.detail), 'the wire carries exactly the previewed text');
  });
});
