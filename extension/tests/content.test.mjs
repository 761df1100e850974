// Unit tests of webext/content.js in Node, with a fake DOM and WebExtension API: which frames
// become assistant frames, for which platform, inside which workspaces; where payloads go; which
// events it obeys.
// Run: node --test extension/tests/
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import vm from 'node:vm';
import path from 'node:path';
import { webcrypto } from 'node:crypto';
import { fileURLToPath } from 'node:url';

const EXT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const SOURCE = fs.readFileSync(path.join(EXT, 'webext', 'content.js'), 'utf8');
const PROD_CONFIG = fs.readFileSync(path.join(EXT, 'webext', 'build-config.js'), 'utf8');
const DEV_CONFIG = fs.readFileSync(path.join(EXT, 'dev', 'build-config.js'), 'utf8');

function fakeTarget() {
  const listeners = new Map();
  return {
    listeners,
    addEventListener(type, fn) {
      if (!listeners.has(type)) listeners.set(type, []);
      listeners.get(type).push(fn);
    },
    removeEventListener(type, fn) {
      const l = listeners.get(type) ?? [];
      const i = l.indexOf(fn);
      if (i >= 0) l.splice(i, 1);
    },
    dispatch(type, event) {
      for (const fn of [...(listeners.get(type) ?? [])]) fn(event);
    },
  };
}

function fakeElement(tag = 'div') {
  const attrs = new Map();
  const el = {
    ...fakeTarget(),
    tag,
    style: { setProperty() {} },
    setAttribute: (k, v) => attrs.set(k, String(v)),
    getAttribute: (k) => attrs.get(k) ?? null,
    hasAttribute: (k) => attrs.has(k),
    attachShadow(init) {
      el.shadowMode = init.mode;
      return { append() {} };
    },
    append() {},
    remove() {},
    focus() {},
    attrs,
  };
  return el;
}

/**
 * Runs content.js in a frame at `href` whose ancestors (parent first) have `ancestors` origins.
 * `ancestorOrigins: false` plays a browser without location.ancestorOrigins: the ancestors then
 * answer the handshake (`answers`: origin each ancestor's answer is stamped with, default theirs).
 * Returns what happened: the platform chosen, the port's messages, posts to the parent, elements.
 */
async function runFrame(href, {
  siteRules, top = false, ancestors = ['http://127.0.0.1:4321'], ancestorOrigins = true, build = DEV_CONFIG,
  answers = null,
} = {}) {
  const html = fakeElement('html');
  const created = [];
  const portMsgs = [];
  const posts = [];
  const win = fakeTarget();
  const windows = ancestors.map((origin, i) => ({
    origin,
    postMessage(data, targetOrigin) {
      if (i === 0) posts.push({ data, targetOrigin });
      if (data?.quiver === 'origin?' && answers !== false) {
        const stamped = answers?.[i] ?? origin;
        setTimeout(() => win.dispatch('message', { source: windows[i], origin: stamped, data: { quiver: 'origin!', nonce: data.nonce } }), 1);
      }
    },
  }));
  for (let i = 0; i < windows.length; i++) windows[i].parent = windows[i + 1] ?? windows[i];
  win.parent = top ? win : windows[0];
  win.top = top ? win : windows.at(-1);
  const location = new URL(href);
  if (ancestorOrigins) location.ancestorOrigins = top ? [] : ancestors;
  const api = {
    runtime: {
      id: 'ext',
      getURL: (p) => `chrome-extension://dyn/${p}`,
      connect: (o) => {
        portMsgs.push({ connect: o.name });
        return { onMessage: { addListener: (f) => { api.onPortMessage = f; } }, onDisconnect: { addListener() {} }, postMessage: (m) => portMsgs.push(structuredClone(m)) };
      },
    },
    storage: { local: { get: async () => (siteRules ? { siteRules } : {}) } },
    i18n: { getMessage: () => '' },
  };
  const document = {
    documentElement: html,
    body: fakeElement('body'),
    createElement: (tag) => {
      const el = fakeElement(tag);
      created.push(el);
      return el;
    },
  };
  const ctx = vm.createContext({
    chrome: api, window: win, document, location, crypto: webcrypto, URL, URLSearchParams,
    setTimeout, clearTimeout, getComputedStyle: () => ({}), structuredClone, KeyboardEvent: class {},
  });
  ctx.globalThis = ctx;
  vm.runInContext(build, ctx);
  vm.runInContext(SOURCE, ctx);
  await new Promise((r) => setTimeout(r, 30));
  const platform = html.getAttribute('data-quiver-frame');
  if (platform) assert.equal(portMsgs.filter((m) => m.connect).length, 1, 'an assistant frame connects to the background');
  return {
    platform,
    refused: html.getAttribute('data-quiver-refused'),
    portMsgs,
    posts,
    win,
    api,
    root: created.find((e) => e.attrs.get('data-testid') === 'quiver-root'),
    launcher: created.find((e) => e.attrs.get('data-testid') === 'quiver-launcher'),
    panelFrame: created.find((e) => e.attrs.get('data-testid') === 'quiver-panel-frame'),
  };
}

