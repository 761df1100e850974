// @ts-check
/**
 * The Library tab's editor: one template's fields, variables and parts (forms built from the
 * core's part schema), its kept revisions, save and delete, and the live preview drawn from the
 * core's `preview` (what the wire carries, with the agent's clock and zone). With team
 * libraries: the library a new template goes to, the open template's library, who changed it
 * last and its sync state (a viewer's edit stays a local draft: said before saving, and the
 * hub's reason after), and the resolution of a conflict written by hand (`team.resolve` with
 * `edited`, opened from the Team tab).
 */
import { t } from '../lib/i18n.js';
import { drawDisplay, renderContext } from '../lib/draw.js';
import { h } from '../lib/page.js';
import { LOCAL, LOCAL_META, mayPublish, metaOf } from '../lib/team.js';
import { $, $button, $form, $input, $select, $textarea, checked, control, source } from './dom.js';
import { call, failure, hasTeamLibraries, kindSchema, libraryName, page, roleIn, shortTime, syncText } from './state.js';

/** @typedef {import('./state.js').Template} Template */
/** @typedef {import('./state.js').Part} Part */
/** @typedef {import('./state.js').Variable} Variable */
/** @typedef {import('./state.js').SchemaField} SchemaField */
/** @typedef {{id: string, title: string, folder: string, tags: string[], shortcut: string, variables: Variable[], parts: Part[]}} Model */
/** @typedef {import('./state.js').TeamMeta} TeamMeta */
/** @typedef {{library: string, template: string, conflict: string}} Resolving */

/**
 * What the library list needs of the editor's doings, set by options.js (the list imports the
 * editor, not the other way round): the library changed (a save or delete), the open template
 * changed (the list marks it).
 */
export const editorHooks = {
  libraryChanged: () => Promise.resolve(),
  currentChanged: () => {},
  /** a conflict was resolved by hand here (the Team tab reloads its conflicts) */
  resolved: () => {},
};

export const editor = {
  /** @type {string | null} id of the template open (as stored), null when none */
  id: null,
  isNew: false,
  /** @type {number | null} current revision in the store */
  revision: null,
  /** @type {Model | null} the template being edited */
  model: null,
  saving: false,
  deleteArmed: false,
  dirty: false,
  /** @type {string | null} the action asked once with unsaved edits (a second ask confirms) */
  discardKey: null,
  /** @type {number | null} an older revision shown for restoring */
  shownRevision: null,
  /** @type {{id: string, library: string} | null} a template to open once the daemon is up */
  pendingOpen: null,
  /** the library of the template open (or the one a new template goes to) */
  library: LOCAL,
  /** @type {TeamMeta} its team state as the daemon last said */
  meta: LOCAL_META,
  /** @type {Resolving | null} the conflict this edit resolves when saved (Team tab, "Edit by hand") */
  resolving: null,
};

/** The editor's model; only called while a template is open. */
function model() {
  if (!editor.model) throw new Error('options page: no template is open');
  return editor.model;
}

/** @returns {Template} */
export function blankTemplate() {
  return { id: '', title: '', folder: '', tags: [], shortcut: '', variables: [], parts: [{ type: 'text', text: '' }] };
}

/** An empty item of a list field (strings empty; flags and numbers left out). */
function blankItem(/** @type {SchemaField[]} */ fields) {
  /** @type {Record<string, unknown>} */
  const o = {};
  for (const f of fields) if (!['bool', 'number', 'list'].includes(f.input)) o[f.name] = '';
  return o;
}

/**
 * A new part of `type`: its required fields (and the first of a one-of) empty, lists at their minimum.
 * @param {string} type
 * @returns {Part}
 */
