// A click on the `greeting` template makes the workspace receive exactly Udesk's sendMsg string,
// posted by the assistant frame (origin http://localhost:P), and nothing else.
import test from 'node:test';
import assert from 'node:assert/strict';
import { config, withWorkspace, clickTemplate, waitForReceived, waitForSendStates, received } from '../lib/harness.mjs';
import { GREETING_ID, GREETING_PAYLOAD } from '../lib/expected.mjs';

const { browser } = config();

test(`[${browser}] greeting arrives in the workspace as the exact sendMsg string`, { timeout: 120_000 }, async () => {
  await withWorkspace('exact-payload', 'udesk/workspace.html', async ({ server, page, panel }) => {
    await clickTemplate(panel, GREETING_ID);
    const [msg] = await waitForReceived(page, 1);
    assert.equal(typeof msg.data, 'string', `payload must be posted as a string, got ${typeof msg.data}`);
    assert.equal(msg.data, GREETING_PAYLOAD);
    assert.deepEqual(JSON.parse(msg.data), {
      method: 'sendMsg',
      type: 'text',
      content: 'Hello there, how can I help you today?',
    });
    assert.equal(msg.origin, server.assistantOrigin, 'posted by the assistant frame');

    // Once the panel reports the send done, the page has received that one message only.
    await waitForSendStates(panel, 1, 'sent');
    assert.deepEqual((await received(page)).map((m) => m.data), [GREETING_PAYLOAD]);
  });
});