const platformFor = async (href, opts) => (await runFrame(href, opts)).platform;
const WS = ['https://*.udesk.cn', 'http://127.0.0.1'];

test('demo rules only in the development build: assistant pages on localhost inside 127.0.0.1', async () => {
  assert.equal(await platformFor('http://localhost:4321/udesk/assistant.html'), 'udesk');
  assert.equal(await platformFor('http://localhost:4321/udesk/assistant-strict.html'), 'udesk');
  assert.equal(await platformFor('http://localhost:80/sobot/assistant.html?cid=C1&uid=U1'), 'sobot');
  assert.equal(await platformFor('http://127.0.0.1:4321/udesk/assistant.html'), null, 'another host');
  assert.equal(await platformFor('http://localhost:4321/udesk/workspace.html'), null);
  assert.equal(await platformFor('http://localhost:4321/udesk/assistant.html', { top: true }), null, 'never the top frame');
  assert.equal(await platformFor('http://localhost:4321/udesk/assistant.html', { build: PROD_CONFIG }), null, 'production: no demo rule');
});

test('user rules: tried first, wildcards, disabled ones skipped, bad ones ignored', async () => {
  const siteRules = [
    { pattern: 'https://crm.example.com/quiver/*', platform: 'sobot', workspaces: WS, enabled: true },
    { pattern: '*://*.helpdesk.example/assist*', platform: 'wechat-dkf', workspaces: WS, enabled: true },
    { pattern: 'https://off.example/*', platform: 'udesk', workspaces: WS, enabled: false },
    { pattern: 'https://bad.example/*', platform: 'nope', workspaces: WS, enabled: true },
    { pattern: 'http://localhost/udesk/*', platform: 'sobot', workspaces: WS, enabled: true },
    { pattern: 'https://port.example:8443/*', platform: 'udesk', workspaces: WS, enabled: true },
  ];
  const o = { siteRules, build: PROD_CONFIG };
  assert.equal(await platformFor('https://crm.example.com/quiver/panel?cid=1', o), 'sobot');
  assert.equal(await platformFor('http://crm.example.com/quiver/panel', o), null, 'scheme');
  assert.equal(await platformFor('https://crm.example.com/other', o), null, 'path');
  assert.equal(await platformFor('http://a.b.helpdesk.example/assistant', o), 'wechat-dkf');
  assert.equal(await platformFor('https://helpdesk.example/assist', o), 'wechat-dkf');
  assert.equal(await platformFor('https://evilhelpdesk.example/assist', o), null);
  assert.equal(await platformFor('https://off.example/x', o), null, 'disabled');
  assert.equal(await platformFor('https://bad.example/x', o), null, 'unknown platform');
  assert.equal(await platformFor('http://localhost:9/udesk/assistant.html', { siteRules }), 'sobot', 'user rules first');
  assert.equal(await platformFor('https://port.example:8443/a', o), 'udesk');
  assert.equal(await platformFor('https://port.example/a', o), null, 'explicit port');
});

