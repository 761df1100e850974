// The palette on the Sobot demo workbench: context from the docked iframe's URL (cid, uid,
// partnerId); a text template disabled with Sobot's reason; a text part whose fallback is a card
// offered as that fallback; the exact msgType 26 object with cid/uid; the warning before sending
// the same template to the same customer again; and a conversation switch (`selected`): the next
// send goes to C2, a send queued before the switch still goes to C1.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import {
  config, withSession, openWorkspace, findPanelFrame, waitForPanelReady, pollFrame, received,
  waitForReceived, sel, sleep,
} from '../lib/harness.mjs';
import { startServer } from '../lib/server.mjs';
import { MP_TEMPLATE, mpPayload, importTemplates, psel, waitForDetail, searchFor } from '../lib/palette.mjs';

const { browser } = config();
const execFileP = promisify(execFile);

/** The daemon's history rows of a template (read-only sqlite3, as 3-history.test.mjs). */
async function historyOf(dbPath, templateId) {
  const sql = `SELECT conversation, customer, state, payload FROM history WHERE template_id = '${templateId}' ORDER BY id`;
  const { stdout } = await execFileP('sqlite3', ['-readonly', '-json', `file:${dbPath}?mode=ro`, sql]);
  return stdout.trim() ? JSON.parse(stdout) : [];
}

const TRACK_TEMPLATE = {
  id: 'track-order',
  title: 'Track order',
  shortcut: 'tr',
  parts: [{
    type: 'text',
    text: 'Track your order in the app.',
    fallback: { type: 'miniprogram', title: 'Track your order', pagepath: 'pages/track/index', thumb_media_id: 'MEDIA-2' },
  }],
};