export function blankPart(type) {
  const k = kindSchema(type);
  /** @type {Part} */
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
export function mayDiscard(/** @type {string} */ key) {
  if (!editor.dirty || editor.discardKey === key) return true;
  editor.discardKey = key;
  showEditorMessage('warn', t('editor_unsaved'), { code: 'unsaved' });
  return false;
}

/** `params` naming `library` when it is a team library (the daemon's default is the local one). */
export function inLibrary(/** @type {string} */ library, /** @type {Record<string, unknown>} */ params) {
  return library && library !== LOCAL ? { ...params, library } : params;
}

/**
 * Opens the stored template `id` of `library` (asking first when there are unsaved edits,
 * unless `force`).
 * @param {string} id
 * @param {{force?: boolean, library?: string}} [opts]
 */
export async function openTemplate(id, { force = false, library = LOCAL } = {}) {
  if (!force && !mayDiscard(`open:${library}/${id}`)) return;
  if (page.status.state !== 'up') { editor.pendingOpen = { id, library }; return; }
  try {
    const r = await call('templates.get', inLibrary(library, { id }));
    if (!r.template) throw Object.assign(new Error(t('editor_deleted_team', id)), { code: 'not_found' });
    loadEditor(r.template, false, r.current_revision ?? r.revision ?? r.template.revision, null, { library, meta: metaOf(r) });
  } catch (e) {
    showEditorMessage('error', t('error_code', [failure(e).code, failure(e).message]));
  }
}

/**
 * Fills the editor with `tpl`.
 * @param {Template} tpl
 * @param {boolean} isNew
 * @param {number | null} revision the stored template's current revision
 * @param {number | null} [shownRevision] an older revision being shown
 * @param {{library?: string, meta?: TeamMeta, resolving?: Resolving | null}} [where] its library
 *   (a new template: the one chosen in the library select), its team state, and the conflict a
 *   save resolves
 */
export function loadEditor(tpl, isNew, revision, shownRevision = null, where = {}) {
  editor.library = where.library ?? (isNew ? newTemplateLibrary() : editor.library);
  editor.meta = where.meta ?? (isNew ? { library: editor.library } : editor.meta);
  editor.resolving = where.resolving ?? null;
  const copy = structuredClone(tpl);
  delete copy.revision;
  editor.model = { ...copy, folder: copy.folder ?? '', shortcut: copy.shortcut ?? '', tags: copy.tags ?? [], variables: copy.variables ?? [] };
  editor.id = isNew ? null : tpl.id;
  editor.isNew = isNew;
  editor.revision = revision ?? null;
  editor.dirty = false;
  editor.discardKey = null;
  disarmDelete();
  const form = $form('#editor');
  form.hidden = false;
  // How many times a template was loaded into the form (tools wait for the next one).
  form.dataset.loads = String(Number(form.dataset.loads ?? 0) + 1);
  $('#editor-empty').hidden = true;
  $('#preview').hidden = false;
  const id = /** @type {HTMLInputElement} */ (control(form, 'id'));
  id.value = tpl.id ?? '';
  id.readOnly = !isNew;
  control(form, 'title').value = tpl.title ?? '';
  control(form, 'folder').value = tpl.folder ?? '';
  control(form, 'shortcut').value = tpl.shortcut ?? '';
  control(form, 'tags').value = (tpl.tags ?? []).join(', ');
  $('#editor-heading').textContent = editor.resolving ? t('editor_resolving', tpl.id) : isNew ? t('editor_new') : t('editor_edit', tpl.title || tpl.id);
  $('#editor-delete').hidden = isNew || Boolean(editor.resolving);
  $('[data-testid="quiver-save"]').textContent = editor.resolving ? t('editor_save_resolution') : t('editor_save');
  renderLibraryChoice(isNew);
  renderTeamInfo();
  showRevision();
  hideEditorMessage();
  editor.shownRevision = shownRevision;
  if (!shownRevision && !editor.resolving) loadRevisions();
  else if (editor.resolving) $('#revs-label').hidden = true;
  renderVars();
  renderParts();
  editorHooks.currentChanged();
  schedulePreview();
}

/** The revisions select: every kept revision, newest first; picking one loads it for restoring. */
async function loadRevisions() {
  const label = $('#revs-label');
  const sel = $select('#editor-revs');
  if (!editor.id) { label.hidden = true; return; }
  /** @type {[number, string][]} */
  let revisions;
  try {
    // With dates, when the background lets extension pages call templates.revisions; else the
    // numbers 1..current (every revision is kept, and templates.get reads any of them).
    const r = /** @type {{revisions: {revision: number, created_at: number, author?: string, state?: string}[]}} */ (await call('templates.revisions', inLibrary(editor.library, { id: editor.id, limit: 100 })));
    const fmt = new Intl.DateTimeFormat(t('page_lang'), { dateStyle: 'short', timeStyle: 'short' });
    // A team revision names its author (and a draft says so).
    revisions = r.revisions.map((x) => [x.revision, [t('revision_n', String(x.revision)), fmt.format(new Date(x.created_at)), x.author ?? '', x.state === 'draft' ? t('sync_draft') : ''].filter(Boolean).join(' · ')]);
  } catch {
    revisions = [];
    for (let n = editor.revision ?? 0; n >= 1 && revisions.length < 100; n--) revisions.push([n, t('revision_n', String(n))]);
  }
  sel.replaceChildren(...revisions.map(([n, text]) => h('option', { value: String(n) }, text)));
  sel.value = String(editor.revision);
  label.hidden = revisions.length < 2;
}

/** Loads revision `rev` of the open template into the form, for restoring it with a save. */
export async function showOldRevision(/** @type {number} */ rev) {
  const id = editor.id;
  if (!id) return;
  try {
    if (!mayDiscard(`rev:${rev}`)) { $select('#editor-revs').value = String(editor.shownRevision ?? editor.revision); return; }
    if (rev === editor.revision) { await openTemplate(id, { force: true, library: editor.library }); return; }
    const r = await call('templates.get', inLibrary(editor.library, { id, revision: rev }));
    if (!r.template) throw Object.assign(new Error(t('editor_revision_deleted', String(rev))), { code: 'not_found' });
    loadEditor(r.template, false, editor.revision, rev, { library: editor.library, meta: editor.meta });
    $select('#editor-revs').value = String(rev);
    showEditorMessage('warn', t('editor_old_revision', [String(rev), String(editor.revision)]), { code: 'old_revision' });
  } catch (e) {
    const f = failure(e);
    showEditorMessage('error', t('error_code', [f.code, f.message]), { code: f.code });
  }
}

function showRevision() {
  const el = $('[data-testid="quiver-editor-revision"]');
  el.dataset.revision = editor.revision == null ? '' : String(editor.revision);
  el.textContent = editor.revision == null ? t('revision_unsaved') : t('revision_n', String(editor.revision));
}

/**
 * Warns when the open template was changed elsewhere (another page, the CLI, a teammate), and
 * shows its team state afresh (pushed, refused, in conflict).
 */
export async function refreshRevision() {
  if (!editor.id || editor.isNew) return;
  try {
    const r = await call('templates.get', inLibrary(editor.library, { id: editor.id }));
    editor.meta = metaOf(r);
    renderTeamInfo();
    if (r.current_revision !== editor.revision && !editor.saving) {
      showEditorMessage('warn', t('editor_changed_elsewhere', String(r.current_revision)));
    }
  } catch { /* deleted elsewhere: the save will say so */ }
}

/** The library a new template goes to: the library select's choice, else the local library. */
function newTemplateLibrary() {
  const sel = /** @type {HTMLSelectElement | null} */ (document.querySelector('#editor-library'));
  const v = sel?.value;
  return v && (v === LOCAL || mayPublish(roleIn(v))) ? v : LOCAL;
}

/**
 * The library select: for a new template, the local library and every team library whose role
 * publishes edits; for a stored one, its library (a template stays in its library). Hidden
 * while no team library was joined.
 */
export function renderLibraryChoice(/** @type {boolean} */ isNew = editor.isNew) {
  const label = $('#editor-library-label');
  const sel = $select('#editor-library');
  label.hidden = !hasTeamLibraries() && editor.library === LOCAL;
  const choices = isNew
    ? [LOCAL, ...[...page.team.libraries.values()].filter((l) => mayPublish(l.role)).map((l) => l.id)]
    : [editor.library];
  if (!choices.includes(editor.library)) choices.push(editor.library);
  sel.replaceChildren(...choices.map((id) => h('option', { value: id }, libraryLabel(id))));
  sel.value = editor.library;
  sel.disabled = !isNew;
}

/** A library with the user's role in it. */
function libraryLabel(/** @type {string} */ id) {
  const role = roleIn(id);
  return role ? `${libraryName(id)} (${t(`role_${role}`)})` : libraryName(id);
}

/**
 * The open template's team facts: its library and the user's role, who changed it last and
 * when, its sync state; a viewer is told before saving that the edit stays a local draft.
 */
export function renderTeamInfo() {
  const box = $('#editor-team');
  const lib = editor.library;
  if (lib === LOCAL) { box.hidden = true; box.replaceChildren(); return; }
  const role = roleIn(lib);
  const meta = editor.meta;
  box.hidden = false;
  box.dataset.library = lib;
  box.dataset.role = role ?? '';
  box.dataset.sync = meta.sync ?? '';
  const sync = syncText(meta);
  box.replaceChildren(h('div', { class: 'team-facts' },
    h('span', { class: 'library-badge', dataset: { testid: 'quiver-editor-library-name' } }, libraryLabel(lib)),
    meta.author ? h('span', { dataset: { testid: 'quiver-editor-author' } }, ' ', meta.changed_at ? t('editor_changed_by_at', [meta.author, shortTime(meta.changed_at)]) : t('editor_changed_by', meta.author)) : null,
    sync ? h('span', { class: `sync-badge sync-${meta.sync}`, title: sync.title, dataset: { testid: 'quiver-editor-sync', sync: meta.sync ?? '' } }, sync.label) : null,
    meta.sync === 'draft' && meta.reason ? h('p', { class: 'message warn', dataset: { testid: 'quiver-editor-draft-reason' } }, sync?.title ?? '') : null,
    role && !mayPublish(role) ? h('p', { class: 'message warn', dataset: { testid: 'quiver-editor-viewer' } }, t('editor_viewer_draft', libraryName(lib))) : null,
    editor.resolving ? h('p', { class: 'message warn', dataset: { testid: 'quiver-editor-resolving' } }, t('editor_resolving_help')) : null));
}

/**
 * @param {string} kind ok, warn or error
 * @param {string} text
 * @param {{code?: string, field?: string}} [extra]
 */
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

export function renderVars() {
  const box = $('#vars');
  const vars = model().variables;
  box.replaceChildren(...vars.map((v, i) => h('div', { class: 'var-row', role: 'group', 'aria-label': t('vars_n', String(i + 1)), dataset: { testid: 'quiver-var' } },
    labeled(t('var_name'), h('input', { value: v.name ?? '', spellcheck: 'false', autocomplete: 'off', dataset: { testid: 'quiver-var-name' }, oninput: (/** @type {Event} */ e) => { v.name = source(e).value; schedulePreview(); } })),
    labeled(t('var_label'), h('input', { value: v.label ?? '', autocomplete: 'off', dataset: { testid: 'quiver-var-label' }, oninput: (/** @type {Event} */ e) => { v.label = source(e).value; } })),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', checked: v.required, dataset: { testid: 'quiver-var-required' }, onchange: (/** @type {Event} */ e) => { v.required = checked(e); schedulePreview(); } }), t('var_required')),
    h('button', { type: 'button', class: 'icon', 'aria-label': t('vars_remove', v.name || String(i + 1)), dataset: { testid: 'quiver-var-remove' }, onclick: () => { vars.splice(i, 1); renderVars(); schedulePreview(); $('#var-add').focus(); } }, '✕'))));
}

/**
 * @param {string} text
 * @param {HTMLElement} control
 * @param {string} [cls]
 */
function labeled(text, control, cls = '') {
  return h('label', { class: cls || null }, h('span', {}, text), control);
}

/** Re-renders the parts list; `focusSel` is focused afterwards (after a move or add). */
export function renderParts(/** @type {string} */ focusSel = '') {
  const parts = model().parts;
  $('#parts').replaceChildren(...parts.map((p, i) => h('li', { class: 'part', dataset: { testid: 'quiver-part', index: String(i), type: p.type } },
    partEditor(p, (np) => { parts[i] = np; renderParts(`[data-testid="quiver-part"][data-index="${i}"] select`); }, {
      title: t('part_n', [String(i + 1), t(`type_${p.type}`)]),
      controls: [
        h('button', { type: 'button', class: 'icon', disabled: i === 0, 'aria-label': t('part_up', String(i + 1)), dataset: { testid: 'quiver-part-up' }, onclick: () => movePart(i, -1) }, '↑'),
        h('button', { type: 'button', class: 'icon', disabled: i === parts.length - 1, 'aria-label': t('part_down', String(i + 1)), dataset: { testid: 'quiver-part-down' }, onclick: () => movePart(i, 1) }, '↓'),
        h('button', { type: 'button', class: 'icon', disabled: parts.length === 1, 'aria-label': t('part_remove', String(i + 1)), dataset: { testid: 'quiver-part-remove' }, onclick: () => { parts.splice(i, 1); renderParts('#part-add'); schedulePreview(); } }, '✕'),
      ],
    }))));
  if (focusSel) /** @type {HTMLElement | null} */ (document.querySelector(focusSel))?.focus();
}

/** Adds a part of the type chosen beside the add button. */
export function addPart() {
  const parts = model().parts;
  parts.push(blankPart($select('#part-add-type').value));
  renderParts(`[data-testid="quiver-part"][data-index="${parts.length - 1}"] select`);
  schedulePreview();
}

/** Adds an empty variable and focuses its name. */
export function addVariable() {
  model().variables.push({ name: '', label: '', required: false });
  renderVars();
  const names = /** @type {NodeListOf<HTMLInputElement>} */ (document.querySelectorAll('[data-testid="quiver-var-name"]'));
  names[names.length - 1]?.focus();
}

function movePart(/** @type {number} */ i, /** @type {number} */ d) {
  const parts = model().parts;
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
 * @param {Part} part
 * @param {(part: Part) => void} replace
 * @param {{title: string, controls?: HTMLElement[], depth?: number}} opts
 * @returns {HTMLElement}
 */
function partEditor(part, replace, { title, controls = [], depth = 0 }) {
  const box = h('fieldset', { class: `part-editor depth-${depth}` });
  box.append(h('legend', {}, title));
  const typeSel = h('select', { dataset: { testid: 'quiver-part-type' }, 'aria-label': t('part_type') },
    (page.schema?.kinds ?? []).map(({ kind: ty }) => h('option', { value: ty, selected: ty === part.type ? true : null }, t(`type_${ty}`))));
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
    return h('input', { type: 'checkbox', checked: owner[name] ? true : null, dataset: { testid }, onchange: (/** @type {Event} */ e) => { if (checked(e)) owner[name] = true; else delete owner[name]; schedulePreview(); } });
  }
  if (f.input === 'number') {
    const ctl = h('input', { type: 'number', min: 1, max: 99, dataset: { testid }, oninput: (/** @type {Event} */ e) => { const v = source(e).value; if (v) owner[name] = Number(v); else delete owner[name]; schedulePreview(); } });
    ctl.value = owner[name] ?? '';
    return ctl;
  }
  // Optional strings are left out when emptied (a colour is either valid or absent).
  const on = (/** @type {Event} */ e) => { const v = source(e).value; if (v || f.required || f.input !== 'color') owner[name] = v; else delete owner[name]; schedulePreview(); };
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
  /** @type {Record<string, any>[]} */
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

/**
 * @param {unknown[]} list
 * @param {number} i
 */
function subrowButtons(list, i) {
  return h('span', { class: 'subrow-buttons' },
    h('button', { type: 'button', class: 'icon', disabled: i === 0, 'aria-label': t('move_up'), onclick: () => { [list[i - 1], list[i]] = [list[i], list[i - 1]]; rerenderAll(); schedulePreview(); } }, '↑'),
    h('button', { type: 'button', class: 'icon', disabled: i === list.length - 1, 'aria-label': t('move_down'), onclick: () => { [list[i + 1], list[i]] = [list[i], list[i + 1]]; rerenderAll(); schedulePreview(); } }, '↓'),
    h('button', { type: 'button', class: 'icon', 'aria-label': t('remove'), onclick: () => { list.splice(i, 1); rerenderAll(); schedulePreview(); } }, '✕'));
}

/**
 * The template as the daemon takes it: empty optional fields left out.
 * @returns {Template}
 */
function templateForSave() {
  const form = $form('#editor');
  const m = model();
  const v = (/** @type {string} */ name) => control(form, name).value;
  m.id = v('id').trim();
  m.title = v('title');
  m.folder = v('folder').trim();
  m.shortcut = v('shortcut').trim();
  m.tags = v('tags').split(/[,，]/).map((s) => s.trim()).filter(Boolean);
  /** @type {Template} */
  const out = { id: m.id, title: m.title, parts: [] };
  if (m.folder) out.folder = m.folder;
  if (m.tags.length) out.tags = m.tags;
  if (m.shortcut) out.shortcut = m.shortcut;
  const vars = m.variables.filter((x) => x.name?.trim()).map((x) => {
    /** @type {Variable} */
    const o = { name: x.name.trim() };
    if (x.label?.trim()) o.label = x.label.trim();
    if (x.required) o.required = true;
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

/**
 * @param {Part} p
 * @returns {Part}
 */
function cleanPart(p) {
  /** @type {Part} */
  const o = { type: p.type, ...cleanFields(p, kindSchema(p.type)?.fields ?? []) };
  if (p.fallback) o.fallback = cleanPart(p.fallback);
  return o;
}

export async function saveTemplate(/** @type {SubmitEvent} */ e) {
  e.preventDefault();
  const tpl = templateForSave();
  if (!tpl.id || !tpl.title.trim()) {
    showEditorMessage('error', t('editor_need_id_title'), { code: 'invalid_params', field: !tpl.id ? 'id' : 'title' });
    control($form('#editor'), !tpl.id ? 'id' : 'title').focus();
    return;
  }
  editor.saving = true;
  try {
    if (editor.resolving) {
      await saveResolution(tpl, editor.resolving);
      return;
    }
    if (editor.isNew) {
      editor.library = newTemplateLibrary();
      editor.meta = { library: editor.library };
      // A new template must not silently become a revision of another one with the same id.
      const existing = await call('templates.get', inLibrary(editor.library, { id: tpl.id })).catch((err) => (failure(err).code === 'not_found' ? null : Promise.reject(err)));
      if (existing && !existing.deleted_at) {
        showEditorMessage('error', t('editor_id_taken', tpl.id), { code: 'id_taken', field: 'id' });
        control($form('#editor'), 'id').focus();
        return;
      }
    }
    /** @type {{template: Template, base_revision?: number}} */
    const params = { template: tpl };
    if (!editor.isNew && editor.revision != null) params.base_revision = editor.revision;
    const r = await call('templates.put', inLibrary(editor.library, params));
    editor.meta = metaOf(r);
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
    /** @type {HTMLInputElement} */ (control($form('#editor'), 'id')).readOnly = true;
    $('#editor-delete').hidden = false;
    $('#editor-heading').textContent = t('editor_edit', tpl.title);
    renderLibraryChoice(false);
    renderTeamInfo();
    showRevision();
    loadRevisions();
    await editorHooks.libraryChanged();
  } catch (err) {
    const f = failure(err);
    const field = f.data?.field ?? '';
    const extra = f.code === 'conflict' ? t('editor_conflict', String(f.data?.current_revision ?? '?')) : '';
    showEditorMessage('error', `${t('error_code', [f.code, f.message])}${extra ? ` ${extra}` : ''}`, { code: f.code, field });
  } finally {
    editor.saving = false;
  }
}

/**
 * Saves the form as the resolution of a kept conflict (`team.resolve` with `edited`): a revision
 * with both versions as its parents, pushed like any edit.
 * @param {Template} tpl
 * @param {Resolving} res
 */
async function saveResolution(tpl, res) {
  if (tpl.id !== res.template) {
    showEditorMessage('error', t('editor_resolution_id', res.template), { code: 'invalid_params', field: 'id' });
    return;
  }
  const r = await call('team.resolve', { library: res.library, template: res.template, conflict: res.conflict, edited: tpl });
  editor.resolving = null;
  editor.dirty = false;
  editor.id = res.template;
  editor.isNew = false;
  editor.library = res.library;
  editor.revision = r.revision;
  $('#editor-heading').textContent = t('editor_edit', tpl.title);
  $('[data-testid="quiver-save"]').textContent = t('editor_save');
  $('#editor-delete').hidden = false;
  showEditorMessage('ok', t('editor_resolved', String(r.revision)), { code: 'resolved' });
  await refreshRevision();
  showRevision();
  loadRevisions();
  await editorHooks.libraryChanged();
  editorHooks.resolved();
}

export function disarmDelete() {
  editor.deleteArmed = false;
  const b = $('#editor-delete');
  b.textContent = t('editor_delete');
  delete b.dataset.armed;
}

export async function deleteTemplate() {
  const b = $('#editor-delete');
  if (!editor.deleteArmed) {
    // Two steps instead of a modal dialog: the first press arms, the second deletes.
    editor.deleteArmed = true;
    b.dataset.armed = 'true';
    b.textContent = t('editor_delete_confirm', editor.id ?? '');
    showEditorMessage('warn', t('editor_delete_explain'));
    return;
  }
  try {
    const r = await call('templates.delete', inLibrary(editor.library, { id: editor.id, base_revision: editor.revision ?? undefined }));
    const id = editor.id ?? '';
    editor.id = null;
    editor.model = null;
    $('#editor').hidden = true;
    $('#preview').hidden = true;
    const empty = $('#editor-empty');
    empty.hidden = false;
    empty.textContent = t('editor_deleted', [id, String(r.revision)]);
    empty.dataset.deleted = id;
    disarmDelete();
    await editorHooks.libraryChanged();
    $button('#lib-new').focus();
  } catch (err) {
    disarmDelete();
    const f = failure(err);
    showEditorMessage('error', t('error_code', [f.code, f.message]), { code: f.code });
  }
}

// ---------------------------------------------------------------------------------------------
// Preview (wasm core)

/** @type {ReturnType<typeof setTimeout> | undefined} */
let previewTimer;
export function schedulePreview() {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(renderPreview, 120);
}

/** @returns {Record<string, string> | null} the preview's context, or null (shown) when it is not valid */
function previewContext() {
  const text = $textarea('#pv-context').value.trim();
  const err = $('#pv-context-error');
  if (!text) { err.hidden = true; return {}; }
  try {
    const v = JSON.parse(text);
    if (!v || typeof v !== 'object' || Array.isArray(v) || Object.values(v).some((x) => typeof x !== 'string')) throw new Error(t('preview_context_shape'));
    err.hidden = true;
    return v;
  } catch (e) {
    err.hidden = false;
    err.textContent = t('preview_context_bad', failure(e).message);
    return null;
  }
}

function renderPreview() {
  const out = $('#pv-parts');
  if (!editor.model) return;
  const core = page.core;
  if (!core) { out.replaceChildren(h('li', { class: 'muted' }, t('preview_core_loading'))); return; }
  const ctx = previewContext();
  if (!ctx) return;
  /** @type {Record<string, string>} */
  const target = { platform: $select('#pv-platform').value };
  const channel = $select('#pv-channel').value;
  if (channel) target.channel = channel;
  const sdk = $input('#pv-sdk').value.trim();
  if (sdk) target.sdk_version = sdk;
  if (target.platform === 'wechat-dkf') target.nonce = '0000000000';
  const tpl = templateForSave();
  if (!tpl.id) tpl.id = 'preview';
  if (!tpl.title) tpl.title = 'preview';
  // The core's preview, with the agent's clock and zone: what the wire carries, drawn.
  /** @type {import('../lib/draw.js').PartPreview[]} */
  let previews;
  try {
    previews = JSON.parse(core.preview(JSON.stringify(target), JSON.stringify(tpl), JSON.stringify(renderContext(ctx))));
  } catch (e) {
    const refusal = { code: failure(e).code, message: failure(e).message };
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
/** @type {ReturnType<typeof setTimeout> | undefined} */
let summaryTimer;

function prettyMaybe(/** @type {string} */ s) {
  try { return JSON.stringify(JSON.parse(s), null, 2); } catch { return s; }
}