test('a frame serves only inside the workspaces its rule names (every ancestor)', async () => {
  const rule = (workspaces) => [{ pattern: 'https://assist.example/*', platform: 'udesk', enabled: true, ...(workspaces ? { workspaces } : {}) }];
  const at = (ancestors, workspaces = WS) => runFrame('https://assist.example/a', { siteRules: rule(workspaces), build: PROD_CONFIG, ancestors });
  assert.equal((await at(['https://kf.udesk.cn'])).platform, 'udesk');
  assert.equal((await at(['https://udesk.cn'])).platform, 'udesk');
  assert.equal((await at(['http://127.0.0.1:9000'])).platform, 'udesk', 'no port: any port');
  const hostile = await at(['https://evil.example']);
  assert.equal(hostile.platform, null, 'a hostile parent');
  assert.equal(hostile.refused, 'workspace');
  assert.equal(hostile.root, undefined, 'no UI in a refused frame');
  assert.equal(hostile.portMsgs.length, 0, 'no background port in a refused frame');
  assert.equal((await at(['https://kf.udesk.cn', 'https://evil.example'])).platform, null, 'the workspace framed by a hostile top');
  assert.equal((await at(['https://evil.udesk.cn.example'])).platform, null);
  assert.equal((await at(['http://kf.udesk.cn'])).platform, null, 'scheme');
  assert.equal((await at(['https://kf.udesk.cn'], null)).platform, null, 'a rule without workspaces serves nothing');
  assert.equal((await at(['https://kf.udesk.cn'], ['*://*'])).platform, null, 'a bare * is not a workspace');
  assert.equal((await at(['https://kf.udesk.cn:8443'], ['https://*.udesk.cn:443'])).platform, null, 'explicit port');
  assert.equal((await at(['null'])).platform, null, 'an opaque ancestor');
});

test('without location.ancestorOrigins: the handshake with each ancestor, origin stamped by the browser', async () => {
  const siteRules = [{ pattern: 'https://assist.example/*', platform: 'udesk', enabled: true, workspaces: WS }];
  const o = { siteRules, build: PROD_CONFIG, ancestorOrigins: false };
  assert.equal((await runFrame('https://assist.example/a', { ...o, ancestors: ['https://kf.udesk.cn'] })).platform, 'udesk');
  assert.equal((await runFrame('https://assist.example/a', { ...o, ancestors: ['https://kf.udesk.cn', 'https://evil.example'] })).platform, null, 'hostile top');
  assert.equal((await runFrame('https://assist.example/a', { ...o, ancestors: ['https://kf.udesk.cn'], answers: false })).platform, null, 'no answer, no panel');
  // A hostile parent answering the nonce still answers with its own (browser-stamped) origin.
  assert.equal((await runFrame('https://assist.example/a', { ...o, ancestors: ['https://evil.example'] })).platform, null);
  // The responder: a frame asked by one below answers with the nonce only.
  const top = await runFrame('https://kf.udesk.cn/ws', { ...o, top: true });
  const replies = [];
  const asker = { postMessage: (data, target) => replies.push({ data, target }) };
  top.win.dispatch('message', { source: asker, origin: 'https://assist.example', data: { quiver: 'origin?', nonce: 'n1' } });
  assert.deepEqual(JSON.parse(JSON.stringify(replies)), [{ data: { quiver: 'origin!', nonce: 'n1' }, target: '*' }]);
});

