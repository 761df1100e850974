// @ts-check
/**
 * The Library tab's list: every template of every library, or the daemon's search, by folder,
 * with filters. With team libraries each item names its library and its sync state, and the
 * list can be narrowed to one library; items are keyed by library and id (lib/team.js).
 */
import { t } from '../lib/i18n.js';
import { h, nextId } from '../lib/page.js';
import { LOCAL, LOCAL_META, metaOf, templateKey } from '../lib/team.js';
import { $, $select } from './dom.js';
import { editor, openTemplate } from './editor.js';
import { call, failureText, hasTeamLibraries, libraryName, page, syncText } from './state.js';

/** @typedef {import('./state.js').Template} Template */
/** @typedef {import('./state.js').TeamMeta} TeamMeta */
/** A template with its library and team state beside it. @typedef {{tpl: Template, meta: TeamMeta}} Entry */

export const library = {
  /** @type {Entry[]} what the list shows */
  templates: [],
  query: '',
  folder: '',
  tag: '',
  /** one library only ('' for all) */
  only: '',
  /** @type {Entry[]} the whole library (for the filters' choices) */
  all: [],
};

/** Every template of every library (of the local one for a daemon without team libraries), a page of 500 at a time. */
export async function listAll() {
  /** @type {Entry[]} */
  const all = [];
  /** @type {string | null} */
  let cursor = null;
  const every = page.team.available;
  do {
    /** @type {Record<string, unknown>} */
    const params = { limit: 500 };
    if (every) params.library = '*';
    if (cursor) params.cursor = cursor;
    const r = /** @type {{templates: Template[], meta?: unknown[], next_cursor: string | null}} */ (await call('templates.list', params));
    r.templates.forEach((tpl, i) => all.push({ tpl, meta: r.meta ? metaOf(r.meta[i]) : LOCAL_META }));
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
      if (page.team.available) params.library = '*';
      const r = /** @type {{results: ({template: Template} & Record<string, unknown>)[]}} */ (await call('templates.search', params));
      library.templates = r.results.map((x) => ({ tpl: x.template, meta: metaOf(x) }));
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
  const folders = library.all.flatMap(({ tpl: x }) => {
    // Every level of a/b/c, so a parent folder can be chosen.
    const parts = (x.folder || '').split('/').filter(Boolean);
    return parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  });
  fill($select('#lib-folder'), folders, library.folder, 'library_all_folders');
  fill($select('#lib-tag'), library.all.flatMap(({ tpl: x }) => x.tags ?? []), library.tag, 'library_all_tags');
  // One library: shown once a team library was joined.
  const only = $select('#lib-library');
  $('#lib-library-label').hidden = !hasTeamLibraries();
  const ids = [LOCAL, ...page.team.libraries.keys()];
  if (library.only && !ids.includes(library.only)) library.only = '';
  only.replaceChildren(h('option', { value: '' }, t('library_all_libraries')), ...ids.map((id) => h('option', { value: id }, libraryName(id))));
  only.value = library.only;
}

export function renderLibrary() {
  const tree = $('#lib-tree');
  const list = library.only ? library.templates.filter((e) => e.meta.library === library.only) : library.templates;
  const team = hasTeamLibraries();
  const openKey = editor.id ? templateKey(editor.library, editor.id) : null;
  $('#lib-count').textContent = t('library_count', String(list.length));
  /** @type {Map<string, Entry[]>} */
  const folders = new Map();
  for (const e of list) {
    const f = e.tpl.folder || '';
    folders.set(f, [...(folders.get(f) ?? []), e]);
  }
  const names = [...folders.keys()];
  if (!library.query.trim() && !library.tag && !library.folder) names.sort((a, b) => (a === '' ? 1 : b === '' ? -1 : a.localeCompare(b)));
  const groups = names.map((folder) => {
    const headId = nextId('folder');
    return h('section', { class: 'folder', 'aria-labelledby': headId, dataset: { testid: 'quiver-lib-folder', folder } },
      h('h3', { id: headId, class: 'folder-name' }, folder || t('library_no_folder')),
      h('ul', { class: 'items' }, (folders.get(folder) ?? []).map(({ tpl, meta }) => {
        const key = templateKey(meta.library, tpl.id);
        const sync = syncText(meta);
        return h('li', {},
          h('button', {
            type: 'button',
            class: `item${key === openKey ? ' current' : ''}`,
            'aria-current': key === openKey ? 'true' : null,
            dataset: { testid: 'quiver-lib-item', templateId: tpl.id, library: meta.library, key, sync: meta.sync ?? '', revision: String(tpl.revision ?? '') },
            onclick: () => openTemplate(tpl.id, { library: meta.library }),
          },
          h('span', { class: 'item-title' }, tpl.title),
          tpl.shortcut ? h('kbd', { class: 'shortcut', title: t('field_shortcut') }, tpl.shortcut) : null,
          team ? h('span', { class: `library-badge${meta.library === LOCAL ? ' local' : ''}`, dataset: { testid: 'quiver-lib-item-library' } }, libraryName(meta.library)) : null,
          sync ? h('span', { class: `sync-badge sync-${meta.sync}`, title: sync.title, dataset: { testid: 'quiver-lib-item-sync', sync: meta.sync ?? '' } }, sync.label) : null,
          h('span', { class: 'rev' }, t('revision_n', String(tpl.revision ?? 1))),
          tpl.tags?.length ? h('span', { class: 'tags' }, tpl.tags.map((tag) => h('span', { class: 'tag' }, tag))) : null));
      })));
  });
  // Keep the keyboard focus on the same template across a re-render (library.changed events).
  const active = document.activeElement;
  const focusedKey = active instanceof HTMLElement && tree.contains(active) ? active.dataset.key : null;
  tree.replaceChildren(...groups);
  if (focusedKey) /** @type {HTMLElement | null} */ (tree.querySelector(`[data-key="${CSS.escape(focusedKey)}"]`))?.focus();
  if (!list.length) tree.append(h('p', { class: 'muted', dataset: { testid: 'quiver-lib-empty' } }, t('library_empty')));
  $('#folder-list').replaceChildren(...[...new Set(list.map((x) => x.tpl.folder).filter(Boolean))].sort().map((f) => h('option', { value: f })));
}
