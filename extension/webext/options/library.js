// @ts-check
/** The Library tab's list: every template, or the daemon's search, by folder, with filters. */
import { t } from '../lib/i18n.js';
import { h, nextId } from '../lib/page.js';
import { $, $select } from './dom.js';
import { editor, openTemplate } from './editor.js';
import { call, failureText } from './state.js';

/** @typedef {import('./state.js').Template} Template */

export const library = {
  /** @type {Template[]} what the list shows */
  templates: [],
  query: '',
  folder: '',
  tag: '',
  /** @type {Template[]} the whole library (for the filters' choices) */
  all: [],
};

/** Every template of the library, a page of 500 at a time. */
export async function listAll() {
  /** @type {Template[]} */
  const all = [];
  /** @type {string | null} */
  let cursor = null;
  do {
    const r = /** @type {{templates: Template[], next_cursor: string | null}} */ (await call('templates.list', cursor ? { cursor, limit: 500 } : { limit: 500 }));
    all.push(...r.templates);
    cursor = r.next_cursor;
  } while (cursor);
  return all;
}

export async function loadLibrary() {
  try {
    const q = library.query.trim();
    const all = await listAll();
    library.all = all;
    if (q || library.folder || library.tag) {
      // The daemon's search: pinyin, initials, typos; folder includes subfolders.
      /** @type {Record<string, unknown>} */
      const params = { query: q, limit: 500 };
      if (library.folder) params.folder = library.folder;
      if (library.tag) params.tag = library.tag;
      const r = /** @type {{results: {template: Template}[]}} */ (await call('templates.search', params));
      library.templates = r.results.map((x) => x.template);
    } else {
      library.templates = all;
    }
    renderFilters();
    renderLibrary();
  } catch (e) {
    $('#lib-count').textContent = failureText(e);
  }
}

/** Folder and tag choices, from the whole library (kept when the current one disappears). */
function renderFilters() {
  /**
   * @param {HTMLSelectElement} sel
   * @param {string[]} values
   * @param {string} current
   * @param {string} allKey
   */
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
  fill($select('#lib-folder'), folders, library.folder, 'library_all_folders');
  fill($select('#lib-tag'), library.all.flatMap((x) => x.tags ?? []), library.tag, 'library_all_tags');
}

export function renderLibrary() {
  const tree = $('#lib-tree');
  const list = library.templates;
  $('#lib-count').textContent = t('library_count', String(list.length));
  /** @type {Map<string, Template[]>} */
  const folders = new Map();
  for (const tpl of list) {
    const f = tpl.folder || '';
    folders.set(f, [...(folders.get(f) ?? []), tpl]);
  }
  const names = [...folders.keys()];
  if (!library.query.trim() && !library.tag && !library.folder) names.sort((a, b) => (a === '' ? 1 : b === '' ? -1 : a.localeCompare(b)));
  const groups = names.map((folder) => {
    const headId = nextId('folder');
    return h('section', { class: 'folder', 'aria-labelledby': headId, dataset: { testid: 'quiver-lib-folder', folder } },
      h('h3', { id: headId, class: 'folder-name' }, folder || t('library_no_folder')),
      h('ul', { class: 'items' }, (folders.get(folder) ?? []).map((tpl) => h('li', {},
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
        tpl.tags?.length ? h('span', { class: 'tags' }, tpl.tags.map((tag) => h('span', { class: 'tag' }, tag))) : null)))));
  });
  // Keep the keyboard focus on the same template across a re-render (library.changed events).
  const active = document.activeElement;
  const focusedId = active instanceof HTMLElement && tree.contains(active) ? active.dataset.templateId : null;
  tree.replaceChildren(...groups);
  if (focusedId) /** @type {HTMLElement | null} */ (tree.querySelector(`[data-template-id="${CSS.escape(focusedId)}"]`))?.focus();
  if (!list.length) tree.append(h('p', { class: 'muted', dataset: { testid: 'quiver-lib-empty' } }, t('library_empty')));
  $('#folder-list').replaceChildren(...[...new Set(list.map((x) => x.folder).filter(Boolean))].sort().map((f) => h('option', { value: f })));
}
