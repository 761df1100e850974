// The palette in Chinese (browser UI language zh-CN): its texts come from _locales/zh_CN, the
// 稍等 template is found by its initials, and a screenshot is kept for people in
// artifacts/screenshots/ (with the English one from 7-palette.test.mjs).
import test from 'node:test';
import assert from 'node:assert/strict';
import {
  config, withSession, openWorkspace, findPanelFrame, waitForPanelReady, sel,
} from '../lib/harness.mjs';
import { startServer } from '../lib/server.mjs';
import { listedIds, searchFor, waitForDetail, saveScreenshot } from '../lib/palette.mjs';

const { browser } = config();

test(`[${browser}] palette in Chinese: localized texts, pinyin initials, screenshot`, { timeout: 120_000 }, async (t) => {
  const server = await startServer();
  try {
    await withSession('palette-zh', async (session) => {
      const page = await openWorkspace(session, server, 'udesk/workspace.html');
      const panel = await findPanelFrame(page);
      await waitForPanelReady(panel);
      const lang = await panel.evaluate(() => document.documentElement.lang);
      const placeholder = await panel.$eval(sel.search, (e) => e.placeholder);
      t.diagnostic(`panel lang ${lang}, placeholder ${placeholder}`);
      assert.match(lang, /^zh/i, 'the browser UI language is Chinese');
      assert.equal(placeholder, '搜索模板（拼音、首字母、快捷词）');
      await searchFor(panel, 'shd');
      assert.equal((await listedIds(panel))[0], 'wait-a-moment');
      await searchFor(panel, 'order status');
      await waitForDetail(panel, 'order-status');
      await panel.click(sel.template('order-status'));
      const blocked = await panel.$eval('[data-testid="quiver-send-blocked"]', (e) => e.textContent);
      assert.equal(blocked, '请填写：order.id');
      const file = await saveScreenshot(page, `${browser}-palette-zh.png`);
      t.diagnostic(`screenshot: ${file}`);
    }, { locale: 'zh-CN' });
  } finally {
    await server.close();
  }
});