test('payloads go to the parent\'s exact origin, never *; the workspace is registered first', async () => {
  const f = await runFrame('http://localhost:4321/udesk/assistant.html', { ancestors: ['http://127.0.0.1:4321'] });
  assert.deepEqual(f.portMsgs[1], { type: 'register', workspace: 'http://127.0.0.1:4321', parent: 'http://127.0.0.1:4321' });
  f.api.onPortMessage({ type: 'post', send_id: 1, wire: '{"a":1}', post_as: 'string' });
  assert.deepEqual(f.posts, [{ data: '{"a":1}', targetOrigin: 'http://127.0.0.1:4321' }]);
  assert.deepEqual(f.portMsgs.at(-1), { type: 'posted', send_id: 1, ok: true });
  // Nested: posted to the parent, registered under the top frame's origin.
  const siteRules = [{ pattern: 'https://assist.example/*', platform: 'udesk', enabled: true, workspaces: WS }];
  const n = await runFrame('https://assist.example/a', { siteRules, build: PROD_CONFIG, ancestors: ['https://inner.udesk.cn', 'https://kf.udesk.cn'] });
  assert.deepEqual(n.portMsgs[1], { type: 'register', workspace: 'https://kf.udesk.cn', parent: 'https://inner.udesk.cn' });
  n.api.onPortMessage({ type: 'post', send_id: 2, wire: '{"b":2}', post_as: 'object' });
  assert.deepEqual(JSON.parse(JSON.stringify(n.posts)), [{ data: { b: 2 }, targetOrigin: 'https://inner.udesk.cn' }]);
});

test('untrusted keys and clicks are ignored; the focus request goes through the background', async () => {
  const f = await runFrame('http://localhost:4321/udesk/assistant.html');
  const count = () => f.portMsgs.filter((m) => m.type === 'focus').length;
  const key = (isTrusted) => ({ isTrusted, key: 'Q', code: 'KeyQ', altKey: true, shiftKey: true, ctrlKey: false, metaKey: false, preventDefault() {}, stopPropagation() {} });
  f.win.dispatch('keydown', key(false));
  f.launcher.dispatch('click', { isTrusted: false });
  f.launcher.dispatch('click', { isTrusted: false });
  assert.equal(count(), 0, 'synthetic Alt+Shift+Q and launcher clicks do nothing');
  assert.equal(f.root.getAttribute('data-open'), 'true', 'a synthetic click does not even close the palette');
  f.win.dispatch('keydown', key(true));
  assert.equal(count(), 1, 'the real shortcut asks the background to focus the panel');
  f.launcher.dispatch('click', { isTrusted: true });
  assert.equal(f.root.getAttribute('data-open'), 'false');
  f.launcher.dispatch('click', { isTrusted: true });
  assert.equal(count(), 2);
});

test('the shadow root is closed in production, open in the development build', async () => {
  const siteRules = [{ pattern: 'http://localhost/udesk/*', platform: 'udesk', enabled: true, workspaces: ['http://127.0.0.1'] }];
  assert.equal((await runFrame('http://localhost:1/udesk/assistant.html', { siteRules, build: PROD_CONFIG })).root.shadowMode, 'closed');
  assert.equal((await runFrame('http://localhost:1/udesk/assistant.html', { siteRules, build: DEV_CONFIG })).root.shadowMode, 'open');
});

test('sobot: `selected` messages count only from the parent window at the workspace origin', async () => {
  const siteRules = [{ pattern: 'http://localhost/sobot/*', platform: 'sobot', enabled: true, workspaces: ['http://127.0.0.1'] }];
  const f = await runFrame('http://localhost:1/sobot/assistant.html', { siteRules, build: PROD_CONFIG, ancestors: ['http://127.0.0.1:1'] });
  const contexts = () => f.portMsgs.filter((m) => m.type === 'context').length;
  const before = contexts();
  f.win.dispatch('message', { source: f.win.parent, origin: 'http://evil.example', data: { name: 'selected', cid: 'X' } });
  f.win.dispatch('message', { source: {}, origin: 'http://127.0.0.1:1', data: { name: 'selected', cid: 'X' } });
  assert.equal(contexts(), before);
  f.win.dispatch('message', { source: f.win.parent, origin: 'http://127.0.0.1:1', data: { name: 'selected', cid: 'C' } });
  assert.equal(contexts(), before + 1);
});

