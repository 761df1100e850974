// A new agent's first minutes (issue 5's "done when"): two templates added in the options editor,
// then each sent by keyboard alone (Alt+Shift+Q, the template's shortcut, Enter) into the demo
// Udesk workspace (a text template) and the demo Sobot workspace (a mini-program card, the only
// message Sobot's workbench documents), arriving in each platform's exact wire format.
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  config, withSession, clickLauncher, openWorkspace, findPanelFrame, waitForPanelReady, assistantFrame,
  waitForReceived, pollFrame, sel, pressOpenShortcut,
} from '../lib/harness.mjs';
import { startServer } from '../lib/server.mjs';
import { openOptions, setValue, until } from '../lib/extension-pages.mjs';
import { listedIds } from '../lib/palette.mjs';

const { browser } = config();

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

/** Creates a template in the editor with the given fields and part 0, and saves revision 1. */
async function createTemplate(page, { id, title, shortcut, type, fields }) {
  await click(page, '[data-testid="quiver-new-template"]');
  await setValue(page, '[data-testid="quiver-field-id"]', id);
  await setValue(page, '[data-testid="quiver-field-title"]', title);
  await setValue(page, '[data-testid="quiver-field-shortcut"]', shortcut);
  const p0 = '[data-testid="quiver-part"][data-index="0"]';
  if (type !== 'text') await page.select(`${p0} [data-testid="quiver-part-type"]`, type);
  for (const [name, value] of Object.entries(fields)) {
    await setValue(page, `${p0} [data-testid="quiver-part-${name}"]`, value);
  }
  await click(page, '[data-testid="quiver-save"]');
  await until(page, `${id} saved as revision 1`, (id) => {
    const item = document.querySelector(`[data-testid="quiver-lib-item"][data-template-id="${id}"]`);
    return item?.dataset.revision === '1';
  }, id);
}

/** In the workspace: opens the palette by keyboard, types `query`, presses Enter. */
async function sendByKeyboard(page, server, query, expectFirst) {
  const panel = await findPanelFrame(page);
  await waitForPanelReady(panel, expectFirst);
  const assistant = assistantFrame(page, server);
  assert.ok(assistant, 'the assistant frame');
  // Close the palette with the launcher (it is open by default), then reopen it by keyboard.
  await clickLauncher(assistant);
  await pressOpenShortcut(page, assistant);
  await pollFrame(panel, 'search focused after Alt+Shift+Q', (S) => document.hasFocus() && document.activeElement === document.querySelector(S), sel.search, 5_000);
  await page.keyboard.type(query);
  await pollFrame(panel, `${query} lists ${expectFirst} first`, (id) => document.querySelector('[data-testid="quiver-template"]')?.dataset.templateId === id, expectFirst, 5_000);
  assert.equal((await listedIds(panel))[0], expectFirst);
  await page.keyboard.press('Enter');
  const [got] = await waitForReceived(page, 1);
  return got;
}

test(`[${browser}] journey: add templates in the editor, send them by keyboard into Udesk and Sobot`, { timeout: 240_000 }, async () => {
  const server = await startServer();
  try {
    await withSession('journey', async (session) => {
      const options = await openOptions(session);
      await createTemplate(options, {
        id: 'journey-thanks', title: 'Thanks for waiting', shortcut: 'tfw', type: 'text',
        fields: { text: 'Thanks for waiting, {{customer.name|friend}}!' },
      });
      await createTemplate(options, {
        id: 'journey-card', title: 'Your order card', shortcut: 'yoc', type: 'miniprogram',
        fields: { title: 'Your order', pagepath: 'pages/order/index?id=7', thumb_media_id: 'MEDIA-7', name: 'Demo Shop' },
      });

      const udesk = await openWorkspace(session, server, 'udesk/workspace.html');
      const u = await sendByKeyboard(udesk, server, 'tfw', 'journey-thanks');
      assert.equal(u.data, JSON.stringify({ method: 'sendMsg', type: 'text', content: 'Thanks for waiting, friend!' }));

      const sobot = await openWorkspace(session, server, 'sobot/workspace.html');
      const s = await sendByKeyboard(sobot, server, 'yoc', 'journey-card');
      assert.deepEqual(s.data, {
        cid: 'C1',
        uid: 'U1',
        msgType: 26,
        miniPage: { name: 'Demo Shop', title: 'Your order', pagepath: 'pages/order/index?id=7', thumbMediaId: 'MEDIA-7' },
      });
      assert.deepEqual(Object.keys(s.data), ['cid', 'uid', 'msgType', 'miniPage'], 'key order as the seed');
    });
  } finally {
    await server.close();
  }
});
