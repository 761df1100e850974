// WeChat conversations in the browser (issue 11): a real `quiver hub` (SQLite, plain HTTP on
// 127.0.0.1) with the mini program `shop` added (`quiver hub wx add`, its WeChat API base a real
// `quiver-fakewx`), and one hermetic session (browser, HOME, daemon) whose daemon joined the hub
// as the owner alice, an agent of every app.
//
// The fake pushes a customer's message: it appears on the conversations page (list with its
// unread count and quota, then the thread). The agent searches the palette, picks a template
// (its rich part falls back to text for WeChat: the core decides, the preview shows it), types
// the variable the preview asks for, and sends: the part's state reaches `sent`, the thread shows
// the reply, and the fake records the exact `customerServiceMessage.send` body.
//
// With QUIVER_CONV_BENCH=N (not in `cargo xtask test`) it then pushes N more messages into the
// open conversation, one at a time, and prints push -> visible on the page p50/p99 (no assertion
// on time: the numbers go to docs/benchmarks.md).
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { createInterface } from 'node:readline';
import { config, startSession, REPO_ROOT } from '../lib/harness.mjs';
import { openExtensionPage, setValue, until, screenshot } from '../lib/extension-pages.mjs';
import { startHub, team } from '../lib/hub.mjs';
import { importTemplates } from '../lib/palette.mjs';

const execFileP = promisify(execFile);
const { browser, quiverBin } = config();
const APPID = 'wxe2econv00000001';
const CUSTOMER = 'oE2E-customer-0001';

