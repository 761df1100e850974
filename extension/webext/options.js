// @ts-check
/*
 * Quiver options page: the template library editor (with live previews through the wasm core),
 * import/export of library files, site rules, the send history and the daemon's status.
 * Everything is kept by the daemon (through the background's `quiver-page` port), except the
 * site rules, which live in storage.local (`siteRules`, read by the content script).
 */
import { api } from './lib/browser.js';
import { loadCore as loadWasmCore } from './lib/core.js';
import { t, translate } from './lib/i18n.js';
import { drawDisplay, renderContext } from './lib/draw.js';
import { connect, h, nextId, showStatus } from './lib/page.js';
import { isRulePattern, originPermission, parseWorkspaces, permissionsFor } from './lib/sites.js';

const $ = (sel, root = document) => root.querySelector(sel);

const PLATFORM_NAMES = { udesk: 'Udesk', sobot: 'Sobot', 'wechat-dkf': 'platform_wechat_dkf', 'wechat-mp': 'platform_wechat_mp' };
const platformName = (p) => (PLATFORM_NAMES[p]?.startsWith('platform_') ? t(PLATFORM_NAMES[p]) : PLATFORM_NAMES[p] ?? p);
/**
 * The part schema (the core's `part_schema()`, read from the model): the editor's forms are built
 * from it. Null until the core is loaded.
 * @typedef {{name: string, input: string, required: boolean, max_bytes: number | null, min_items: number | null, max_items: number | null, items: SchemaField[] | null}} SchemaField
 * @typedef {{kind: string, one_of: string[], fields: SchemaField[]}} SchemaKind
 * @type {{kinds: SchemaKind[]} | null}
 */
let schema = null;
/** @param {string} kind */
const kindSchema = (kind) => schema?.kinds.find((k) => k.kind === kind) ?? null;
const IMPORT_BATCH_BYTES = 3 * 1024 * 1024;
const SITE_RULES_KEY = 'siteRules';
const SITE_PLATFORMS = ['udesk', 'sobot', 'wechat-dkf'];
/** Browser errors of connectNative and what fixes them. */
const FIXES = [
  { match: 'Specified native messaging host not found', error: 'Specified native messaging host not found.', fix: 'fix_not_found_chromium', cmd: 'quiver install --browser chromium' },
  { match: 'Access to the specified native messaging host is forbidden', error: 'Access to the specified native messaging host is forbidden.', fix: 'fix_forbidden', cmd: 'quiver install --browser chromium' },
  { match: 'No such native application', error: 'No such native application dev.quiver.host', fix: 'fix_not_found_firefox', cmd: 'quiver install --browser firefox' },
  { match: 'daemon down', error: 'daemon down: …', fix: 'fix_daemon_down', cmd: 'quiver doctor' },
  { match: 'protocol mismatch', error: 'protocol mismatch: …', fix: 'fix_protocol', cmd: 'quiver daemon --stop' },
];

let rpc;
let core = null; // the wasm core once loaded
let lastStatus = { state: 'down', host: 'disconnected', reason: null, daemon: null };

// ---------------------------------------------------------------------------------------------
// Tabs

function setupTabs() {
  const tabs = [.../** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll('[role="tab"]'))];
  const select = (tab, focus = true) => {
    for (const t2 of tabs) {
      const on = t2 === tab;
      t2.setAttribute('aria-selected', String(on));
      t2.tabIndex = on ? 0 : -1;
      document.getElementById(t2.getAttribute('aria-controls')).hidden = !on;
    }
    if (focus) tab.focus();
    const id = tab.id.replace('tab-', '');
    if (id === 'history' && !hist.loaded) loadHistory(true);
    if (id === 'sites') renderSiteRules();
    if (id === 'daemon') loadDaemonPanel();
  };
  for (const tab of tabs) {
    tab.addEventListener('click', () => select(tab));
    tab.addEventListener('keydown', (/** @type {KeyboardEvent} */ e) => {
      const i = tabs.indexOf(tab);
      let next = null;
      if (e.key === 'ArrowRight') next = tabs[(i + 1) % tabs.length];
      else if (e.key === 'ArrowLeft') next = tabs[(i - 1 + tabs.length) % tabs.length];
      else if (e.key === 'Home') next = tabs[0];
      else if (e.key === 'End') next = tabs[tabs.length - 1];
      if (next) { e.preventDefault(); select(next); }
    });
  }
  return (name) => select(document.getElementById(`tab-${name}`), false);
}

// ---------------------------------------------------------------------------------------------
// Status

function onStatus(status) {
  const wasUp = lastStatus.state === 'up';
  lastStatus = status;
  showStatus($('[data-testid="quiver-options-status"]'), status);
  renderDaemonFacts();
  if (status.state === 'up' && !wasUp) {
    loadLibrary();
    if (pendingOpen) { const id = pendingOpen; pendingOpen = null; openTemplate(id); }
  }
}