// One table for both matchers of the site-rule grammar: the content script's own (a classic
// script, it cannot import) and lib/sites.js (the extension's pages and background). Each case
// runs through both, so they cannot drift apart.
const RULE_CASES = [
  ['https://crm.example.com/quiver/*', 'https://crm.example.com/quiver/panel?cid=1', true],
  ['https://crm.example.com/quiver/*', 'http://crm.example.com/quiver/panel', false],
  ['https://crm.example.com/quiver/*', 'https://crm.example.com/other', false],
  ['https://crm.example.com/quiver/*', 'https://CRM.example.com/quiver/x', true],
  ['*://*.helpdesk.example/assist*', 'http://a.b.helpdesk.example/assistant', true],
  ['*://*.helpdesk.example/assist*', 'https://helpdesk.example/assist', true],
  ['*://*.helpdesk.example/assist*', 'https://evilhelpdesk.example/assist', false],
  ['https://port.example:8443/*', 'https://port.example:8443/a', true],
  ['https://port.example:8443/*', 'https://port.example/a', false],
  ['https://port.example:443/*', 'https://port.example/a', true],
  ['https://any.example/*', 'https://any.example:9999/a', true],
  ['https://*/a/*', 'https://whatever.example/a/b', true],
  ['https://q.example/p?x=1*', 'https://q.example/p?x=12', true],
  ['https://q.example/p.html', 'https://q.example/pxhtml', false],
  ['https://nopath.example', 'https://nopath.example/anything', true],
  ['ftp://files.example/*', 'ftp://files.example/a', false],
  ['not a pattern', 'https://x.example/', false],
];
const WORKSPACE_CASES = [
  ['https://*.udesk.cn', 'https://kf.udesk.cn', true],
  ['https://*.udesk.cn', 'https://udesk.cn', true],
  ['https://*.udesk.cn', 'https://evil-udesk.cn', false],
  ['https://*.udesk.cn', 'http://kf.udesk.cn', false],
  ['*://console.example', 'http://console.example:8080', true],
  ['https://console.example:8443', 'https://console.example:8443', true],
  ['https://console.example:8443', 'https://console.example', false],
  ['https://console.example:443', 'https://console.example', true],
  ['https://console.example/', 'https://console.example', true],
  ['https://*', 'https://console.example', false],
  ['https://console.example/path', 'https://console.example', false],
];

test('site rules: the content script and lib/sites.js agree on one table of cases', async () => {
  const sites = await import('../webext/lib/sites.js');
  for (const [pattern, href, match] of RULE_CASES) {
    assert.equal(sites.ruleMatches(pattern, new URL(href)), match, `lib/sites.js: ${pattern} on ${href}`);
    const siteRules = [{ pattern, platform: 'udesk', workspaces: ['http://127.0.0.1'], enabled: true }];
    const platform = await platformFor(href, { siteRules, build: PROD_CONFIG });
    assert.equal(platform, match ? 'udesk' : null, `content.js: ${pattern} on ${href}`);
  }
  for (const [workspace, origin, match] of WORKSPACE_CASES) {
    assert.equal(sites.originMatches(workspace, origin), match, `lib/sites.js: workspace ${workspace} for ${origin}`);
    const rule = { pattern: 'https://assist.example/*', platform: 'udesk', workspaces: [workspace], enabled: true };
    assert.equal(sites.servesAncestors(rule, [origin]), match);
    const platform = await platformFor('https://assist.example/a', { siteRules: [rule], build: PROD_CONFIG, ancestors: [origin] });
    assert.equal(platform, match ? 'udesk' : null, `content.js: workspace ${workspace} for ${origin}`);
  }
});