/** A running `quiver-fakewx` (`$QUIVER_FAKEWX_BIN`, else target/debug): `{base, post, get, close}`. */
async function startFake() {
  const bin = process.env.QUIVER_FAKEWX_BIN || path.join(REPO_ROOT, 'target/debug/quiver-fakewx');
  if (!fs.existsSync(bin)) throw new Error(`${bin} does not exist: run \`cargo build -p quiver-fakewx\` (cargo xtask build does)`);
  const child = spawn(bin, ['--listen', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    rl.once('line', (l) => { rl.close(); resolve(l); });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`quiver-fakewx exited with ${code}`)));
  });
  const base = String(line).replace(/^listening /, '').trim();
  if (!base.startsWith('http://')) throw new Error(`quiver-fakewx said ${line}`);
  const call = async (method, p, body) => {
    const r = await fetch(`${base}${p}`, {
      method, headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined,
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`fake ${method} ${p}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  return {
    base,
    post: (p, body) => call('POST', p, body),
    get: (p) => call('GET', p),
    /** The bodies of the `message/custom/send` calls WeChat accepted. */
    async sent() {
      const calls = await call('GET', '/__fake/calls?path=/cgi-bin/message/custom/send');
      return calls.filter((c) => JSON.parse(c.response || '{}').errcode === 0).map((c) => JSON.parse(c.body));
    },
    close() { child.kill('SIGKILL'); },
  };
}

/** Clicks `selector` (again if the page re-rendered it between finding and clicking). */
async function click(page, selector) {
  for (let attempt = 1; ; attempt++) {
    const el = await page.waitForSelector(selector, { timeout: 15_000 });
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

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

test(`[${browser}] conversations: a customer's message appears on the page; a template reply reaches WeChat exactly`, { timeout: 300_000 }, async (t) => {
  const hub = await startHub(quiverBin);
  const fake = await startFake();
  let session = null;
  let failed = false;
  try {
    // The owner adds the mini program to the hub; the fake pushes to its URL.
    const secret = path.join(hub.dir, 'wx-secret.txt');
    await fsp.writeFile(secret, 'e2e-secret', { mode: 0o600 });
    const { stdout: added } = await execFileP(quiverBin, ['hub', 'wx', 'add', '--dir', hub.dir, 'shop', '--appid', APPID,
      '--secret-file', secret, '--token', 'e2etoken', '--mode', 'plain', '--format', 'json', '--api-base', fake.base], { timeout: 60_000 });
    t.diagnostic(`quiver hub wx add: ${added.trim()}`);
    assert.match(added, /\/wx\/mp\/shop/);
    await fake.post('/__fake/apps', {
      appid: APPID, secret: 'e2e-secret', token: 'e2etoken', mode: 'plain', format: 'json', push_url: `${hub.url}/wx/mp/shop`,
    });

    session = await startSession();
    await team(session, 'join', hub.ownerInvite, '--name', 'agent desk');
    await importTemplates(session, [{
      id: 'ships-today', title: 'Ships today', shortcut: 'st',
      parts: [{ type: 'rich', html: '<b>Thanks {{customer.name}}</b>, it ships today.', fallback: { type: 'text', text: 'Thanks {{customer.name}}, your order ships today.' } }],
    }]);

    const page = await openExtensionPage(session, 'conversations.html');
    await page.waitForSelector('[data-testid="quiver-conv-status"][data-state="up"]', { timeout: 30_000 });
    await page.waitForSelector('[data-testid="quiver-conv-empty"]:not([hidden])', { timeout: 30_000 });

    // The customer writes: the conversation appears, unread, with its quota.
    const push = await fake.post('/__fake/push', { appid: APPID, from: CUSTOMER, kind: 'text', content: 'Where is my order?' });
    assert.equal(push.verdict, 'ok', JSON.stringify(push));
    const item = await until(page, 'the conversation in the list', () => {
      const li = document.querySelector('[data-testid="quiver-conv-item"]');
      return li && {
        id: li.dataset.id,
        unread: li.querySelector('[data-testid="quiver-conv-unread"]')?.dataset.count,
        left: li.querySelector('[data-testid="quiver-conv-quota"]')?.dataset.left,
        text: li.textContent,
      };
    }, undefined, 30_000);
    assert.equal(item.unread, '1', JSON.stringify(item));
    assert.equal(item.left, '5', 'five messages allowed after the customer wrote');
    assert.ok(item.text.includes(CUSTOMER), item.text);

    // The thread: the customer's message drawn by the drawer.
    await click(page, `[data-testid="quiver-conv-item"][data-id="${item.id}"]`);
    const first = await until(page, 'the message in the thread', () => {
      const m = document.querySelector('[data-testid="quiver-conv-msg"][data-dir="in"] .bubble-text');
      return m?.textContent;
    }, undefined, 30_000);
    assert.equal(first, 'Where is my order?');
    // opening it marked it read
    await until(page, 'the conversation read', () => document.querySelector('[data-testid="quiver-conv-unread"]')?.dataset.count === '0', undefined, 30_000);

    // The palette: search, pick; the preview shows the fallback WeChat gets and asks for the name.
    await setValue(page, '[data-testid="quiver-conv-search"]', 'st');
    await click(page, '[data-testid="quiver-conv-result"][data-template-id="ships-today"]');
    await page.waitForSelector('[data-testid="quiver-conv-var"][data-name="customer.name"]', { timeout: 30_000 });
    const before = await until(page, 'the preview', () => {
      const p = document.querySelector('[data-testid="quiver-conv-preview-part"]');
      return p && { kind: p.dataset.kind, text: p.textContent };
    });
    assert.equal(before.kind, 'text', 'rich text has no WeChat form: the core chose the fallback');
    assert.ok(before.text.includes('[customer.name]'), before.text);
    await setValue(page, '[data-testid="quiver-conv-var"][data-name="customer.name"]', 'Ann');
    await until(page, 'the preview with the name', () => document.querySelector('[data-testid="quiver-conv-preview-part"] .bubble-text')?.textContent === 'Thanks Ann, your order ships today.');

    // Send: the part's state, the reply in the thread, and WeChat's exact body.
    await page.waitForSelector('[data-testid="quiver-conv-send"]:not([disabled])', { timeout: 15_000 });
    await click(page, '[data-testid="quiver-conv-send"]');
    await until(page, 'the part sent, under the Send button', () => {
      const states = [...document.querySelectorAll('[data-testid="quiver-conv-part-state"]')];
      return states.length === 1 && states[0].dataset.state === 'sent' && states[0].dataset.kind === 'text';
    }, undefined, 30_000);
    await until(page, 'the reply in the thread, sent', () => {
      const m = document.querySelector('[data-testid="quiver-conv-msg"][data-dir="out"]');
      return m?.dataset.state === 'sent' && m.querySelector('.bubble-text')?.textContent === 'Thanks Ann, your order ships today.';
    }, undefined, 30_000);
    assert.deepEqual(await fake.sent(), [{ touser: CUSTOMER, msgtype: 'text', text: { content: 'Thanks Ann, your order ships today.' } }]);
    // The agent wrote: the customer saw "typing".
    const typing = [
      ...(await fake.get('/__fake/calls?path=/cgi-bin/message/custom/business/typing')),
      ...(await fake.get('/__fake/calls?path=/cgi-bin/message/custom/typing')),
    ].map((c) => JSON.parse(c.body));
    assert.ok(typing.some((b) => b.touser === CUSTOMER && b.command === 'Typing'), JSON.stringify(typing));
    // and the history has the exact wire
    const { stdout } = await execFileP(quiverBin, ['history', '--format', 'json'], { env: session.env, timeout: 30_000 });
    const row = JSON.parse(stdout).find((r) => r.platform === 'wechat-mp');
    assert.equal(row?.state, 'sent');
    assert.deepEqual(JSON.parse(row.payload), { touser: CUSTOMER, msgtype: 'text', text: { content: 'Thanks Ann, your order ships today.' } });
    await screenshot(page, `${browser}-conversations.png`);

    const n = Number(process.env.QUIVER_CONV_BENCH || 0);
    if (n > 0) {
      // push -> visible: the page notes when each inbound message's element appears
      await page.evaluate(() => {
        /** @type {any} */ (window).__seen = {};
        new MutationObserver(() => {
          for (const m of document.querySelectorAll('[data-testid="quiver-conv-msg"][data-dir="in"]')) {
            const text = m.querySelector('.bubble-text')?.textContent ?? '';
            const k = /^bench-(\d+)$/.exec(text)?.[1];
            if (k && !(k in window.__seen)) window.__seen[k] = Date.now();
          }
        }).observe(document.body, { subtree: true, childList: true });
      });
      const lat = [];
      for (let i = 0; i < n; i++) {
        const t0 = Date.now();
        const r = await fake.post('/__fake/push', { appid: APPID, from: CUSTOMER, kind: 'text', content: `bench-${i}` });
        assert.equal(r.verdict, 'ok', JSON.stringify(r));
        const seen = await until(page, `bench-${i} visible`, (k) => window.__seen[k], String(i), 30_000).catch(async (err) => {
          const thread = await page.$eval('[data-testid="quiver-conv-thread"]', (e) => e.textContent);
          throw new Error(`${err.message}; the thread: ${thread}`);
        });
        lat.push(seen - t0);
      }
      lat.sort((a, b) => a - b);
      t.diagnostic(`push -> visible on the conversations page (${browser}, ${n} pushes): p50 ${percentile(lat, 50)} ms, p99 ${percentile(lat, 99)} ms, max ${lat.at(-1)} ms`);
    }
  } catch (err) {
    failed = true;
    t.diagnostic(`hub log:\n${(await hub.log()).slice(-4000)}`);
    throw err;
  } finally {
    await session?.close({ failed, name: 'conversations' });
    fake.close();
    await hub.close();
  }
});
