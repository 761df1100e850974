// The options page (extension page options.html): the template editor's create -> edit -> delete
// round trip persisted in the daemon (checked with `quiver templates list` and the SQLite file,
// with the session's own environment), import of a bad library file refused whole (nothing
// imported, the line and field shown), a valid import, and screenshots of the editor in English
// and Simplified Chinese (tests/e2e/artifacts/screenshots/).
import test from 'node:test';
import assert from 'node:assert/strict';
import { config, withSession } from '../lib/harness.mjs';
import { openOptions, cliTemplates, sqlite, setValue, until, screenshot } from '../lib/extension-pages.mjs';

const { browser } = config();
const ID = 'e2e-roundtrip';

/** Clicks `selector`; again if the page re-rendered it between finding and clicking. */
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

async function revisionShown(page, n) {
  return until(page, `revision ${n} in the editor`, (n) => {
    const el = document.querySelector('[data-testid="quiver-editor-revision"]');
    return el?.dataset.revision === String(n) ? el.textContent : null;
  }, n);
}

test(`[${browser}] options editor: create, edit, delete, persisted in the daemon`, { timeout: 180_000 }, async (t) => {
  await withSession('options-editor', async (session) => {
    const page = await openOptions(session);

    // Create.
    await click(page, '[data-testid="quiver-new-template"]');
    // An id that exists is refused (a new template never overwrites another).
    await setValue(page, '[data-testid="quiver-field-id"]', 'greeting');
    await setValue(page, '[data-testid="quiver-field-title"]', 'Clash');
    await click(page, '[data-testid="quiver-save"]');
    await page.waitForSelector('[data-testid="quiver-editor-message"][data-code="id_taken"]');
    await setValue(page, '[data-testid="quiver-field-id"]', ID);
    await setValue(page, '[data-testid="quiver-field-title"]', 'Round trip');
    await setValue(page, '[data-testid="quiver-field-folder"]', 'Tests/E2E');
    await setValue(page, '[data-testid="quiver-field-tags"]', 'e2e, 测试');
    await setValue(page, '[data-testid="quiver-field-shortcut"]', 'rt');
    await click(page, '[data-testid="quiver-var-add"]');
    await setValue(page, '[data-testid="quiver-var-name"]', 'customer.name');
    await setValue(page, '[data-testid="quiver-var-label"]', 'Customer name');
    await setValue(page, '[data-testid="quiver-part"][data-index="0"] [data-testid="quiver-part-text"]', 'Hi {{customer.name}}, welcome!');
    // A second part: a product card with a text fallback.
    await page.select('[data-testid="quiver-part-add-type"]', 'product');
    await click(page, '[data-testid="quiver-part-add"]');
    const p1 = '[data-testid="quiver-part"][data-index="1"]';
    await setValue(page, `${p1} [data-testid="quiver-part-name"]`, 'Blue mug');
    await setValue(page, `${p1} [data-testid="quiver-part-image"]`, 'https://shop.example.com/mug.png');
    await setValue(page, `${p1} [data-testid="quiver-part-url"]`, 'https://shop.example.com/mug');
    await click(page, `${p1} [data-testid="quiver-segment-add"]`);
    await setValue(page, `${p1} [data-testid="quiver-segment-text"]`, '¥39');
    await setValue(page, `${p1} [data-testid="quiver-segment-color"]`, '#ff0000');
    await click(page, `${p1} [data-testid="quiver-fallback-add"]`);
    await setValue(page, `${p1} .fallback [data-testid="quiver-part-text"]`, 'Blue mug: https://shop.example.com/mug');

    // Live preview (wasm core): Udesk, any channel -> part 0 is text with the sample name, the
    // product card falls back to text (only web and SDK >= 5.1 show cards).
    const wire0 = await until(page, 'the preview of part 0', () => {
      const el = document.querySelector('[data-testid="quiver-preview-part"][data-index="0"] [data-testid="quiver-preview-wire"]');
      return el?.textContent.includes('Hi Ada') ? el.textContent : null;
    });
    t.diagnostic(`preview wire of part 0: ${wire0}`);
    await until(page, 'the fallback notice of part 1', () => Boolean(document.querySelector('[data-testid="quiver-preview-part"][data-index="1"] [data-testid="quiver-preview-fallback"]')));
    // On the web channel the card itself goes.
    await page.select('[data-testid="quiver-preview-channel"]', 'web');
    await until(page, 'the product card on the web channel', () => {
      const li = document.querySelector('[data-testid="quiver-preview-part"][data-index="1"]');
      return li?.dataset.state === 'ok' && !li.querySelector('[data-testid="quiver-preview-fallback"]');
    });
    // A missing variable is refused in place with its code.
    await setValue(page, '[data-testid="quiver-preview-context"]', '{}');
    const code = await until(page, 'a refusal in the preview', () => document.querySelector('[data-testid="quiver-preview-part"][data-index="0"] [data-testid="quiver-preview-refusal"]')?.dataset.code);
    assert.equal(code, 'missing_variable');
    await setValue(page, '[data-testid="quiver-preview-context"]', '{"customer.name": "Ada"}');

    await click(page, '[data-testid="quiver-save"]');
    await revisionShown(page, 1);
    await page.waitForSelector(`[data-testid="quiver-lib-item"][data-template-id="${ID}"]`, { timeout: 10_000 });
    await screenshot(page, `options-editor-${browser}-en.png`);

    let listed = (await cliTemplates(session)).find((x) => x.id === ID);
    assert.ok(listed, '`quiver templates list` shows the new template');
    assert.equal(listed.revision, 1);
    assert.equal(listed.title, 'Round trip');
    assert.equal(listed.folder, 'Tests/E2E');
    assert.deepEqual(listed.tags, ['e2e', '测试']);
    assert.equal(listed.shortcut, 'rt');
    assert.equal(listed.variables?.[0]?.name, 'customer.name');
    assert.equal(listed.variables?.[0]?.label, 'Customer name');
    assert.equal(listed.parts.length, 2);
    assert.equal(listed.parts[0].text, 'Hi {{customer.name}}, welcome!');
    assert.equal(listed.parts[1].type, 'product');
    assert.equal(listed.parts[1].segments[0].color, '#ff0000');
    assert.equal(listed.parts[1].fallback.type, 'text');

    // Edit: a new revision.
    await setValue(page, '[data-testid="quiver-field-title"]', 'Round trip, edited');
    await click(page, '[data-testid="quiver-part"][data-index="1"] [data-testid="quiver-part-up"]');
    await click(page, '[data-testid="quiver-save"]');
    await revisionShown(page, 2);
    listed = (await cliTemplates(session)).find((x) => x.id === ID);
    assert.equal(listed.revision, 2);
    assert.equal(listed.title, 'Round trip, edited');
    assert.equal(listed.parts[0].type, 'product', 'the parts were reordered');
    const revs = await sqlite(session, `SELECT revision FROM template_revisions WHERE template_id = '${ID}' ORDER BY revision`);
    assert.deepEqual(revs.map((r) => r.revision), [1, 2], 'both revisions are kept in SQLite');

    // Revisions: revision 1 can be shown again (to restore it by saving).
    await until(page, 'the revisions select', () => document.querySelectorAll('[data-testid="quiver-editor-revisions"] option').length === 2);
    await page.select('[data-testid="quiver-editor-revisions"]', '1');
    await until(page, 'revision 1 in the form', () => document.querySelector('[data-testid="quiver-field-title"]').value === 'Round trip');

    // Unsaved edits are not dropped by opening another template: a warning first.
    await setValue(page, '[data-testid="quiver-field-title"]', 'Unsaved title');
    await click(page, '[data-testid="quiver-lib-item"][data-template-id="greeting"]');
    await page.waitForSelector('[data-testid="quiver-editor-message"][data-code="unsaved"]');
    assert.equal(await page.$eval('[data-testid="quiver-field-id"]', (e) => e.value), ID);
    await click(page, '[data-testid="quiver-revert"]');
    await until(page, 'the current revision back', () => document.querySelector('[data-testid="quiver-field-title"]').value === 'Round trip, edited');

    // Delete (two presses).
    await click(page, '[data-testid="quiver-delete"]');
    await page.waitForSelector('[data-testid="quiver-delete"][data-armed]');
    await click(page, '[data-testid="quiver-delete"]');
    await page.waitForSelector(`#editor-empty[data-deleted="${ID}"]`, { timeout: 10_000 });
    await until(page, 'the template gone from the list', (id) => !document.querySelector(`[data-testid="quiver-lib-item"][data-template-id="${id}"]`), ID);
    assert.equal((await cliTemplates(session)).find((x) => x.id === ID), undefined, 'deleted: not in `quiver templates list`');
    const row = await sqlite(session, `SELECT deleted_at FROM templates WHERE id = '${ID}'`);
    assert.ok(row[0]?.deleted_at, 'a tombstone in SQLite');
  });
});

