// Tidiness checks that keep the extension consistent with the rest of the house:
// - the daemon methods the background calls, and those it opens to the extension's pages, are
//   methods docs/protocol.md lists (its method tables are kept exact by the daemon side);
// - both locales have the same message keys, and every key the code or the markup names exists.
// Run: node --test extension/tests/
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { register } from 'node:module';
import { fileURLToPath } from 'node:url';

const EXT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const ROOT = path.join(EXT, '..');
const WEBEXT = path.join(EXT, 'webext');
// The background's modules import lib/core.js, whose `webext/pkg/` is the built core
// (fresh-modules.mjs; nothing is initialised by importing them).
register('./fresh-modules.mjs', import.meta.url, {
  data: { webext: WEBEXT, pkg: path.join(process.env.QUIVER_EXTENSION_DIR ?? path.join(ROOT, 'target', 'extension'), 'pkg') },
});

/** Every file under `dir` whose name ends with one of `exts`, as {path, text}. */
function sources(dir, exts) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== '_locales' && e.name !== 'icons') out.push(...sources(p, exts));
    } else if (exts.some((x) => e.name.endsWith(x))) out.push({ path: path.relative(ROOT, p), text: fs.readFileSync(p, 'utf8') });
  }
  return out;
}

/** The methods of docs/protocol.md: the first column of every table headed `| method |`. */
function protocolMethods() {
  const doc = fs.readFileSync(path.join(ROOT, 'docs', 'protocol.md'), 'utf8');
  const methods = new Set();
  let inTable = false;
  for (const line of doc.split('\n')) {
    if (/^\|\s*method\s*\|/.test(line)) inTable = true;
    else if (!line.startsWith('|')) inTable = false;
    else if (inTable) {
      const m = /^\|\s*`([a-z.]+)`\s*\|/.exec(line);
      if (m) methods.add(m[1]);
    }
  }
  return methods;
}

test('the page allow-list and every method the background calls are in docs/protocol.md', async () => {
  const methods = protocolMethods();
  assert.ok(methods.has('hello') && methods.has('send.reserve') && methods.size > 15, `method tables read: ${[...methods]}`);
  // page-rpc.js reads the manifest's version (through background/native.js) when it loads.
  globalThis.chrome = { runtime: { getManifest: () => ({ version: '0.0.0' }) } };
  const { PAGE_METHODS } = await import('../webext/background/page-rpc.js');
  const open = [...PAGE_METHODS].filter((m) => !methods.has(m));
  assert.deepEqual(open, [], 'PAGE_METHODS names methods the daemon does not have');
  assert.ok(!PAGE_METHODS.has('send.reserve') && !PAGE_METHODS.has('send.begin'), 'sends go through the panel queue only');
  const called = new Set();
  for (const { text } of sources(path.join(WEBEXT, 'background'), ['.js'])) {
    for (const m of text.matchAll(/\brequest(?:Retrying)?\(\s*'([a-z.]+)'/g)) called.add(m[1]);
  }
  assert.ok(called.has('send.reserve') && called.has('templates.list'), `calls found: ${[...called]}`);
  assert.deepEqual([...called].filter((m) => !methods.has(m)), [], 'the background calls methods the daemon does not have');
});

const locale = (lang) => JSON.parse(fs.readFileSync(path.join(WEBEXT, '_locales', lang, 'messages.json'), 'utf8'));

test('the locales have the same keys', () => {
  const en = Object.keys(locale('en')).sort();
  const zh = Object.keys(locale('zh_CN')).sort();
  assert.deepEqual(en.filter((k) => !zh.includes(k)), [], 'keys missing in zh_CN');
  assert.deepEqual(zh.filter((k) => !en.includes(k)), [], 'keys missing in en');
});

test('every message key the code and the markup name exists', () => {
  const keys = new Set(Object.keys(locale('en')));
  const used = new Map(); // key -> file
  const use = (key, file) => used.set(key, file);
  for (const { path: file, text } of sources(WEBEXT, ['.js', '.html']).concat(sources(path.join(EXT, 'dev'), ['.js']))) {
    // t('key'...), getMessage('key'), data-i18n="key", data-i18n-placeholder="key", ...
    for (const m of text.matchAll(/(?:\bt|getMessage\??\.?)\(\s*'([A-Za-z0-9_]+)'/g)) use(m[1], file);
    for (const m of text.matchAll(/data-i18n(?:-[a-z-]+)?="([A-Za-z0-9_]+)"/g)) use(m[1], file);
  }
  const manifest = fs.readFileSync(path.join(WEBEXT, 'manifest.json'), 'utf8');
  for (const m of manifest.matchAll(/__MSG_([A-Za-z0-9_]+)__/g)) use(m[1], 'manifest.json');
  assert.ok(used.size > 100, `keys found in use: ${used.size}`);
  const missing = [...used].filter(([k]) => !keys.has(k)).map(([k, f]) => `${k} (${f})`);
  assert.deepEqual(missing, [], 'message keys used but not in _locales/en');
});
