// The 多客服 plugin page (docs/mcs.md) in a real browser against the real daemon, with a stand-in
// `window.external` installed before the page's scripts run (puppeteer's evaluateOnNewDocument:
// CDP in Chromium, a WebDriver BiDi preload script in Firefox). The stand-in behaves like the
// PC client as documented: it reads its argument with JSON.parse, discards a call whose
// head.random repeats an earlier one, answers `{retCode:0,errMsg:""}` (unquoted keys) or
// `{"retCode":5,"errMsg":"参数错误"}`, and records every call.
//
// No extension here: the page is served by the daemon itself (`quiver mcs enable`), in a
// hermetic HOME/XDG session like the rest of the suite.
import test from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import puppeteer from 'puppeteer-core';
import {
  BROWSERS, REPO_ROOT, VIEWPORT, CHROMIUM_ARGS, FIREFOX_PREFS, makeHermeticEnv,
  processesWithRuntimeDir, terminate, sleep,
} from '../lib/harness.mjs';

const execFileP = promisify(execFile);
const browserName = process.env.QUIVER_BROWSER || 'chromium';
const quiverBin = path.resolve(process.env.QUIVER_BIN || path.join(REPO_ROOT, 'target/debug/quiver'));

/** A library with an image part and a news part besides the seeded `greeting`. */
const LIBRARY = {
  quiver: 1,
  templates: [
    {
      id: 'shop-photo',
      title: 'Shop photo',
      parts: [{ type: 'image', url: 'https://img.example.com/shop.png?w=420&h=300' }],
    },
    {
      id: 'promo-news',
      title: 'Promo news',
      parts: [{
        type: 'news',
        articles: [{
          title: '双十二 "sale" 开始',
          digest: 'Up to 50% off\nall week',
          cover: 'https://img.example.com/cover.jpg',
          url: 'https://shop.example.com/p?id=1&from=mcs',
        }],
      }],
    },
  ],
};

const textPut = (random, text) => `{"msg":{"head":{"random":"${random}"},"body":[{"type":0,"content":{"text":"${text}"}}]}}`;
const imagePut = (random) => `{"msg":{"head":{"random":"${random}"},"body":[{"type":1,"content":{"picUrl":"https://img.example.com/shop.png?w=420&h=300"}}]}}`;
const newsPut = (random) => `{"msg":{"head":{"random":"${random}"},"body":[{"type":7,"content":[{"title":"双十二 \\"sale\\" 开始","digest":"Up to 50% off\\nall week","cover":"https://img.example.com/cover.jpg","url":"https://shop.example.com/p?id=1&from=mcs"}]}]}}`;

