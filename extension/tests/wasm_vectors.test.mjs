// Runs every render vector of shared/test_data through the BUILT wasm core (target/extension/pkg),
// so the adapters are exercised once more as the browser runs them, not only natively.
// The extension must be built first (`cargo xtask build-extension`; `cargo xtask test` does it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const extDir = process.env.QUIVER_EXTENSION_DIR ?? path.join(root, 'target', 'extension');
const dataDir = path.join(root, 'shared', 'test_data');

let corePromise;
function loadCore() {
  corePromise ??= loadCoreOnce();
  return corePromise;
}

async function loadCoreOnce() {
  const js = path.join(extDir, 'pkg', 'quiver_core.js');
  const wasm = path.join(extDir, 'pkg', 'quiver_core_bg.wasm');
  assert.ok(fs.existsSync(js) && fs.existsSync(wasm), `the wasm core is not built at ${extDir}/pkg`);
  // The `--target web` output is an ES module: its default export initialises the wasm.
  const core = await import(pathToFileURL(js).href);
  await core.default({ module_or_path: fs.readFileSync(wasm) });
  return core;
}

function renderCases(dir, out = []) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) renderCases(p, out);
    else if (e.name.endsWith('.json')) {
      const c = JSON.parse(fs.readFileSync(p, 'utf8'));
      if (c.template && c.expect && (c.case === undefined || c.case === 'render')) out.push([p, c]);
    }
  }
  return out;
}

test('every render vector gives the same bytes or refusal through the wasm core', async () => {
  const core = await loadCore();
  const cases = renderCases(dataDir);
  assert.ok(cases.length >= 40, `expected the render vectors, found ${cases.length}`);
  const failures = [];
  for (const [file, c] of cases) {
    const target = c.target ?? { platform: c.platform };
    let got;
    try {
      got = { ok: JSON.parse(core.render(JSON.stringify(target), JSON.stringify(c.template), c.part ?? 0, JSON.stringify(c.context ?? {}))) };
    } catch (e) {
      got = { err: e };
    }
    const rel = path.relative(dataDir, file);
    const want = c.expect;
    if (want.wire !== undefined) {
      if (!got.ok) failures.push(`${rel}: want wire, got refusal ${got.err.code}: ${got.err.message}`);
      else if (got.ok.wire !== want.wire) failures.push(`${rel}: wire\n  got:  ${got.ok.wire}\n  want: ${want.wire}`);
      else if (want.kind && got.ok.kind !== want.kind) failures.push(`${rel}: kind ${got.ok.kind}, want ${want.kind}`);
      else if (want.post_as && got.ok.post_as !== want.post_as) failures.push(`${rel}: post_as ${got.ok.post_as}, want ${want.post_as}`);
    } else if (want.refusal !== undefined) {
      if (got.ok) failures.push(`${rel}: want refusal ${want.refusal}, got wire ${got.ok.wire}`);
      else if (got.err.code !== want.refusal) failures.push(`${rel}: refusal ${got.err.code}, want ${want.refusal} (${got.err.message})`);
      else if (want.message_contains && !got.err.message.includes(want.message_contains)) failures.push(`${rel}: message ${got.err.message} lacks ${want.message_contains}`);
    }
  }
  assert.equal(failures.length, 0, `${failures.length} of ${cases.length} vectors differ in wasm:\n${failures.join('\n')}`);
});

test('the wasm core refuses a malformed target with a code', async () => {
  const core = await loadCore();
  assert.throws(() => core.render('{"platform":"udesk","channel":"fax"}', '{"id":"t","title":"t","parts":[{"type":"text","text":"x"}]}', 0, '{}'),
    (e) => e.code === 'invalid_target' && /fax/.test(e.message));
});

// The sanitizer cases (shared/test_data/sanitize/) through the wasm core: each `html` as a Udesk
// rich part, whose wire `content` is the cleaned HTML (a refusal for nothing left is an empty one). The same checks as the native runner
// (shared/tests/vectors.rs): the exact `clean`, nothing of `absent` (case-insensitive), all of
// `present`.
test('every sanitizer vector gives the same clean HTML through the wasm core', async () => {
  const core = await loadCore();
  const dir = path.join(dataDir, 'sanitize');
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.json'));
  assert.ok(files.length >= 24, `expected the sanitizer vectors, found ${files.length}`);
  const failures = [];
  for (const f of files) {
    const c = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
    const template = { id: 's', title: 's', parts: [{ type: 'rich', html: c.html }] };
    let got;
    try {
      got = JSON.parse(JSON.parse(core.render('{"platform":"udesk"}', JSON.stringify(template), 0, '{}')).wire).content;
    } catch (e) {
      // The adapter refuses rich text that cleans to nothing: that is an empty clean.
      if (e.code !== 'field_required' || !/nothing is left/.test(e.message)) {
        failures.push(`${f}: refused ${e.code}: ${e.message}`);
        continue;
      }
      got = '';
    }
    const want = c.expect;
    if (want.clean !== undefined && got !== want.clean) failures.push(`${f}: clean\n  got:  ${got}\n  want: ${want.clean}`);
    for (const bad of want.absent ?? []) {
      if (got.toLowerCase().includes(bad.toLowerCase())) failures.push(`${f}: ${bad} survived: ${got}`);
    }
    for (const good of want.present ?? []) {
      if (!got.includes(good)) failures.push(`${f}: ${good} was lost: ${got}`);
    }
  }
  assert.equal(failures.length, 0, `${failures.length} of ${files.length} sanitizer vectors differ in wasm:\n${failures.join('\n')}`);
});