let reloadTimer = null;
function onEvent(name, data) {
  if (name === 'library.changed' || name === 'events.lost') {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(loadLibrary, 150);
    if (editor.id && !editor.isNew && Array.isArray(data?.ids) && data.ids.includes(editor.id) && !editor.saving) {
      refreshRevision();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Library list

const library = { templates: [], query: '', folder: '', tag: '', all: [] };

async function listAll() {
  const all = [];
  let cursor = null;
  do {
    const r = await rpc.call('templates.list', cursor ? { cursor, limit: 500 } : { limit: 500 });
    all.push(...r.templates);
    cursor = r.next_cursor;
  } while (cursor);
  return all;
}

async function loadLibrary() {
  try {
    const q = library.query.trim();
    const all = await listAll();
    library.all = all;
    if (q || library.folder || library.tag) {
      // The daemon's search: pinyin, initials, typos; folder includes subfolders.
      const params = { query: q, limit: 500 };
      if (library.folder) params.folder = library.folder;
      if (library.tag) params.tag = library.tag;
      const r = await rpc.call('templates.search', params);
      library.templates = r.results.map((x) => x.template);
    } else {
      library.templates = all;
    }
    renderFilters();
    renderLibrary();
  } catch (e) {
    $('#lib-count').textContent = t('error_code', [e.code, e.message]);
  }
}

/** Folder and tag choices, from the whole library (kept when the current one disappears). */
function renderFilters() {
  const fill = (sel, values, current, allKey) => {
    const vals = [...new Set(values)].filter(Boolean).sort((a, b) => a.localeCompare(b));
    if (current && !vals.includes(current)) vals.unshift(current);
    sel.replaceChildren(h('option', { value: '' }, t(allKey)), ...vals.map((v) => h('option', { value: v }, v)));
    sel.value = current;
  };
  const folders = library.all.flatMap((x) => {
    // Every level of a/b/c, so a parent folder can be chosen.
    const parts = (x.folder || '').split('/').filter(Boolean);
    return parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  });
  fill($('#lib-folder'), folders, library.folder, 'library_all_folders');
  fill($('#lib-tag'), library.all.flatMap((x) => x.tags ?? []), library.tag, 'library_all_tags');
}

function renderLibrary() {
  const tree = $('#lib-tree');
  const list = library.templates;
  $('#lib-count').textContent = t('library_count', String(list.length));
  const folders = new Map();
  for (const tpl of list) {
    const f = tpl.folder || '';
    if (!folders.has(f)) folders.set(f, []);
    folders.get(f).push(tpl);
  }
  const names = [...folders.keys()];
  if (!library.query.trim() && !library.tag && !library.folder) names.sort((a, b) => (a === '' ? 1 : b === '' ? -1 : a.localeCompare(b)));
  const groups = names.map((folder) => {
    const headId = nextId('folder');
    return h('section', { class: 'folder', 'aria-labelledby': headId, dataset: { testid: 'quiver-lib-folder', folder } },
      h('h3', { id: headId, class: 'folder-name' }, folder || t('library_no_folder')),
      h('ul', { class: 'items' }, folders.get(folder).map((tpl) => h('li', {},
        h('button', {
          type: 'button',
          class: `item${tpl.id === editor.id ? ' current' : ''}`,
          'aria-current': tpl.id === editor.id ? 'true' : null,
          dataset: { testid: 'quiver-lib-item', templateId: tpl.id, revision: String(tpl.revision ?? '') },
          onclick: () => openTemplate(tpl.id),
        },
        h('span', { class: 'item-title' }, tpl.title),
        tpl.shortcut ? h('kbd', { class: 'shortcut', title: t('field_shortcut') }, tpl.shortcut) : null,
        h('span', { class: 'rev' }, t('revision_n', String(tpl.revision ?? 1))),
        (tpl.tags ?? []).length ? h('span', { class: 'tags' }, tpl.tags.map((tag) => h('span', { class: 'tag' }, tag))) : null)))));
  });
  // Keep the keyboard focus on the same template across a re-render (library.changed events).
  const active = document.activeElement;
  const focusedId = active instanceof HTMLElement && tree.contains(active) ? active.dataset.templateId : null;
  tree.replaceChildren(...groups);
  if (focusedId) tree.querySelector(`[data-template-id="${CSS.escape(focusedId)}"]`)?.focus();
  if (!list.length) tree.append(h('p', { class: 'muted', dataset: { testid: 'quiver-lib-empty' } }, t('library_empty')));
  $('#folder-list').replaceChildren(...[...new Set(list.map((x) => x.folder).filter(Boolean))].sort().map((f) => h('option', { value: f })));
}

// ---------------------------------------------------------------------------------------------
// Editor

const editor = {
  id: null, // id of the template open (as stored), null when none
  isNew: false,
  revision: null, // current revision in the store
  model: null, // the template being edited
  saving: false,
  deleteArmed: false,
};
let pendingOpen = null;

function blankTemplate() {
  return { id: '', title: '', folder: '', tags: [], shortcut: '', variables: [], parts: [{ type: 'text', text: '' }] };
}

/** An empty item of a list field (strings empty; flags and numbers left out). */
function blankItem(/** @type {SchemaField[]} */ fields) {
  /** @type {Record<string, unknown>} */
  const o = {};
  for (const f of fields) if (!['bool', 'number', 'list'].includes(f.input)) o[f.name] = '';
  return o;
}

/** A new part of `type`: its required fields (and the first of a one-of) empty, lists at their minimum. */
function blankPart(type) {
  const k = kindSchema(type);
  /** @type {Record<string, unknown>} */
  const o = { type };
  for (const f of k?.fields ?? []) {
    if (f.input === 'list') o[f.name] = Array.from({ length: f.min_items ?? 0 }, () => blankItem(f.items ?? []));
    else if (f.required || k?.one_of[0] === f.name) o[f.name] = '';
  }
  return o;
}

/**
 * True when the edits in the form may be dropped: nothing unsaved, or the same action was asked
 * a second time after the warning (no modal dialog: a second press confirms).
 */
function mayDiscard(key) {
  if (!editor.dirty || editor.discardKey === key) return true;
  editor.discardKey = key;
  showEditorMessage('warn', t('editor_unsaved'), { code: 'unsaved' });
  return false;
}

async function openTemplate(id, { force = false } = {}) {
  if (!force && !mayDiscard(`open:${id}`)) return;
  if (lastStatus.state !== 'up') { pendingOpen = id; return; }
  try {
    const r = await rpc.call('templates.get', { id });
    loadEditor(r.template, false, r.current_revision ?? r.revision ?? r.template.revision);
  } catch (e) {
    showEditorMessage('error', t('error_code', [e.code, e.message]));
  }
}

function loadEditor(tpl, isNew, revision, shownRevision = null) {
  editor.model = structuredClone(tpl);
  delete editor.model.revision;
  editor.model.tags ??= [];
  editor.model.variables ??= [];
  editor.id = isNew ? null : tpl.id;
  editor.isNew = isNew;
  editor.revision = revision ?? null;
  editor.dirty = false;
  editor.discardKey = null;
  disarmDelete();
  const form = $('#editor');
  form.hidden = false;
  $('#editor-empty').hidden = true;
  $('#preview').hidden = false;
  form.elements.id.value = tpl.id ?? '';
  form.elements.id.readOnly = !isNew;
  form.elements.title.value = tpl.title ?? '';
  form.elements.folder.value = tpl.folder ?? '';
  form.elements.shortcut.value = tpl.shortcut ?? '';
  form.elements.tags.value = (tpl.tags ?? []).join(', ');
  $('#editor-heading').textContent = isNew ? t('editor_new') : t('editor_edit', tpl.title || tpl.id);
  $('#editor-delete').hidden = isNew;
  showRevision();
  hideEditorMessage();
  editor.shownRevision = shownRevision;
  if (!shownRevision) loadRevisions();
  renderVars();
  renderParts();
  renderLibrary();
  schedulePreview();
}

/** The revisions select: every kept revision, newest first; picking one loads it for restoring. */
async function loadRevisions() {
  const label = $('#revs-label');
  const sel = $('#editor-revs');
  if (!editor.id) { label.hidden = true; return; }
  let revisions;
  try {
    // With dates, when the background lets extension pages call templates.revisions; else the
    // numbers 1..current (every revision is kept, and templates.get reads any of them).
    const r = await rpc.call('templates.revisions', { id: editor.id, limit: 100 });
    const fmt = new Intl.DateTimeFormat(t('page_lang'), { dateStyle: 'short', timeStyle: 'short' });
    revisions = r.revisions.map((x) => [x.revision, `${t('revision_n', String(x.revision))} · ${fmt.format(new Date(x.created_at))}`]);
  } catch {
    revisions = [];
    for (let n = editor.revision ?? 0; n >= 1 && revisions.length < 100; n--) revisions.push([n, t('revision_n', String(n))]);
  }
  sel.replaceChildren(...revisions.map(([n, text]) => h('option', { value: String(n) }, text)));
  sel.value = String(editor.revision);
  label.hidden = revisions.length < 2;
}

async function showOldRevision(rev) {
  const id = editor.id;
  try {
    if (!mayDiscard(`rev:${rev}`)) { $('#editor-revs').value = String(editor.shownRevision ?? editor.revision); return; }
    if (rev === editor.revision) { await openTemplate(id, { force: true }); return; }
    const r = await rpc.call('templates.get', { id, revision: rev });
    loadEditor(r.template, false, editor.revision, rev);
    $('#editor-revs').value = String(rev);
    showEditorMessage('warn', t('editor_old_revision', [String(rev), String(editor.revision)]), { code: 'old_revision' });
  } catch (e) {
    showEditorMessage('error', t('error_code', [e.code, e.message]), { code: e.code });
  }
}

function showRevision() {
  const el = $('[data-testid="quiver-editor-revision"]');
  el.dataset.revision = editor.revision == null ? '' : String(editor.revision);
  el.textContent = editor.revision == null ? t('revision_unsaved') : t('revision_n', String(editor.revision));
}

async function refreshRevision() {
  try {
    const r = await rpc.call('templates.get', { id: editor.id });
    if (r.current_revision !== editor.revision) {
      showEditorMessage('warn', t('editor_changed_elsewhere', String(r.current_revision)));
    }
  } catch { /* deleted elsewhere: the save will say so */ }
}

function showEditorMessage(kind, text, extra = {}) {
  const el = $('#editor-message');
  el.hidden = false;
  el.className = `message ${kind}`;
  el.dataset.kind = kind;
  el.dataset.code = extra.code ?? '';
  el.dataset.field = extra.field ?? '';
  el.textContent = text;
}
function hideEditorMessage() { $('#editor-message').hidden = true; }

function renderVars() {
  const box = $('#vars');
  const vars = editor.model.variables;
  box.replaceChildren(...vars.map((v, i) => h('div', { class: 'var-row', role: 'group', 'aria-label': t('vars_n', String(i + 1)), dataset: { testid: 'quiver-var' } },
    labeled(t('var_name'), h('input', { value: v.name ?? '', spellcheck: 'false', autocomplete: 'off', dataset: { testid: 'quiver-var-name' }, oninput: (e) => { v.name = e.target.value; schedulePreview(); } })),
    labeled(t('var_label'), h('input', { value: v.label ?? '', autocomplete: 'off', dataset: { testid: 'quiver-var-label' }, oninput: (e) => { v.label = e.target.value; } })),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', checked: v.required, dataset: { testid: 'quiver-var-required' }, onchange: (e) => { v.required = e.target.checked; schedulePreview(); } }), t('var_required')),
    h('button', { type: 'button', class: 'icon', 'aria-label': t('vars_remove', v.name || String(i + 1)), dataset: { testid: 'quiver-var-remove' }, onclick: () => { vars.splice(i, 1); renderVars(); schedulePreview(); $('#var-add').focus(); } }, '✕'))));
}

function labeled(text, control, cls = '') {
  return h('label', { class: cls || null }, h('span', {}, text), control);
}

/** Re-renders the parts list; `focusSel` is focused afterwards (after a move or add). */
function renderParts(focusSel) {
  const parts = editor.model.parts;
  $('#parts').replaceChildren(...parts.map((p, i) => h('li', { class: 'part', dataset: { testid: 'quiver-part', index: String(i), type: p.type } },
    partEditor(p, (np) => { parts[i] = np; renderParts(`[data-testid="quiver-part"][data-index="${i}"] select`); }, {
      title: t('part_n', [String(i + 1), t(`type_${p.type}`)]),
      index: i,
      controls: [
        h('button', { type: 'button', class: 'icon', disabled: i === 0, 'aria-label': t('part_up', String(i + 1)), dataset: { testid: 'quiver-part-up' }, onclick: () => movePart(i, -1) }, '↑'),
        h('button', { type: 'button', class: 'icon', disabled: i === parts.length - 1, 'aria-label': t('part_down', String(i + 1)), dataset: { testid: 'quiver-part-down' }, onclick: () => movePart(i, 1) }, '↓'),
        h('button', { type: 'button', class: 'icon', disabled: parts.length === 1, 'aria-label': t('part_remove', String(i + 1)), dataset: { testid: 'quiver-part-remove' }, onclick: () => { parts.splice(i, 1); renderParts('#part-add'); schedulePreview(); } }, '✕'),
      ],
    }))));
  if (focusSel) document.querySelector(focusSel)?.focus();
}

function movePart(i, d) {
  const parts = editor.model.parts;
  [parts[i], parts[i + d]] = [parts[i + d], parts[i]];
  renderParts(`[data-testid="quiver-part"][data-index="${i + d}"] [data-testid="${d < 0 ? 'quiver-part-up' : 'quiver-part-down'}"]`);
  if (/** @type {HTMLButtonElement | null} */ (document.activeElement)?.disabled || document.activeElement === document.body) {
    const select = document.querySelector(`[data-testid="quiver-part"][data-index="${i + d}"] select`);
    if (select instanceof HTMLElement) select.focus();
  }
  schedulePreview();
}

/**
 * The editor of one part (and, recursively, its fallback). `replace(newPart)` swaps the part
 * (on a type change).
 */
/**
 * @param {any} part
 * @param {(part: any) => void} replace
 * @param {{title: string, index?: number, controls?: HTMLElement[], depth?: number}} opts
 */
function partEditor(part, replace, { title, controls = [], depth = 0 }) {
  const box = h('fieldset', { class: `part-editor depth-${depth}` });
  box.append(h('legend', {}, title));
  const typeSel = h('select', { dataset: { testid: 'quiver-part-type' }, 'aria-label': t('part_type') },
    (schema?.kinds ?? []).map(({ kind: ty }) => h('option', { value: ty, selected: ty === part.type ? true : null }, t(`type_${ty}`))));
  typeSel.value = part.type;
  typeSel.addEventListener('change', () => {
    const np = blankPart(typeSel.value);
    if (part.fallback) np.fallback = part.fallback;
    replace(np);
    schedulePreview();
  });
  box.append(h('div', { class: 'part-head' }, labeled(t('part_type'), typeSel), h('span', { class: 'spacer' }), controls));

  const fields = h('div', { class: 'grid2' });
  const lists = [];
  for (const f of kindSchema(part.type)?.fields ?? []) {
    if (f.input === 'list') { lists.push(listEditor(part, f)); continue; }
    const ctl = fieldInput(part, f, `quiver-part-${f.name}`);
    const wide = f.input === 'textarea' || f.input === 'html';
    fields.append(labeled(`${t(`pf_${f.name}`)}${f.required ? ' *' : ''}`, ctl, wide ? 'wide' : ''));
  }
  box.append(fields, ...lists);

  // Fallback
  const fb = h('div', { class: 'fallback' });
  if (part.fallback) {
    fb.append(partEditor(part.fallback, (np) => { part.fallback = np; rerenderAll(); }, {
      title: t('part_fallback'),
      depth: depth + 1,
      controls: [h('button', { type: 'button', dataset: { testid: 'quiver-fallback-remove' }, onclick: () => { delete part.fallback; rerenderAll(); schedulePreview(); } }, t('fallback_remove'))],
    }));
  } else {
    fb.append(h('button', { type: 'button', dataset: { testid: 'quiver-fallback-add' }, onclick: () => { part.fallback = blankPart('text'); rerenderAll(); schedulePreview(); } }, t('fallback_add')));
  }
  box.append(fb);
  return box;
}

function rerenderAll() { renderParts(); }

/**
 * The control of one field of `owner` (a part or a list item), by the schema's input kind.
 * @param {Record<string, any>} owner
 * @param {SchemaField} f
 * @param {string} testid
 * @returns {HTMLElement}
 */
function fieldInput(owner, f, testid) {
  const name = f.name;
  if (f.input === 'bool') {
    return h('input', { type: 'checkbox', checked: owner[name] ? true : null, dataset: { testid }, onchange: (e) => { if (e.target.checked) owner[name] = true; else delete owner[name]; schedulePreview(); } });
  }
  if (f.input === 'number') {
    const ctl = h('input', { type: 'number', min: 1, max: 99, dataset: { testid }, oninput: (e) => { if (e.target.value) owner[name] = Number(e.target.value); else delete owner[name]; schedulePreview(); } });
    ctl.value = owner[name] ?? '';
    return ctl;
  }
  // Optional strings are left out when emptied (a colour is either valid or absent).
  const on = (e) => { if (e.target.value || f.required || f.input !== 'color') owner[name] = e.target.value; else delete owner[name]; schedulePreview(); };
  const ctl = f.input === 'textarea' || f.input === 'html'
    ? h('textarea', { rows: 3, dataset: { testid }, required: f.required ? true : null, oninput: on })
    : h('input', {
      type: f.input === 'url' ? 'url' : 'text', dataset: { testid }, required: f.required ? true : null, autocomplete: 'off', spellcheck: 'false', oninput: on,
      placeholder: f.input === 'color' ? '#RRGGBB' : null, size: f.input === 'color' ? 8 : null,
    });
  ctl.value = owner[name] ?? '';
  return ctl;
}

/**
 * Editor of a list field (news articles, product segments), from its schema: one row per item,
 * `quiver-<item>-<field>` controls (`<item>`: the list's name without its final s).
 * @param {Record<string, any>} owner
 * @param {SchemaField} field
 */
function listEditor(owner, field) {
  const key = field.name;
  const what = key.replace(/s$/, '');
  owner[key] ??= [];
  const list = owner[key];
  const box = h('fieldset', { class: 'sublist', dataset: { testid: `quiver-${what}s` } }, h('legend', {}, t(`${what}s_title`)));
  list.forEach((item, i) => {
    const row = h('div', { class: 'subrow', role: 'group', 'aria-label': t(`${what}_n`, String(i + 1)), dataset: { testid: `quiver-${what}` } });
    for (const f of field.items ?? []) {
      const ctl = fieldInput(item, f, `quiver-${what}-${f.name}`);
      const label = `${t(`pf_${f.name}`)}${f.required ? ' *' : ''}`;
      row.append(f.input === 'bool' ? h('label', { class: 'check' }, ctl, label) : labeled(label, ctl));
    }
    row.append(subrowButtons(list, i));
    box.append(row);
  });
  const full = field.max_items !== null && list.length >= field.max_items;
  box.append(h('button', { type: 'button', disabled: full ? true : null, dataset: { testid: `quiver-${what}-add` }, onclick: () => { list.push(blankItem(field.items ?? [])); rerenderAll(); schedulePreview(); } }, t(`${what}_add`)));
  return box;
}

function subrowButtons(list, i) {
  return h('span', { class: 'subrow-buttons' },
    h('button', { type: 'button', class: 'icon', disabled: i === 0, 'aria-label': t('move_up'), onclick: () => { [list[i - 1], list[i]] = [list[i], list[i - 1]]; rerenderAll(); schedulePreview(); } }, '↑'),
    h('button', { type: 'button', class: 'icon', disabled: i === list.length - 1, 'aria-label': t('move_down'), onclick: () => { [list[i + 1], list[i]] = [list[i], list[i + 1]]; rerenderAll(); schedulePreview(); } }, '↓'),
    h('button', { type: 'button', class: 'icon', 'aria-label': t('remove'), onclick: () => { list.splice(i, 1); rerenderAll(); schedulePreview(); } }, '✕'));
}

/** The template as the daemon takes it: empty optional fields left out. */
function templateForSave() {
  const form = $('#editor');
  const m = editor.model;
  m.id = form.elements.id.value.trim();
  m.title = form.elements.title.value;
  m.folder = form.elements.folder.value.trim();
  m.shortcut = form.elements.shortcut.value.trim();
  m.tags = form.elements.tags.value.split(/[,，]/).map((s) => s.trim()).filter(Boolean);
  const out = { id: m.id, title: m.title };
  if (m.folder) out.folder = m.folder;
  if (m.tags.length) out.tags = m.tags;
  if (m.shortcut) out.shortcut = m.shortcut;
  const vars = m.variables.filter((v) => v.name?.trim()).map((v) => {
    const o = { name: v.name.trim() };
    if (v.label?.trim()) o.label = v.label.trim();
    if (v.required) o.required = true;
    return o;
  });
  if (vars.length) out.variables = vars;
  out.parts = m.parts.map(cleanPart);
  return out;
}

/**
 * A list item or part with what the schema knows: strings kept when non-empty or required,
 * flags when set, numbers when given.
 * @param {Record<string, any>} src
 * @param {SchemaField[]} fields
 */
function cleanFields(src, fields) {
  /** @type {Record<string, any>} */
  const o = {};
  for (const f of fields) {
    const v = src[f.name];
    if (f.input === 'list') {
      if (v?.length || f.required) o[f.name] = (v ?? []).map((/** @type {any} */ item) => cleanFields(item, f.items ?? []));
    } else if (f.input === 'bool') {
      if (v) o[f.name] = true;
    } else if (f.input === 'number') {
      if (v !== undefined && v !== '') o[f.name] = v;
    } else if ((v ?? '') !== '' || f.required) {
      o[f.name] = v ?? '';
    }
  }
  return o;
}

function cleanPart(p) {
  /** @type {Record<string, any>} */
  const o = { type: p.type, ...cleanFields(p, kindSchema(p.type)?.fields ?? []) };
  if (p.fallback) o.fallback = cleanPart(p.fallback);
  return o;
}

async function saveTemplate(e) {
  e.preventDefault();
  const tpl = templateForSave();
  if (!tpl.id || !tpl.title.trim()) {
    showEditorMessage('error', t('editor_need_id_title'), { code: 'invalid_params', field: !tpl.id ? 'id' : 'title' });
    $(`#editor [name="${!tpl.id ? 'id' : 'title'}"]`).focus();
    return;
  }
  editor.saving = true;
  try {
    if (editor.isNew) {
      // A new template must not silently become a revision of another one with the same id.
      const existing = await rpc.call('templates.get', { id: tpl.id }).catch((err) => (err.code === 'not_found' ? null : Promise.reject(err)));
      if (existing && !existing.deleted_at) {
        showEditorMessage('error', t('editor_id_taken', tpl.id), { code: 'id_taken', field: 'id' });
        $('#editor [name="id"]').focus();
        return;
      }
    }
    const params = { template: tpl };
    if (!editor.isNew && editor.revision != null) params.base_revision = editor.revision;
    const r = await rpc.call('templates.put', params);
    if (editor.isNew && !r.created) {
      // The id existed already: the put made a new revision of that template. Say so.
      showEditorMessage('warn', t('editor_saved_existing', [tpl.id, String(r.revision)]));
    } else {
      showEditorMessage('ok', r.changed ? t('editor_saved', String(r.revision)) : t('editor_unchanged', String(r.revision)), { code: 'ok' });
    }
    editor.id = r.id;
    editor.isNew = false;
    editor.revision = r.revision;
    editor.dirty = false;
    $('#editor').elements.id.readOnly = true;
    $('#editor-delete').hidden = false;
    $('#editor-heading').textContent = t('editor_edit', tpl.title);
    showRevision();
    loadRevisions();
    await loadLibrary();
  } catch (err) {
    const field = err.data?.field ?? '';
    const extra = err.code === 'conflict' ? t('editor_conflict', String(err.data?.current_revision ?? '?')) : '';
    showEditorMessage('error', `${t('error_code', [err.code, err.message])}${extra ? ` ${extra}` : ''}`, { code: err.code, field });
  } finally {
    editor.saving = false;
  }
}

function disarmDelete() {
  editor.deleteArmed = false;
  const b = $('#editor-delete');
  b.textContent = t('editor_delete');
  delete b.dataset.armed;
}

async function deleteTemplate() {
  const b = $('#editor-delete');
  if (!editor.deleteArmed) {
    // Two steps instead of a modal dialog: the first press arms, the second deletes.
    editor.deleteArmed = true;
    b.dataset.armed = 'true';
    b.textContent = t('editor_delete_confirm', editor.id);
    showEditorMessage('warn', t('editor_delete_explain'));
    return;
  }
  try {
    const r = await rpc.call('templates.delete', { id: editor.id, base_revision: editor.revision ?? undefined });
    const id = editor.id;
    editor.id = null;
    editor.model = null;
    $('#editor').hidden = true;
    $('#preview').hidden = true;
    const empty = $('#editor-empty');
    empty.hidden = false;
    empty.textContent = t('editor_deleted', [id, String(r.revision)]);
    empty.dataset.deleted = id;
    disarmDelete();
    await loadLibrary();
    $('#lib-new').focus();
  } catch (err) {
    disarmDelete();
    showEditorMessage('error', t('error_code', [err.code, err.message]), { code: err.code });
  }
}

// ---------------------------------------------------------------------------------------------
// Preview (wasm core)

let previewTimer = null;
function schedulePreview() {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(renderPreview, 120);
}

function previewContext() {
  const text = $('#pv-context').value.trim();
  const err = $('#pv-context-error');
  if (!text) { err.hidden = true; return {}; }
  try {
    const v = JSON.parse(text);
    if (!v || typeof v !== 'object' || Array.isArray(v) || Object.values(v).some((x) => typeof x !== 'string')) throw new Error(t('preview_context_shape'));
    err.hidden = true;
    return v;
  } catch (e) {
    err.hidden = false;
    err.textContent = t('preview_context_bad', e.message);
    return null;
  }
}

function renderPreview() {
  const out = $('#pv-parts');
  if (!editor.model) return;
  if (!core) { out.replaceChildren(h('li', { class: 'muted' }, t('preview_core_loading'))); return; }
  const ctx = previewContext();
  if (!ctx) return;
  const target = { platform: $('#pv-platform').value };
  const channel = $('#pv-channel').value;
  if (channel) target.channel = channel;
  const sdk = $('#pv-sdk').value.trim();
  if (sdk) target.sdk_version = sdk;
  if (target.platform === 'wechat-dkf') target.nonce = '0000000000';
  const tpl = templateForSave();
  if (!tpl.id) tpl.id = 'preview';
  if (!tpl.title) tpl.title = 'preview';
  // The core's preview, with the agent's clock and zone: what the wire carries, drawn.
  /** @type {import('./lib/draw.js').PartPreview[]} */
  let previews;
  try {
    previews = JSON.parse(core.preview(JSON.stringify(target), JSON.stringify(tpl), JSON.stringify(renderContext(ctx))));
  } catch (e) {
    const refusal = { code: e.code ?? 'error', message: e.message };
    previews = tpl.parts.map((_, index) => ({ index, wire: null, refusal, rendition: null, kind: null, missing: [], display: null }));
  }
  const items = tpl.parts.map((part, i) => {
    const p = previews[i];
    const li = h('li', { class: 'pv-part', dataset: { testid: 'quiver-preview-part', index: String(i) } },
      h('h3', {}, t('part_n', [String(i + 1), t(`type_${part.type}`)])));
    li.dataset.state = p?.refusal ? 'refused' : 'ok';
    if (p?.refusal) {
      li.append(h('p', { class: 'refusal', dataset: { testid: 'quiver-preview-refusal', code: p.refusal.code } },
        h('code', {}, p.refusal.code), ' ', p.refusal.message));
    }
    if (p && (p.rendition ?? 0) > 0 && p.kind) li.append(h('p', { class: 'muted', dataset: { testid: 'quiver-preview-fallback' } }, t('preview_used_fallback', t(`type_${p.kind}`))));
    if (p?.display) li.append(h('div', { class: 'pv-visual', dataset: { testid: 'quiver-preview-visual' } }, drawDisplay(p.display)));
    if (p?.wire) {
      li.append(h('details', { open: true },
        h('summary', {}, t('preview_wire', p.wire.post_as ?? '')),
        h('pre', { class: 'wire', dataset: { testid: 'quiver-preview-wire' } }, prettyMaybe(p.wire.wire))));
    }
    return li;
  });
  out.replaceChildren(...items);
  // One short announcement for screen readers, after typing pauses (not one per part).
  const refused = items.filter((li) => li.dataset.state === 'refused').length;
  clearTimeout(summaryTimer);
  summaryTimer = setTimeout(() => { $('#pv-summary').textContent = t('preview_summary', [String(items.length - refused), String(refused)]); }, 800);
}
let summaryTimer = null;

function prettyMaybe(s) {
  try { return JSON.stringify(JSON.parse(s), null, 2); } catch { return s; }
}

// ---------------------------------------------------------------------------------------------
// Import / export

function showImport(kind, nodes, extra = {}) {
  const box = $('#import-result');
  box.hidden = false;
  box.className = `message ${kind}`;
  box.dataset.state = kind === 'ok' ? 'ok' : 'error';
  box.setAttribute('role', kind === 'ok' ? 'status' : 'alert');
  box.replaceChildren(...[].concat(nodes));
  for (const k of ['line', 'column', 'field', 'code']) {
    if (extra[k] !== undefined) box.dataset[k] = String(extra[k]);
    else delete box.dataset[k];
  }
}

/**
 * Shows why the file is refused: the first error (`where` its 1-based line and column, unknown
 * when 0), then any others the core found.
 * @param {{line: number, column: number} | null} where
 * @param {string} field
 * @param {string} message
 * @param {string} [code]
 * @param {{line: number, column: number, field: string, message: string}[]} [more]
 */
function importError(where, field, message, code = 'invalid_params', more = []) {
  const at = where && where.line > 0 ? where : null;
  /** @param {{line: number, column: number} | null} w @param {string} f @param {string} m */
  const describe = (w, f, m) => [w ? `${t('import_at', [String(w.line), String(w.column)])}, ` : '', f ? `${t('import_field')} ${f}: ` : '', m];
  showImport('error', [
    h('strong', {}, t('import_refused')),
    h('p', { dataset: { testid: 'quiver-import-error', line: String(at?.line ?? ''), column: String(at?.column ?? ''), field: field ?? '' } },
      ...describe(at, field, message)),
    more.length ? h('ul', { class: 'import-more' }, more.map((e) => h('li', { dataset: { testid: 'quiver-import-error-more', line: String(e.line || ''), column: String(e.column || ''), field: e.field } },
      ...describe(e.line > 0 ? e : null, e.field, e.message)))) : null,
  ].filter(Boolean), { line: at?.line, column: at?.column, field: field ?? '', code });
}

/** Validates the whole file (the core's `check_library`: the importer's checks), then imports it all or nothing. */
async function runImport() {
  const text = $('#import-text').value;
  const button = $('#import-run');
  button.disabled = true;
  try {
    const wasm = core ?? await loadWasmCore();
    /** @type {{line: number, column: number, field: string, message: string}[]} */
    const errors = JSON.parse(wasm.check_library(text));
    if (errors.length) {
      const [first, ...more] = errors;
      return importError(first, first.field, first.message, 'invalid_params', more);
    }
    const lib = JSON.parse(text);
    // Batches below the daemon's 4 MiB frame, in one session: nothing is written before the last.
    const batches = [[]];
    let size = 0;
    for (const tpl of lib.templates) {
      const n = JSON.stringify(tpl).length * 3;
      if (size + n > IMPORT_BATCH_BYTES && batches[batches.length - 1].length) { batches.push([]); size = 0; }
      batches[batches.length - 1].push(tpl);
      size += n;
    }
    const session = batches.length > 1 ? crypto.randomUUID() : undefined;
    let offset = 0;
    let result;
    try {
      for (const [b, templates] of batches.entries()) {
        const params = { templates };
        if (session) { params.session = session; params.last = b === batches.length - 1; }
        result = await rpc.call('templates.import', params);
        offset += templates.length;
      }
    } catch (e) {
      let field = e.data?.field ?? '';
      if (session) field = field.replace(/^templates\[(\d+)\]/, (_, n) => `templates[${Number(n) + offset}]`);
      return importError(null, field, e.message, e.code);
    }
    showImport('ok', [h('p', { dataset: { testid: 'quiver-import-ok' } }, t('import_done', [String(result.templates ?? lib.templates.length), String(result.created ?? 0), String(result.updated ?? 0), String(result.unchanged ?? 0)]))], { code: 'ok' });
    loadLibrary();
  } catch (e) {
    importError(null, '', `${e.code ?? 'error'}: ${e.message}`, e.code);
  } finally {
    button.disabled = false;
  }
}

async function runExport() {
  const out = $('#export-result');
  try {
    const templates = (await listAll()).map((tpl) => {
      const c = { ...tpl };
      delete c.revision;
      return c;
    });
    const text = `${JSON.stringify({ quiver: 1, templates }, null, 2)}\n`;
    const url = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
    const a = h('a', { href: url, download: `quiver-library-${new Date().toISOString().slice(0, 10)}.json`, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    out.dataset.count = String(templates.length);
    out.textContent = t('export_done', String(templates.length));
  } catch (e) {
    out.textContent = t('error_code', [e.code, e.message]);
  }
}

// ---------------------------------------------------------------------------------------------
// Site rules (storage.local `siteRules`, read by the content script)

async function getRules() {
  const r = await api.storage.local.get(SITE_RULES_KEY);
  return Array.isArray(r[SITE_RULES_KEY]) ? r[SITE_RULES_KEY] : [];
}
const setRules = (rules) => api.storage.local.set({ [SITE_RULES_KEY]: rules });

/**
 * The host permissions a rule needs: its assistant page's origin and, in a browser without
 * `location.ancestorOrigins` (Firefox before it shipped it), its workspaces' origins too: there the
 * content script must run in the workspace frames to answer the origin handshake (content.js).
 */
const NEEDS_WORKSPACE_ACCESS = typeof location.ancestorOrigins?.length !== 'number';
const originsFor = (pattern, workspaces) => permissionsFor(pattern, workspaces, NEEDS_WORKSPACE_ACCESS);

function siteMessage(kind, text) {
  const el = $('#site-message');
  el.hidden = false;
  el.className = `message ${kind}`;
  el.dataset.kind = kind;
  el.textContent = text;
}

function addSiteRule(e) {
  e.preventDefault();
  const form = e.target;
  const pattern = form.elements.pattern.value.trim();
  const platform = form.elements.platform.value;
  const channel = form.elements.channel.value;
  if (!isRulePattern(pattern) || !originPermission(pattern)) { siteMessage('error', t('sites_bad_pattern')); form.elements.pattern.focus(); return; }
  const workspaces = parseWorkspaces(form.elements.workspaces.value);
  if (!workspaces) { siteMessage('error', t('sites_bad_workspaces')); form.elements.workspaces.focus(); return; }
  // permissions.request must run in the user gesture itself: no await before it. The rule is
  // saved right away; the access column follows the browser's answer (a prompt may stay open).
  let asked;
  try {
    asked = Promise.resolve(api.permissions.request({ origins: originsFor(pattern, workspaces) }));
  } catch (err) {
    asked = Promise.reject(err);
  }
  (async () => {
    const rules = await getRules();
    if (!rules.some((r) => r.pattern === pattern)) rules.push({ pattern, platform, workspaces, enabled: true, ...(channel ? { channel } : {}) });
    await setRules(rules);
    form.reset();
    siteMessage('ok', t('sites_added'));
    await renderSiteRules();
  })();
  asked.then((granted) => {
    if (!granted) siteMessage('warn', t('sites_added_no_access'));
    renderSiteRules();
  }, (err) => siteMessage('warn', t('sites_permission_error', err.message)));
}

async function renderSiteRules() {
  const rules = await getRules();
  const rows = await Promise.all(rules.map(async (rule) => {
    const origins = originsFor(rule.pattern, rule.workspaces);
    let access = false;
    try { access = origins ? await api.permissions.contains({ origins }) : false; } catch { /* invalid */ }
    const enabled = h('input', { type: 'checkbox', checked: rule.enabled !== false, dataset: { testid: 'quiver-site-enabled' }, 'aria-label': t('sites_enabled_for', rule.pattern),
      onchange: async (e) => { const all = await getRules(); const r = all.find((x) => x.pattern === rule.pattern); if (r) { r.enabled = e.target.checked; await setRules(all); } } });
    const platform = h('select', { 'aria-label': t('sites_platform_for', rule.pattern),
      onchange: async (e) => { const all = await getRules(); const r = all.find((x) => x.pattern === rule.pattern); if (r) { r.platform = e.target.value; await setRules(all); } } },
    SITE_PLATFORMS.map((p) => h('option', { value: p }, platformName(p))));
    platform.value = rule.platform;
    return h('tr', { dataset: { testid: 'quiver-site-rule', pattern: rule.pattern, platform: rule.platform, enabled: String(rule.enabled !== false), access: String(access) } },
      h('td', {}, h('code', {}, rule.pattern)),
      h('td', { dataset: { testid: 'quiver-site-rule-workspaces' } }, Array.isArray(rule.workspaces) && rule.workspaces.length
        ? h('code', {}, rule.workspaces.join(' ')) : t('sites_no_workspaces')),
      h('td', {}, platform),
      h('td', {}, rule.channel ? t(`channel_${rule.channel}`) : t('channel_detect')), h('td', {}, enabled),
      h('td', {}, access ? t('sites_access_yes') : h('button', { type: 'button', onclick: () => {
        api.permissions.request({ origins }).then(() => renderSiteRules(), (err) => siteMessage('warn', t('sites_permission_error', err.message)));
      } }, t('sites_grant'))),
      h('td', {}, h('button', { type: 'button', 'aria-label': t('sites_remove_for', rule.pattern), dataset: { testid: 'quiver-site-remove' }, onclick: async () => {
        const all = (await getRules()).filter((r) => r.pattern !== rule.pattern);
        await setRules(all);
        renderSiteRules();
        siteMessage('ok', t('sites_removed'));
      } }, t('remove'))));
  }));
  $('#site-rows').replaceChildren(...rows);
  if (!rows.length) $('#site-rows').append(h('tr', {}, h('td', { colspan: 7, class: 'muted' }, t('sites_none'))));
}

// ---------------------------------------------------------------------------------------------
// History

const hist = { loaded: false, cursor: null, filter: {} };

function historyFilter() {
  const f = $('#history-filters').elements;
  const p = {};
  if (f.template_id.value.trim()) p.template_id = f.template_id.value.trim();
  if (f.platform.value) p.platform = f.platform.value;
  if (f.customer.value.trim()) p.customer = f.customer.value.trim();
  if (f.state.value) p.state = f.state.value;
  // Dates are the agent's local days: since is inclusive, until includes its whole day.
  if (f.since.value) p.since_ms = new Date(`${f.since.value}T00:00:00`).getTime();
  if (f.until.value) p.until_ms = new Date(`${f.until.value}T00:00:00`).getTime() + 86_400_000;
  return p;
}

async function loadHistory(fresh) {
  const msg = $('#history-message');
  if (fresh) { hist.filter = historyFilter(); hist.cursor = null; $('#history-rows').replaceChildren(); }
  hist.loaded = true;
  try {
    /** @type {Record<string, unknown>} */
    const params = { ...hist.filter, limit: 100 };
    if (hist.cursor) params.cursor = hist.cursor;
    const r = await rpc.call('history.list', params);
    msg.hidden = true;
    const fmt = new Intl.DateTimeFormat(api.i18n.getUILanguage(), { dateStyle: 'short', timeStyle: 'medium' });
    $('#history-rows').append(...r.rows.map((row) => h('tr', { dataset: { testid: 'quiver-history-row', state: row.state, templateId: row.template_id ?? '' } },
      h('td', {}, fmt.format(new Date(row.queued_at))),
      h('td', {}, `${row.template_id} · ${t('revision_n', String(row.revision))} · #${row.part_index + 1}`),
      h('td', {}, platformName(row.platform)), h('td', {}, row.workspace ?? ''), h('td', {}, row.customer ?? ''),
      h('td', {}, h('span', { class: `state state-${row.state}` }, t(`state_${row.state}`))), h('td', {}, row.error ?? ''))));
    hist.cursor = r.next_cursor;
    $('#history-more').hidden = !hist.cursor;
    $('#history-empty').hidden = $('#history-rows').children.length > 0;
  } catch (e) {
    msg.hidden = false;
    msg.className = 'message error';
    msg.textContent = t('error_code', [e.code, e.message]);
  }
}

// ---------------------------------------------------------------------------------------------
// Daemon status, fixes, settings

function renderDaemonFacts() {
  const s = lastStatus;
  // The daemon tab may be shown before the first status arrives: check once it is up.
  if (s.state === 'up' && !$('#panel-daemon').hidden && !$('#doctor').dataset.state) runDoctor();
  $('#d-state').textContent = s.state === 'up' ? t('daemon_up') : t('daemon_down');
  $('#d-state').dataset.state = s.state;
  $('#d-host').textContent = t(`host_${s.host}`);
  $('#d-version').textContent = s.daemon ?? '—';
  $('#d-reason').textContent = s.reason ?? '—';
  const fix = $('#d-fix');
  const hit = s.state === 'up' ? null : FIXES.find((f) => (s.reason ?? '').includes(f.match));
  fix.hidden = !hit;
  if (hit) {
    fix.dataset.fix = hit.cmd;
    fix.replaceChildren(h('strong', {}, t('daemon_fix_this')), ' ', t(hit.fix), ' ', h('code', { dataset: { testid: 'quiver-daemon-fix-command' } }, hit.cmd));
  }
}

/** The doctor's findings, from the daemon (`quiver doctor` run for this user): each check, and
 * the fix of the first broken link per browser. */
async function runDoctor() {
  const box = $('#doctor');
  box.dataset.state = 'running';
  box.replaceChildren(h('p', { class: 'muted' }, t('doctor_running')));
  try {
    const r = await rpc.call('doctor');
    const checkRow = (c) => h('li', { dataset: { testid: 'quiver-doctor-check', name: c.name, ok: String(c.ok) } },
      h('span', { class: c.ok ? 'state state-sent' : 'state state-failed' }, c.ok ? t('doctor_ok') : t('doctor_broken')),
      ' ', h('strong', {}, c.name), ' ', c.detail,
      c.fix ? h('div', { class: 'fix', dataset: { testid: 'quiver-doctor-fix' } }, h('strong', {}, t('daemon_fix_this')), ' ', h('code', {}, c.fix)) : '');
    const sections = r.browsers.map((b) => h('section', { dataset: { testid: 'quiver-doctor-browser', browser: b.browser, ok: String(b.ok) } },
      h('h4', {}, `${b.browser}: `, b.ok ? t('doctor_ok') : t('doctor_broken')),
      h('ul', {}, ...b.checks.map(checkRow))));
    if (!r.browsers.length) sections.push(h('p', { class: 'muted' }, t('doctor_no_browser')));
    sections.push(h('section', { dataset: { testid: 'quiver-doctor-daemon' } }, h('h4', {}, t('doctor_daemon')), h('ul', {}, ...r.daemon.map(checkRow))));
    box.replaceChildren(...sections);
    box.dataset.state = r.ok ? 'ok' : 'broken';
  } catch (e) {
    box.dataset.state = 'error';
    box.replaceChildren(h('p', { class: 'message error' }, t('error_code', [e.code, e.message])));
  }
}

async function loadDaemonPanel() {
  $('#fix-rows').replaceChildren(...FIXES.map((f) => h('tr', {}, h('td', {}, h('code', {}, f.error)), h('td', {}, t(f.fix), ' ', h('code', {}, f.cmd)))));
  if (lastStatus.state !== 'up') return;
  runDoctor();
  try {
    const s = await rpc.call('settings.get');
    $('#settings').elements.retention.value = s.history_retention_days ?? '';
  } catch { /* shown by the status */ }
}

async function saveSettings(e) {
  e.preventDefault();
  const v = $('#settings').elements.retention.value.trim();
  const msg = $('#settings-message');
  msg.hidden = false;
  try {
    const r = await rpc.call('settings.set', { history_retention_days: v ? Number(v) : null });
    msg.className = 'message ok';
    msg.textContent = t('settings_saved', r.history_retention_days == null ? t('settings_forever') : String(r.history_retention_days));
  } catch (err) {
    msg.className = 'message error';
    msg.textContent = t('error_code', [err.code, err.message]);
  }
}

// ---------------------------------------------------------------------------------------------
// Start

async function loadCore() {
  const app = $('[data-testid="quiver-options"]');
  try {
    core = await loadWasmCore();
    schema = JSON.parse(core.part_schema());
    $('#part-add-type').replaceChildren(...schema.kinds.map(({ kind: ty }) => h('option', { value: ty }, t(`type_${ty}`))));
    if (editor.model) renderParts();
    app.dataset.core = 'ready';
  } catch (e) {
    app.dataset.core = 'error';
    console.error('[quiver] wasm core', e);
  }
  schedulePreview();
}

function start() {
  translate();
  $('#pv-context').value = JSON.stringify({ 'customer.name': 'Ada', 'order.id': 'A-1001' }, null, 1);
  const showTab = setupTabs();
  rpc = connect({ onStatus, onEvent });

  let searchTimer = null;
  $('#lib-search').addEventListener('input', (e) => {
    library.query = e.target.value;
    clearTimeout(searchTimer);
    searchTimer = setTimeout(loadLibrary, 120);
  });
  $('#lib-folder').addEventListener('change', (e) => { library.folder = e.target.value; loadLibrary(); });
  $('#lib-tag').addEventListener('change', (e) => { library.tag = e.target.value; loadLibrary(); });
  $('#lib-new').addEventListener('click', () => {
    if (!mayDiscard('new')) return;
    loadEditor(blankTemplate(), true, null);
    $('#editor').elements.id.focus();
  });
  // Unsaved edits: typing, and the part/variable buttons (add, move, remove, fallback).
  const markDirty = () => { editor.dirty = true; editor.discardKey = null; };
  for (const type of ['input', 'change']) {
    $('#editor').addEventListener(type, (e) => { if (e.target.id !== 'editor-revs') markDirty(); });
  }
  $('#editor').addEventListener('click', (e) => {
    const b = e.target.closest('button[type="button"]');
    if (b && !['editor-delete', 'editor-revert'].includes(b.id)) markDirty();
  });
  window.addEventListener('beforeunload', (e) => { if (editor.dirty) e.preventDefault(); });
  $('#editor').addEventListener('submit', saveTemplate);
  $('#editor').addEventListener('input', (e) => { if (['title', 'folder', 'tags', 'shortcut', 'id'].includes(e.target.name)) schedulePreview(); });
  $('#editor-delete').addEventListener('click', deleteTemplate);
  $('#doctor-run').addEventListener('click', runDoctor);
  $('#editor-revs').addEventListener('change', (e) => showOldRevision(Number(e.target.value)));
  $('#editor-delete').addEventListener('blur', () => { if (editor.deleteArmed) setTimeout(disarmDelete, 300); });
  $('#editor-revert').addEventListener('click', () => { if (editor.id) openTemplate(editor.id, { force: true }); else loadEditor(blankTemplate(), true, null); });
  $('#var-add').addEventListener('click', () => {
    editor.model.variables.push({ name: '', label: '', required: false });
    renderVars();
    const names = /** @type {NodeListOf<HTMLInputElement>} */ (document.querySelectorAll('[data-testid="quiver-var-name"]'));
    names[names.length - 1]?.focus();
  });
  $('#part-add').addEventListener('click', () => {
    editor.model.parts.push(blankPart($('#part-add-type').value));
    renderParts(`[data-testid="quiver-part"][data-index="${editor.model.parts.length - 1}"] select`);
    schedulePreview();
  });
  for (const id of ['pv-platform', 'pv-channel', 'pv-sdk', 'pv-context']) $(`#${id}`).addEventListener('input', schedulePreview);

  $('#import-file').addEventListener('change', async (e) => {
    const file = e.target.files?.[0];
    if (file) $('#import-text').value = await file.text();
  });
  $('#import-run').addEventListener('click', runImport);
  $('#export-run').addEventListener('click', runExport);
  $('#site-add').addEventListener('submit', addSiteRule);
  $('#history-filters').addEventListener('submit', (e) => { e.preventDefault(); loadHistory(true); });
  $('#history-more').addEventListener('click', () => loadHistory(false));
  $('#settings').addEventListener('submit', saveSettings);
  api.storage.onChanged.addListener((changes, area) => {
    if (area === 'local' && changes[SITE_RULES_KEY] && !$('#panel-sites').hidden) renderSiteRules();
  });

  // options.html#edit=<id> (from the popup) opens that template; #import, #history, ... a tab.
  const followHash = () => {
    const edit = new URLSearchParams(location.hash.slice(1)).get('edit');
    const tab = location.hash.slice(1);
    if (edit) {
      showTab('library');
      if (lastStatus.state === 'up') openTemplate(edit);
      else pendingOpen = edit;
    } else if (['library', 'import', 'sites', 'history', 'daemon'].includes(tab)) showTab(tab);
  };
  followHash();
  window.addEventListener('hashchange', followHash);
  loadDaemonPanel();
  loadCore();
}

start();