test(`[${browser}] sobot: disabled parts with reason, fallback, exact msgType 26, repeat warning, conversation switch`, { timeout: 180_000 }, async (t) => {
  const server = await startServer();
  try {
    await withSession('sobot', async (session) => {
      const page = await openWorkspace(session, server, 'sobot/workspace.html');
      const panel = await findPanelFrame(page);
      await waitForPanelReady(panel);
      await importTemplates(session, [MP_TEMPLATE, TRACK_TEMPLATE]);
      // The daemon's library.changed event reaches the open palette: the new templates appear.
      await waitForPanelReady(panel, MP_TEMPLATE.id);

      const ctx = await pollFrame(panel, 'context C1', (S) => {
        const e = document.querySelector(S);
        return e?.dataset.conversation ? { cid: e.dataset.conversation, uid: e.dataset.customer } : null;
      }, psel.context, 10_000);
      assert.deepEqual(ctx, { cid: 'C1', uid: 'U1' });

      // Channel fit: the card comes before the text templates Sobot cannot show.
      const order = await panel.$$eval(sel.template(MP_TEMPLATE.id).replace(/\[data-template-id.*$/, ''), (els) => els.map((e) => e.dataset.templateId));
      t.diagnostic(`listed: ${order.join(', ')}`);
      assert.ok(order.indexOf(MP_TEMPLATE.id) < order.indexOf('greeting'), 'cards Sobot can show rank first');

      // 1. A text template is disabled with the reason; clicking it sends nothing.
      await searchFor(panel, 'hi');
      await waitForDetail(panel, 'greeting');
      const part = await panel.$eval(psel.part, (e) => ({ state: e.dataset.state, reason: e.querySelector('[data-testid="quiver-part-reason"]')?.textContent }));
      t.diagnostic(`greeting on sobot: ${JSON.stringify(part)}`);
      assert.equal(part.state, 'disabled');
      assert.match(part.reason, /only msgType 26/);
      assert.equal(await panel.$eval(psel.sendButton, (b) => b.disabled), true);
      await panel.click(sel.template('greeting'));
      await pollFrame(panel, 'refusal shown', (S) => document.querySelector(S).dataset.code === 'channel_unsupported', psel.refusal, 5_000);

      // 2. A text part with a card fallback: offered as its fallback.
      await searchFor(panel, 'track');
      await waitForDetail(panel, TRACK_TEMPLATE.id);
      const fb = await panel.$eval(psel.part, (e) => ({ state: e.dataset.state, kind: e.querySelector('.bubble')?.dataset.kind }));
      assert.deepEqual(fb, { state: 'fallback', kind: 'miniprogram' });

      // 3. The card: the exact msgType 26 object with the conversation's cid/uid.
      await searchFor(panel, 'oc');
      await waitForDetail(panel, MP_TEMPLATE.id);
      assert.equal(await panel.$eval(psel.part, (e) => e.querySelector('.bubble').dataset.kind), 'miniprogram');
      await panel.click(psel.sendButton);
      const [m1] = await waitForReceived(page, 1);
      assert.deepEqual(m1.data, mpPayload('C1', 'U1'));
      assert.equal(JSON.stringify(m1.data), JSON.stringify(mpPayload('C1', 'U1')), 'keys in the documented order');

      // 4. Same template, same customer: a warning first; "Send again" queues it (1/s per chat).
      await pollFrame(panel, 'first send done', () => document.querySelector('[data-testid="quiver-send"]')?.dataset.sendState === 'sent', null, 10_000);
      await panel.click(psel.sendButton);
      await panel.waitForSelector(`${psel.recent}:not([hidden])`, { timeout: 5_000 });
      await sleep(200);
      assert.equal((await received(page)).length, 1, 'the warning holds the send');
      await panel.click(psel.recentConfirm);
      // 5. Switch conversation while that send is queued.
      await pollFrame(panel, 'second send queued', () => document.querySelectorAll('[data-testid="quiver-send"]').length === 2, null, 5_000);
      const stateAtSwitch = await panel.$eval('[data-testid="quiver-send"]', (e) => e.dataset.sendState);
      await page.evaluate(() => window.__quiverSelect('C2', 'U2'));
      await pollFrame(panel, 'context C2', (S) => document.querySelector(S)?.dataset.conversation === 'C2', psel.context, 5_000);
      t.diagnostic(`send queued for C1 was "${stateAtSwitch}" at the switch`);
      assert.equal((await panel.$eval(psel.context, (e) => e.dataset.customer)), 'U2');
      await pollFrame(panel, 'no repeat warning for C2', (P) => document.querySelector(P.recent).hidden, { recent: psel.recent }, 5_000);
      await panel.click(psel.sendButton);
      const msgs = await waitForReceived(page, 3);
      t.diagnostic(`received: ${msgs.map((m) => `${m.data.cid}/${m.data.uid}`).join(', ')}`);
      assert.deepEqual(msgs[1].data, mpPayload('C1', 'U1'), 'the send queued before the switch still went to C1');
      assert.deepEqual(msgs[2].data, mpPayload('C2', 'U2'), 'the send after the switch went to C2');
      assert.equal(stateAtSwitch, 'queued', 'the C1 send was still queued when the conversation switched');
      await sleep(300);
      assert.equal((await received(page)).length, 3);

      // The daemon recorded each send for the conversation it was queued for.
      await pollFrame(panel, 'all sent', () => [...document.querySelectorAll('[data-testid="quiver-send"]')].every((e) => e.dataset.sendState === 'sent'), null, 10_000);
      const rows = await historyOf(session.dbPath, MP_TEMPLATE.id);
      assert.deepEqual(rows.map((r) => [r.conversation, r.customer, r.state]), [['C1', 'U1', 'sent'], ['C1', 'U1', 'sent'], ['C2', 'U2', 'sent']]);
      assert.deepEqual(JSON.parse(rows[2].payload), mpPayload('C2', 'U2'));
    });
  } finally {
    await server.close();
  }
});

test(`[${browser}] sobot, strict CSP pages: the palette searches, renders and reads the conversation`, { timeout: 120_000 }, async (t) => {
  const server = await startServer();
  try {
    await withSession('sobot-strict', async (session) => {
      const page = await openWorkspace(session, server, 'sobot/workspace-strict.html');
      const panel = await findPanelFrame(page);
      await waitForPanelReady(panel);
      await importTemplates(session, [MP_TEMPLATE]);
      await waitForPanelReady(panel, MP_TEMPLATE.id);
      await pollFrame(panel, 'context C1', (S) => document.querySelector(S)?.dataset.conversation === 'C1', psel.context, 10_000);
      await searchFor(panel, 'shd');
      await waitForDetail(panel, 'wait-a-moment');
      assert.equal(await panel.$eval(psel.part, (e) => e.dataset.state), 'disabled');
      await searchFor(panel, 'oc');
      await waitForDetail(panel, MP_TEMPLATE.id);
      await panel.click(psel.sendButton);
      const [m] = await waitForReceived(page, 1);
      assert.deepEqual(m.data, mpPayload('C1', 'U1'));
      t.diagnostic('strict CSP: search, render and send work');
    });
  } finally {
    await server.close();
  }
});