// The index the palette builds reads each row's fields straight from the text; channel fit comes
// from the first parts it kept, and must equal the library-wide `channel_fit`.
test('the search index finds, ranks and gives channel fit like the library-wide call', async () => {
  const core = await loadCore();
  const lib = [
    { id: 'wait', title: '稍等', shortcut: 'sd', tags: ['wait'], folder: 'Daily', parts: [{ type: 'text', text: '请稍等' }], updated_at: 5, revision: 2 },
    { id: 'card', title: 'Card', parts: [{ type: 'miniprogram', title: 'a', pagepath: 'p', thumb_media_id: 'm' }], usage_count: 3, last_used_at: 1000 },
    { id: 'broken', title: 'Broken parts', parts: [{ type: 'nope' }] },
    { id: 'refund', title: 'Refund policy', parts: [{ type: 'text', text: 'Refunds within 7 days' }] },
  ];
  const idx = new core.SearchIndex(JSON.stringify(lib));
  try {
    assert.equal(idx.length, 4);
    assert.equal(JSON.parse(idx.search('shd', 10, 0, new Float32Array(0)))[0].id, 'wait');
    assert.equal(JSON.parse(idx.search('7 days', 10, 0, new Float32Array(0)))[0].id, 'refund');
    assert.equal(JSON.parse(idx.search('broken', 10, 0, new Float32Array(0)))[0].id, 'broken');
    for (const target of [{ platform: 'udesk' }, { platform: 'sobot' }, { platform: 'wechat-mp' }]) {
      const t = JSON.stringify(target);
      assert.deepEqual([...idx.channel_fit(t)], [...core.channel_fit(t, JSON.stringify(lib))], t);
    }
    assert.throws(() => idx.channel_fit('{"platform":"fax"}'), (e) => e.code === 'invalid_target');
  } finally {
    idx.free();
  }
});

/** Every string the display model draws or links to. */
function drawnTexts(v, out = []) {
  if (typeof v === 'string') out.push(v);
  else if (Array.isArray(v)) v.forEach((x) => drawnTexts(x, out));
  else if (v && typeof v === 'object') Object.values(v).forEach((x) => drawnTexts(x, out));
  return out;
}

// The preview through the built wasm, for every render vector: its wire is exactly render's
// (payload or refusal), the rendition it names is the one the payload says, and nothing it
// draws holds a placeholder.
test('every render vector previews with render\'s wire and draws no placeholder', async () => {
  const core = await loadCore();
  const cases = renderCases(dataDir);
  assert.ok(cases.length >= 40, `expected the render vectors, found ${cases.length}`);
  const failures = [];
  for (const [file, c] of cases) {
    const rel = path.relative(dataDir, file);
    const args = [JSON.stringify(c.target ?? { platform: c.platform }), JSON.stringify(c.template), c.part ?? 0, JSON.stringify(c.context ?? {})];
    let want;
    try {
      want = { wire: JSON.parse(core.render(...args)), refusal: null };
    } catch (e) {
      want = { wire: null, refusal: { code: e.code, message: e.message } };
    }
    let p;
    try {
      p = JSON.parse(core.preview_part(...args));
    } catch (e) {
      // arguments that do not parse throw alike
      if (!want.refusal || e.code !== want.refusal.code) failures.push(`${rel}: preview threw ${e.code}, render ${JSON.stringify(want)}`);
      continue;
    }
    try {
      assert.deepEqual({ wire: p.wire, refusal: p.refusal }, want);
    } catch {
      failures.push(`${rel}: preview ${JSON.stringify({ wire: p.wire, refusal: p.refusal })}, render ${JSON.stringify(want)}`);
      continue;
    }
    if (p.wire && (p.kind !== p.wire.kind || (p.rendition > 0) !== p.wire.fallback_used || !p.display)) {
      failures.push(`${rel}: rendition ${p.rendition} ${p.kind} / display ${JSON.stringify(p.display)} against ${JSON.stringify(p.wire)}`);
    }
    if (p.display && p.display.kind !== p.kind) failures.push(`${rel}: display kind ${p.display.kind}, sent ${p.kind}`);
    const left = drawnTexts(p.display).find((s) => s.includes('{{'));
    if (left !== undefined) failures.push(`${rel}: drawn text holds a placeholder: ${left}`);
  }
  assert.equal(failures.length, 0, `${failures.length} of ${cases.length} previews differ:\n${failures.join('\n')}`);
});

