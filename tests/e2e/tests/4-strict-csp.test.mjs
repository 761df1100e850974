// The same exact-payload check on pages served with `Content-Security-Policy: script-src 'self'`
// (both the workspace and the assistant frame), and the panel's wasm core loaded there.
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  config, withWorkspace, clickTemplate, waitForReceived, waitForSendStates, received, assistantFrame,
  pollFrame, sel,
} from '../lib/harness.mjs';
import { STRICT_CSP } from '../lib/server.mjs';
import { GREETING_ID, GREETING_PAYLOAD } from '../lib/expected.mjs';

const { browser } = config();

/** The page's own scripts record whether string evaluation is allowed (pages/udesk/*.js). */
const scriptEval = (frame) => frame.$eval('html', (e) => e.getAttribute('data-script-eval'));

test(`[${browser}] strict CSP pages: exact payload, wasm core ready`, { timeout: 120_000 }, async () => {
  await withWorkspace('strict-csp', 'udesk/workspace-strict.html', async ({ server, page, panel }) => {
    // The policy really applies to both frames.
    const head = await fetch(server.url('udesk/assistant-strict.html'), { method: 'HEAD' });
    assert.equal(head.headers.get('content-security-policy'), STRICT_CSP);
    assert.equal(await scriptEval(page.mainFrame()), 'blocked', 'workspace-strict.html must run under the strict CSP');
    const assistant = assistantFrame(page, server);
    assert.ok(assistant, 'assistant frame present');
    assert.ok(assistant.url().endsWith('/udesk/assistant-strict.html'), assistant.url());
    assert.equal(await scriptEval(assistant), 'blocked', 'assistant-strict.html must run under the strict CSP');

    // The panel's wasm core (extension page, extension CSP) is loaded.
    await pollFrame(panel, 'data-core="ready" on the palette', (S) => document.querySelector(S)?.getAttribute('data-core') === 'ready', sel.palette);

    await clickTemplate(panel, GREETING_ID);
    const [msg] = await waitForReceived(page, 1);
    assert.equal(typeof msg.data, 'string');
    assert.equal(msg.data, GREETING_PAYLOAD);
    assert.equal(msg.origin, server.assistantOrigin);
    await waitForSendStates(panel, 1, 'sent');
    assert.deepEqual((await received(page)).map((m) => m.data), [GREETING_PAYLOAD]);
  });
});