// The editor's preview draws the core's display: a rich part's sanitized HTML as the wire has it
// (a tracking <img> that is sent is shown), placeholders filled as on the wire (`{{date}}` in the
// agent's zone, a missing variable as the core draws it).
test(`[${browser}] options preview: the rich part as sent (its img too), {{date}} as on the wire`, { timeout: 120_000 }, async (t) => {
  await withSession('options-preview', async (session) => {
    const page = await openOptions(session);
    await click(page, '[data-testid="quiver-new-template"]');
    const p0 = '[data-testid="quiver-part"][data-index="0"]';
    await page.select(`${p0} [data-testid="quiver-part-type"]`, 'rich');
    await setValue(page, `${p0} [data-testid="quiver-part-html"]`, '<p>Hi <b>{{customer.name}}</b>, on {{date}}<img src="https://t.example/pixel.gif" width="1" height="1"><script>x()</script></p>');
    const pv0 = '[data-testid="quiver-preview-part"][data-index="0"]';
    const seen = await until(page, 'the rich preview', (S) => {
      const li = document.querySelector(S);
      const wire = li?.querySelector('[data-testid="quiver-preview-wire"]')?.textContent;
      const visual = li?.querySelector('[data-testid="quiver-preview-visual"]');
      if (!wire || !visual?.textContent.includes('Ada')) return null;
      const d = new Date();
      const pad = (n) => String(n).padStart(2, '0');
      return {
        wire,
        text: visual.textContent,
        img: visual.querySelector('img')?.getAttribute('src') ?? null,
        bold: visual.querySelector('b')?.textContent ?? null,
        script: visual.querySelectorAll('script').length,
        local: `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`,
      };
    }, pv0);
    t.diagnostic(`preview: ${JSON.stringify(seen)}`);
    assert.equal(seen.img, 'https://t.example/pixel.gif', 'the tracking <img> the wire carries is shown');
    assert.equal(seen.bold, 'Ada');
    assert.equal(seen.script, 0, 'what the sanitizer removes is not drawn');
    assert.equal(seen.text, `Hi Ada, on ${seen.local}`, 'the date in the agent\'s zone');
    const content = JSON.parse(seen.wire).content;
    assert.match(String(content), new RegExp(`on ${seen.local}<img`), 'the wire carries the same date');

    // A missing variable: refused with its code, and drawn as the core draws it.
    await setValue(page, '[data-testid="quiver-preview-context"]', '{}');
    const missing = await until(page, 'the refusal', (S) => {
      const li = document.querySelector(S);
      const code = li?.querySelector('[data-testid="quiver-preview-refusal"]')?.dataset.code;
      return code ? { code, text: li.querySelector('[data-testid="quiver-preview-visual"]')?.textContent ?? null } : null;
    }, pv0);
    assert.equal(missing.code, 'missing_variable');
    assert.equal(missing.text, `Hi [customer.name], on ${seen.local}`);
  });
});