test('preview of a whole template: one entry per part, dates in the agent\'s zone', async () => {
  const core = await loadCore();
  const tpl = { id: 't', title: 'T', parts: [
    { type: 'text', text: '{{date}} {{time}} {{order.id}}' },
    { type: 'rich', html: '<p onclick="x()">Hi</p><img src="https://t.example/p.gif" width="1" height="1"><script>x()</script>' },
  ] };
  // 2026-11-21T05:45:04Z at UTC-6
  const all = JSON.parse(core.preview('{"platform":"udesk"}', JSON.stringify(tpl), JSON.stringify({ now: '1795239904000', tz: '-360' })));
  assert.equal(all.length, 2);
  assert.deepEqual(all[0].missing, ['order.id']);
  assert.equal(all[0].refusal.code, 'missing_variable');
  assert.deepEqual(all[0].display, { kind: 'text', text: '2026-11-20 23:45 [order.id]' });
  assert.equal(all[1].display.kind, 'rich');
  assert.equal(all[1].display.html, JSON.parse(all[1].wire.wire).content);
  assert.match(all[1].display.html, /<img src="https:\/\/t\.example\/p\.gif"/);
  assert.doesNotMatch(all[1].display.html, /script|onclick/);
});

test('check_library names line, column and field of every error', async () => {
  const core = await loadCore();
  const check = (text) => JSON.parse(core.check_library(text));
  assert.deepEqual(check('{"quiver": 1, "templates": []}'), []);
  const syntax = check('{"quiver": 1,\n "templates": [\n  {"id": "a",, }]}');
  assert.equal(syntax.length, 1);
  assert.deepEqual([syntax[0].line, syntax[0].column, syntax[0].field], [3, 14, '']);
  const long = 'x'.repeat(1025);
  const text = [
    '{"quiver": 1, "templates": [',
    '  {"id": "a", "title": "A", "parts": [{"type": "video", "url": "https://e.x/v"}]},',
    `  {"id": "b", "title": "${long}", "parts": [{"type": "text", "text": "x"}]},`,
    '  {"id": "c", "title": "C", "parts": [{"type": "image", "url": "javascript:alert(1)"}]}',
    ']}',
  ].join('\n');
  const errs = check(text);
  assert.deepEqual(errs.map((e) => [e.line, e.column, e.field]), [
    [2, 48, 'templates[0].parts[0].type'],
    [3, 24, 'templates[1].title'],
    [4, 64, 'templates[2].parts[0].url'],
  ]);
  assert.match(errs[0].message, /unknown variant `video`/);
  assert.match(errs[1].message, /more than the limit of 1024/);
});

test('part_schema lists every kind with its fields and caps', async () => {
  const core = await loadCore();
  const s = JSON.parse(core.part_schema());
  assert.deepEqual(s.kinds.map((k) => k.kind), ['text', 'rich', 'image', 'news', 'product', 'miniprogram']);
  const product = s.kinds.find((k) => k.kind === 'product');
  assert.deepEqual(product.fields.map((f) => [f.name, f.input, f.required]),
    [['name', 'text', true], ['url', 'url_or_page', false], ['image', 'url', true], ['segments', 'list', false]]);
  assert.equal(product.fields[0].max_bytes, s.limits.label_bytes);
  assert.deepEqual(s.kinds.find((k) => k.kind === 'image').one_of, ['url', 'media_id']);
});

test('Reassembler joins chunked replies and refuses broken ones', async () => {
  const core = await loadCore();
  const whole = JSON.stringify({ id: 7, result: { text: 'héllo '.repeat(10) } });
  const chunk = (id, seq, total, data) => JSON.stringify({ id, chunk: { seq, total, data } });
  const r = new core.Reassembler();
  assert.equal(r.push(chunk(7, 1, 2, whole.slice(20))), undefined);
  assert.equal(r.pending, 1);
  assert.deepEqual(JSON.parse(r.push(chunk(7, 0, 2, whole.slice(0, 20)))), JSON.parse(whole));
  assert.equal(r.pending, 0);
  assert.throws(() => r.push(chunk(8, 3, 2, 'x')), (e) => e.code === 'internal' && /impossible/.test(e.message));
  assert.throws(() => r.push(chunk(9, 0, 1, whole)), (e) => e.code === 'internal' && /not a reply to request 9/.test(e.message));
  assert.equal(r.push(chunk(10, 0, 2, 'x')), undefined);
  r.forget('10');
  assert.equal(r.pending, 0);
  r.free();
});