/** Runs in the page before any of its scripts: the stand-in PC client. */
function installStandIn() {
  const rec = { put: [], filled: [], discarded: [], notice: [], seen: {}, throwNext: 0 };
  const ext = {
    PutMsg(arg) {
      rec.put.push(arg);
      if (rec.throwNext > 0) {
        rec.throwNext -= 1;
        throw new Error('the client is busy (stand-in)');
      }
      let m;
      try { m = JSON.parse(arg); } catch { return '{"retCode":5,"errMsg":"参数错误"}'; }
      const random = m && m.msg && m.msg.head && m.msg.head.random;
      if (typeof random !== 'string' || !Array.isArray(m.msg.body)) return '{"retCode":5,"errMsg":"参数错误"}';
      if (rec.seen[random]) {
        rec.discarded.push(arg);
      } else {
        rec.seen[random] = true;
        rec.filled.push(arg);
      }
      return '{retCode:0,errMsg:""}';
    },
    Notice(arg) {
      rec.notice.push(arg);
      return '{retCode:0,errMsg:""}';
    },
  };
  Object.defineProperty(window, 'external', { value: ext, configurable: true, writable: true });
  window.__mcs = rec;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function quiver(env, args) {
  const { stdout } = await execFileP(quiverBin, args, { env, timeout: 30_000 });
  return stdout.trim();
}

async function launch(profileDir, env) {
  const executablePath = BROWSERS[browserName];
  if (browserName === 'chromium') {
    return puppeteer.launch({
      executablePath, headless: true, pipe: true, userDataDir: profileDir, env, defaultViewport: VIEWPORT,
      args: [...CHROMIUM_ARGS, `--window-size=${VIEWPORT.width},${VIEWPORT.height}`],
      timeout: 60_000, protocolTimeout: 60_000,
    });
  }
  return puppeteer.launch({
    browser: 'firefox', executablePath, headless: true, userDataDir: profileDir, env, defaultViewport: VIEWPORT,
    extraPrefsFirefox: FIREFOX_PREFS, timeout: 60_000, protocolTimeout: 60_000,
  });
}

async function poll(what, fn, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

test(`[${browserName}] 多客服 page: exact PutMsg strings, retry, OnUserChange, no injection, own origin only`, { timeout: 180_000 }, async () => {
  const h = await makeHermeticEnv('quiver-e2e-');
  let browser = null;
  const log = [];
  let failed = true;
  try {
    const port = await freePort();
    const libFile = path.join(h.dirs.tmp, 'mcs-library.json');
    await fsp.writeFile(libFile, JSON.stringify(LIBRARY));
    log.push(await quiver(h.env, ['templates', 'import', libFile]));
    const url = await quiver(h.env, ['mcs', 'enable', '--port', String(port)]);
    const origin = `http://127.0.0.1:${port}`;
    assert.match(url, new RegExp(`^${origin}/mcs/\\?k=[0-9a-f]{32}$`));

    browser = await launch(h.dirs.profile, h.env);
    const page = await browser.newPage();
    page.on('console', (m) => log.push(`console.${m.type()} ${m.text()}`));
    page.on('pageerror', (e) => log.push(`pageerror ${e.message}`));
    const dialogs = [];
    page.on('dialog', async (d) => {
      dialogs.push(d.message());
      await d.dismiss().catch(() => {});
    });
    const requests = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.evaluateOnNewDocument(installStandIn);
    await page.goto(`${url}&ticket=T123`, { waitUntil: 'load' });
    // the stand-in was in place before the page's scripts ran
    assert.equal(await page.evaluate(() => typeof window.__mcs === 'object' && typeof window.external.PutMsg), 'function');

    const rec = () => page.evaluate(() => ({ put: window.__mcs.put.slice(), filled: window.__mcs.filled.slice(), discarded: window.__mcs.discarded.slice(), notice: window.__mcs.notice.slice() }));
    const text = (testid) => page.$eval(`[data-testid="${testid}"]`, (e) => e.textContent);
    const notify = (raw) => page.evaluate((s) => { MCS_ClientNotify(s); }, raw); // eslint-disable-line no-undef
    const partButton = (id) => `[data-testid="mcs-part"][data-template-id="${id}"]`;
    async function search(q, id) {
      await page.$eval('[data-testid="mcs-search"]', (e) => { e.value = ''; });
      await page.type('[data-testid="mcs-search"]', q);
      await page.waitForSelector(partButton(id), { timeout: 20_000 });
    }
    async function putOnce(id) {
      const before = (await rec()).put.length;
      // clicked inside the page in one step: the list may be redrawn at any time (a search
      // answered, the customer changed), so no element handle is held across awaits
      await poll(`a button of ${id}`, () => page.evaluate((sel) => {
        const b = document.querySelector(sel);
        if (!b) return false;
        b.click();
        return true;
      }, partButton(id)));
      const r = await poll(`PutMsg for ${id}`, async () => {
        const x = await rec();
        return x.put.length > before ? x : null;
      });
      return r.put[r.put.length - 1];
    }
    const randomOf = (put) => JSON.parse(put).msg.head.random;
    const sendStates = () => page.$$eval('[data-testid="mcs-send"]', (els) => els.map((e) => e.getAttribute('data-state')));

    // OnUserChange as the documentation writes it (stray spaces in keys and values)
    await notify('{ "event":" OnUserChange ", " channeltype ":"1", " useraccount ":"oUSER" }');
    await poll('customer oUSER', async () => (await text('mcs-customer')) === 'oUSER');

    // text: the exact PutMsg string, reported sent
    await search('greeting', 'greeting');
    const put1 = await putOnce('greeting');
    const r1 = randomOf(put1);
    assert.match(r1, /^[1-9][0-9]{8}$/);
    assert.equal(put1, textPut(r1, 'Hello there, how can I help you today?'));
    await poll('send 1 sent', async () => (await sendStates())[0] === 'sent');

    // image
    await search('shop photo', 'shop-photo');
    const put2 = await putOnce('shop-photo');
    assert.equal(put2, imagePut(randomOf(put2)));
    // news
    await search('promo news', 'promo-news');
    const put3 = await putOnce('promo-news');
    assert.equal(put3, newsPut(randomOf(put3)));
    assert.equal(new Set([r1, randomOf(put2), randomOf(put3)]).size, 3, 'a fresh random per send');
    await poll('three sends sent', async () => (await sendStates()).filter((s) => s === 'sent').length === 3);

    // a failed PutMsg is retried with the same string (same random): the client keeps one
    await search('greeting', 'greeting');
    await page.evaluate(() => { window.__mcs.throwNext = 1; });
    const put4 = await putOnce('greeting');
    await poll('send 4 failed', async () => (await sendStates())[0] === 'failed');
    await page.$eval('[data-testid="mcs-retry"]', (b) => b.click());
    const afterRetry = await poll('the retry', async () => {
      const x = await rec();
      return x.put.length === 5 ? x : null;
    });
    assert.equal(afterRetry.put[4], put4, 'the retry puts the identical string');
    assert.notEqual(randomOf(put4), r1);
    assert.deepEqual(afterRetry.filled, [put1, put2, put3, put4]);
    assert.deepEqual(afterRetry.discarded, []);
    await poll('the retry sent', async () => (await sendStates())[0] === 'sent');
    // the customer's history on the page: 5 rows (the failed attempt too)
    await poll('history of oUSER', async () => (await page.$$('[data-testid="mcs-history-row"]')).length === 5);
    await poll('sent before', async () => page.$eval('[data-testid="mcs-template"][data-template-id="greeting"]', (e) => e.textContent.includes('sent before')));

    // the `userid` variant of OnUserChange (the official demo's)
    await notify("{event:'OnUserChange',channeltype:'1',userid:'oOTHER'}");
    await poll('customer oOTHER', async () => (await text('mcs-customer')) === 'oOTHER');
    await poll('empty history for oOTHER', async () => (await page.$$('[data-testid="mcs-history-row"]')).length === 0);

    // a location message whose text is script: shown as text, nothing runs
    const loc = '"});alert(1);({"';
    await notify(JSON.stringify({ event: 'OnMapMsgClick', latitude: '23.134521', longitude: '113.358803', location: loc, scale: '15' }));
    await poll('map click shown', async () => (await text('mcs-map')).includes(loc));
    // the same text spliced in raw, as the official demo's eval would have run it
    await notify(`{ "event":"OnMapMsgClick", "location":"${loc}", "scale":"15" }`);
    await poll('refusal shown', async () => (await text('mcs-status')).includes('MCS_ClientNotify'));
    assert.equal(await page.evaluate(() => document.querySelectorAll('[data-testid="mcs-map"] *').length), 0, 'text only, no elements');

    // something for the agent: the page shows it and highlights its tab with Notice("")
    await quiver(h.env, ['mcs', 'notice', '新客户在等待 a customer is waiting']);
    const withNotice = await poll('Notice called', async () => {
      const x = await rec();
      return x.notice.length >= 1 ? x : null;
    });
    assert.deepEqual(withNotice.notice, ['']);
    assert.equal(await text('mcs-notice'), '新客户在等待 a customer is waiting');

    // the daemon's history has the exact strings: platform wechat-dkf, workspace mcs, the customer
    const rows = JSON.parse(await quiver(h.env, ['history', '--format', 'json', '--platform', 'wechat-dkf', '--limit', '0']));
    assert.deepEqual(rows.map((r) => [r.payload, r.customer, r.workspace, r.state]).reverse(), [
      [put1, 'oUSER', 'mcs', 'sent'],
      [put2, 'oUSER', 'mcs', 'sent'],
      [put3, 'oUSER', 'mcs', 'sent'],
      [put4, 'oUSER', 'mcs', 'failed'],
      [put4, 'oUSER', 'mcs', 'sent'],
    ]);

    await sleep(300);
    assert.deepEqual(dialogs, [], 'no dialog was raised');
    const foreign = requests.filter((u) => !u.startsWith(`${origin}/`));
    assert.deepEqual(foreign, [], 'no request leaves the page\'s own origin');
    assert.ok(requests.some((u) => u.startsWith(`${origin}/mcs/api/render`)), 'the page used its API');
    failed = false;
  } finally {
    if (failed) {
      console.error(log.join('\n'));
      const daemonLog = path.join(h.dataDir, 'logs', 'daemon.log');
      if (fs.existsSync(daemonLog)) console.error((await fsp.readFile(daemonLog, 'utf8')).split('\n').slice(-60).join('\n'));
    }
    if (browser) await browser.close().catch(() => {});
    await execFileP(quiverBin, ['daemon', '--stop'], { env: h.env, timeout: 15_000 }).catch(() => {});
    await terminate(processesWithRuntimeDir(h.dirs.runtimeDir));
    await fsp.rm(h.dirs.root, { recursive: true, force: true, maxRetries: 3 });
  }
});