const BAD_LIBRARY = `{
  "quiver": 1,
  "templates": [
    {"id": "imp-ok", "title": "Fine", "parts": [{"type": "text", "text": "ok"}]},
    {
      "id": "imp-bad",
      "title": "Bad colour",
      "parts": [
        {"type": "product", "name": "Mug", "image": "https://x.example/m.png",
         "segments": [{"text": "¥39",
                       "color": "red"}]}
      ]
    },
    {"id": "imp-ok", "title": "Again", "parts": [{"type": "text", "text": ""}]}
  ]
}
`;
const GOOD_LIBRARY = JSON.stringify({
  quiver: 1,
  templates: [
    { id: 'imp-one', title: '退款进度', folder: '售后', tags: ['退款'], shortcut: 'tk', parts: [{ type: 'text', text: '您的退款正在处理。' }] },
    { id: 'imp-two', title: 'Coupon', variables: [{ name: 'code', label: 'Code', required: true }], parts: [{ type: 'text', text: 'Your code: {{code}}' }] },
  ],
}, null, 2);

test(`[${browser}] options import: a bad file imports nothing and names line, column and field of every error; a good one imports`, { timeout: 180_000 }, async (t) => {
  await withSession('options-import', async (session) => {
    const page = await openOptions(session, '#import');
    const before = (await cliTemplates(session)).map((x) => x.id).sort();

    await setValue(page, '[data-testid="quiver-import-text"]', BAD_LIBRARY);
    await click(page, '[data-testid="quiver-import-run"]');
    const err = await until(page, 'the import error', () => {
      const el = document.querySelector('[data-testid="quiver-import-error"]');
      const more = [...document.querySelectorAll('[data-testid="quiver-import-error-more"]')]
        .map((e) => ({ line: e.dataset.line, column: e.dataset.column, field: e.dataset.field }));
      return el ? { line: el.dataset.line, column: el.dataset.column, field: el.dataset.field, text: el.textContent, more } : null;
    });
    t.diagnostic(`import errors: ${JSON.stringify(err)}`);
    // The core's check_library: every error with its line, column and field, the importer's first.
    assert.equal(err.field, 'templates[1].parts[0].segments[0].color', JSON.stringify(err));
    assert.equal(err.line, '11', `the line of "color": ${JSON.stringify(err)}`);
    assert.equal(err.column, '33', `the column of "red": ${JSON.stringify(err)}`);
    assert.match(err.text, /11/);
    assert.match(err.text, /#RRGGBB/);
    assert.deepEqual(err.more, [
      { line: '14', column: '75', field: 'templates[2].parts[0].text' },
      { line: '14', column: '12', field: 'templates[2].id' },
    ], 'the other errors of the file are listed too');
    assert.deepEqual((await cliTemplates(session)).map((x) => x.id).sort(), before, 'nothing was imported, not even the good template');

    // Malformed JSON: line and column of the syntax error.
    await setValue(page, '[data-testid="quiver-import-text"]', '{"quiver": 1,\n "templates": [}\n');
    await click(page, '[data-testid="quiver-import-run"]');
    const syn = await until(page, 'the syntax error', () => {
      const el = document.querySelector('[data-testid="quiver-import-error"]');
      return el?.dataset.line === '2' ? { line: el.dataset.line, column: el.dataset.column } : null;
    });
    assert.equal(syn.column, '16');

    await setValue(page, '[data-testid="quiver-import-text"]', GOOD_LIBRARY);
    await click(page, '[data-testid="quiver-import-run"]');
    await page.waitForSelector('[data-testid="quiver-import-result"][data-state="ok"] [data-testid="quiver-import-ok"]', { timeout: 15_000 });
    const after = await cliTemplates(session);
    assert.deepEqual(after.map((x) => x.id).sort(), [...before, 'imp-one', 'imp-two'].sort());
    assert.equal(after.find((x) => x.id === 'imp-one').title, '退款进度');
    // Export: the whole library as one file (downloaded; the page reports the count).
    await click(page, '[data-testid="quiver-export-run"]');
    const exported = await until(page, 'the export count', () => document.querySelector('#export-result')?.dataset.count);
    assert.equal(Number(exported), after.length);
    // The library list follows (library.changed event or reload).
    await page.click('[data-testid="quiver-tab-library"]');
    await page.waitForSelector('[data-testid="quiver-lib-item"][data-template-id="imp-one"]', { timeout: 10_000 });
    // Pinyin initials through the daemon's search.
    await setValue(page, '[data-testid="quiver-lib-search"]', 'tkjd');
    await until(page, 'search by pinyin initials', () => {
      const items = [...document.querySelectorAll('[data-testid="quiver-lib-item"]')];
      return items.length >= 1 && items[0].dataset.templateId === 'imp-one';
    });
    // Tag filter (the daemon's search with `tag`).
    await setValue(page, '[data-testid="quiver-lib-search"]', '');
    await page.select('[data-testid="quiver-lib-tag-filter"]', '退款');
    await until(page, 'the tag filter', () => {
      const ids = [...document.querySelectorAll('[data-testid="quiver-lib-item"]')].map((e) => e.dataset.templateId);
      return ids.length === 1 && ids[0] === 'imp-one';
    });
  });
});

test(`[${browser}] options editor in Simplified Chinese (screenshot)`, { timeout: 120_000 }, async (t) => {
  await withSession('options-zh', async (session) => {
    const page = await openOptions(session, '#edit=greeting');
    await revisionShown(page, 1);
    const lang = await page.evaluate(() => document.documentElement.lang);
    const tab = await page.$eval('[data-testid="quiver-tab-library"]', (e) => e.textContent);
    t.diagnostic(`UI language ${lang}, library tab "${tab}"`);
    // Firefox shows only the languages it has a language pack for (`cargo xtask deps` installs
    // Debian's firefox-esr-l10n-zh-cn): a missing one fails here, it is not skipped.
    assert.match(lang, /^zh/, `the page runs in ${lang}, not zh-CN (Firefox: install its zh-CN language pack)`);
    assert.equal(tab, '模板');
    await screenshot(page, `options-editor-${browser}-zh_CN.png`);
  }, { locale: 'zh-CN' });
});
