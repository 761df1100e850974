// Unit tests of webext/content.js's site rules in Node, with a fake DOM and WebExtension API:
// which frames become assistant frames, and for which platform.
// Run: node --test extension/tests/
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import vm from 'node:vm';
import path from 'node:path';
import { webcrypto } from 'node:crypto';
import { fileURLToPath } from 'node:url';

const SOURCE = fs.readFileSync(
  path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'webext', 'content.js'),
  'utf8',
);

function fakeElement() {
  const attrs = new Map();
  return {
    style: { setProperty() {} },
    setAttribute: (k, v) => attrs.set(k, String(v)),
    getAttribute: (k) => attrs.get(k) ?? null,
    hasAttribute: (k) => attrs.has(k),
    attachShadow: () => ({ append() {} }),
    addEventListener() {},
    append() {},
    remove() {},
    focus() {},
    attrs,
  };
}

/** Runs content.js in a frame at `href`; resolves to the platform it chose, or null. */
async function platformFor(href, { siteRules, top = false } = {}) {
  const html = fakeElement();
  const connects = [];
  const win = {
    addEventListener() {},
    parent: {},
  };
  win.top = top ? win : {};
  const api = {
    runtime: {
      id: 'ext',
      getURL: (p) => `chrome-extension://ext/${p}`,
      connect: (o) => {
        connects.push(o.name);
        return { onMessage: { addListener() {} }, onDisconnect: { addListener() {} }, postMessage() {} };
      },
    },
    storage: { local: { get: async () => (siteRules ? { siteRules } : {}) } },
    i18n: { getMessage: () => '' },
  };
  const document = {
    documentElement: html,
    body: fakeElement(),
    createElement: () => fakeElement(),
  };
  const ctx = vm.createContext({
    chrome: api, window: win, document, location: new URL(href), crypto: webcrypto, URL, URLSearchParams,
    setTimeout, getComputedStyle: () => ({}),
  });
  ctx.globalThis = ctx;
  vm.runInContext(SOURCE, ctx);
  await new Promise((r) => setTimeout(r, 10));
  const p = html.getAttribute('data-quiver-frame');
  if (p) assert.equal(connects.length, 1, 'an assistant frame connects to the background');
  return p;
}

test('default rules: the demo assistant pages on localhost, any port', async () => {
  assert.equal(await platformFor('http://localhost:4321/udesk/assistant.html'), 'udesk');
  assert.equal(await platformFor('http://localhost:4321/udesk/assistant-strict.html'), 'udesk');
  assert.equal(await platformFor('http://localhost:80/sobot/assistant.html?cid=C1&uid=U1'), 'sobot');
  assert.equal(await platformFor('http://127.0.0.1:4321/udesk/assistant.html'), null, 'another host');
  assert.equal(await platformFor('http://localhost:4321/udesk/workspace.html'), null);
  assert.equal(await platformFor('http://localhost:4321/udesk/assistant.html', { top: true }), null, 'never the top frame');
});

test('user rules: tried first, wildcards, disabled ones skipped, bad ones ignored', async () => {
  const siteRules = [
    { pattern: 'https://crm.example.com/quiver/*', platform: 'sobot', enabled: true },
    { pattern: '*://*.helpdesk.example/assist*', platform: 'wechat-dkf', enabled: true },
    { pattern: 'https://off.example/*', platform: 'udesk', enabled: false },
    { pattern: 'https://bad.example/*', platform: 'nope', enabled: true },
    { pattern: 'http://localhost/udesk/*', platform: 'sobot', enabled: true },
    { pattern: 'https://port.example:8443/*', platform: 'udesk', enabled: true },
  ];
  assert.equal(await platformFor('https://crm.example.com/quiver/panel?cid=1', { siteRules }), 'sobot');
  assert.equal(await platformFor('http://crm.example.com/quiver/panel', { siteRules }), null, 'scheme');
  assert.equal(await platformFor('https://crm.example.com/other', { siteRules }), null, 'path');
  assert.equal(await platformFor('http://a.b.helpdesk.example/assistant', { siteRules }), 'wechat-dkf');
  assert.equal(await platformFor('https://helpdesk.example/assist', { siteRules }), 'wechat-dkf');
  assert.equal(await platformFor('https://evilhelpdesk.example/assist', { siteRules }), null);
  assert.equal(await platformFor('https://off.example/x', { siteRules }), null, 'disabled');
  assert.equal(await platformFor('https://bad.example/x', { siteRules }), null, 'unknown platform');
  assert.equal(await platformFor('http://localhost:9/udesk/assistant.html', { siteRules }), 'sobot', 'user rules first');
  assert.equal(await platformFor('https://port.example:8443/a', { siteRules }), 'udesk');
  assert.equal(await platformFor('https://port.example/a', { siteRules }), null, 'explicit port');
});
