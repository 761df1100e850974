// Three quick clicks: all three messages arrive in order, at least 1000 ms apart (Udesk's
// one-per-second limit, metered by the daemon), and the panel shows each one queued, then sent.
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  config, withWorkspace, clickTemplate, waitForReceived, waitForSendStates, recordSendStates,
  sendHistories, received,
} from '../lib/harness.mjs';
import { GREETING_ID, GREETING_PAYLOAD, MIN_GAP_MS } from '../lib/expected.mjs';

const { browser } = config();
const ORDER = ['queued', 'sending', 'sent'];

test(`[${browser}] three quick sends arrive in order, >= 1 s apart, shown queued then sent`, { timeout: 120_000 }, async (t) => {
  await withWorkspace('send-queue', 'udesk/workspace.html', async ({ server, page, panel }) => {
    await recordSendStates(panel);
    for (let i = 0; i < 3; i++) await clickTemplate(panel, GREETING_ID);

    const msgs = await waitForReceived(page, 3);
    assert.equal(msgs.length, 3);
    for (const m of msgs) {
      assert.equal(m.data, GREETING_PAYLOAD);
      assert.equal(m.origin, server.assistantOrigin);
    }
    const gaps = msgs.slice(1).map((m, i) => m.t - msgs[i].t);
    t.diagnostic(`gaps between arrivals (ms): ${gaps.map((g) => g.toFixed(1)).join(', ')}`);
    for (let i = 1; i < msgs.length; i++) {
      const gap = gaps[i - 1];
      assert.ok(gap >= MIN_GAP_MS, `message ${i + 1} came ${gap.toFixed(1)} ms after message ${i} (< ${MIN_GAP_MS} ms)`);
    }

    await waitForSendStates(panel, 3, 'sent');
    const histories = await sendHistories(panel);
    t.diagnostic(`panel send states: ${histories.map((h) => h.states.join('>')).join(' | ')}`);
    assert.equal(histories.length, 3, `3 send entries expected: ${JSON.stringify(histories)}`);
    for (const [i, h] of histories.entries()) {
      const what = `send entry ${i + 1} went through ${JSON.stringify(h.states)}`;
      assert.equal(h.states[0], 'queued', `${what}: it must first show as queued`);
      assert.equal(h.states.at(-1), 'sent', `${what}: it must end as sent`);
      const ranks = h.states.map((s) => ORDER.indexOf(s));
      assert.ok(ranks.every((r, k) => r >= 0 && (k === 0 || r > ranks[k - 1])), `${what}: states must follow ${ORDER.join(' -> ')}`);
    }
    // Nothing more arrived after the third.
    assert.equal((await received(page)).length, 3);
  });
});
