// @ts-check
/*
 * Quiver options page: the template library editor (with live previews through the wasm core),
 * import/export of library files, site rules, the send history, team libraries (join, status,
 * conflicts) and the daemon's status. Everything is kept by the daemon (through the
 * background's `quiver-page` port), except the site rules, which live in storage.local
 * (`siteRules`, read by the content script).
 *
 * This module wires the tabs in `options/` (lowest first: dom, state, then editor, library,
 * transfer, sites, history, team, daemon; none imports this one) and routes the port's status
 * and events to them.
 */
import { api } from './lib/browser.js';
import { loadCore as loadWasmCore } from './lib/core.js';
import { t, translate } from './lib/i18n.js';
import { connect, h, showStatus } from './lib/page.js';
import { $, $button, $form, $input, $select, $textarea, control, source } from './options/dom.js';
import { renderDaemonFacts, loadDaemonPanel, runDoctor, saveSettings } from './options/daemon.js';
import {
  addPart, addVariable, blankTemplate, deleteTemplate, disarmDelete, editor, editorHooks, loadEditor, mayDiscard,
  openTemplate, refreshRevision, renderLibraryChoice, renderParts, renderTeamInfo, saveTemplate, schedulePreview, showOldRevision,
} from './options/editor.js';
import { hist, loadHistory } from './options/history.js';
import { library, loadLibrary, renderLibrary } from './options/library.js';
import { addSiteRule, renderSiteRules, SITE_RULES_KEY } from './options/sites.js';
import { loadTeamStatus, page } from './options/state.js';
import {
  closeConflict, editConflict, joinTeam, loadConflicts, loadTeamTab, renderTeamStatus, resolveConflict, syncNow, team, teamHooks,
} from './options/team.js';
import { runExport, runImport } from './options/transfer.js';
import { LOCAL } from './lib/team.js';

/** @typedef {import('./lib/page.js').Status} Status */

// ---------------------------------------------------------------------------------------------
// Tabs

/** Wires the tab list (arrow keys, Home, End); returns a function that shows a tab by name. */
function setupTabs() {
  const tabs = [.../** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll('[role="tab"]'))];
  const select = (/** @type {HTMLElement} */ tab, focus = true) => {
    for (const t2 of tabs) {
      const on = t2 === tab;
      t2.setAttribute('aria-selected', String(on));
      t2.tabIndex = on ? 0 : -1;
      $(`#${t2.getAttribute('aria-controls')}`).hidden = !on;
    }
    if (focus) tab.focus();
    const id = tab.id.replace('tab-', '');
    if (id === 'history' && !hist.loaded) loadHistory(true);
    if (id === 'sites') renderSiteRules();
    if (id === 'daemon') loadDaemonPanel();
    if (id === 'team') loadTeamTab();
  };
  for (const tab of tabs) {
    tab.addEventListener('click', () => select(tab));
    tab.addEventListener('keydown', (e) => {
      const i = tabs.indexOf(tab);
      let next = null;
      if (e.key === 'ArrowRight') next = tabs[(i + 1) % tabs.length];
      else if (e.key === 'ArrowLeft') next = tabs[(i - 1 + tabs.length) % tabs.length];
      else if (e.key === 'Home') next = tabs[0];
      else if (e.key === 'End') next = tabs[tabs.length - 1];
      if (next) { e.preventDefault(); select(next); }
    });
  }
  return (/** @type {string} */ name) => select($(`#tab-${name}`), false);
}

// ---------------------------------------------------------------------------------------------
// Status and events

function onStatus(/** @type {Status} */ status) {
  const wasUp = page.status.state === 'up';
  page.status = status;
  showStatus($('[data-testid="quiver-options-status"]'), status);
  renderDaemonFacts();
  if (status.state === 'up' && !wasUp) {
    // The team libraries first: the list spans them, the editor offers them.
    loadTeamStatus().catch(() => {}).then(() => {
      renderTeamStatus();
      renderLibraryChoice();
      loadLibrary();
      if (!$('#panel-team').hidden) loadTeamTab();
      if (editor.pendingOpen) { const { id, library: lib } = editor.pendingOpen; editor.pendingOpen = null; openTemplate(id, { library: lib }); }
    });
  }
}

/** @type {ReturnType<typeof setTimeout> | undefined} */
let reloadTimer;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let teamTimer;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let connectionTimer;
function onEvent(/** @type {string} */ name, /** @type {any} */ data) {
  if (name === 'library.changed' || name === 'events.lost') {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(loadLibrary, 150);
    const inLibrary = (data?.library ?? LOCAL) === editor.library;
    if (editor.id && !editor.isNew && inLibrary && Array.isArray(data?.ids) && data.ids.includes(editor.id) && !editor.saving) {
      refreshRevision();
    }
  }
  if ((name === 'team.changed' && data?.what !== 'connection') || name === 'events.lost') {
    // A library joined, left or renamed, a role changed, edits pushed or refused, a conflict
    // opened or closed: the list's badges, the editor's state, the Team tab.
    clearTimeout(teamTimer);
    teamTimer = setTimeout(onTeamChanged, 150);
  } else if (name === 'team.changed' && !$('#panel-team').hidden) {
    // A connection change: the status only (never in place of a full reload already due).
    clearTimeout(connectionTimer);
    connectionTimer = setTimeout(() => loadTeamStatus().then(renderTeamStatus, () => {}), 150);
  }
}

async function onTeamChanged() {
  await loadTeamStatus().catch(() => {});
  renderTeamStatus();
  renderLibraryChoice();
  renderTeamInfo();
  loadLibrary();
  if (editor.id && !editor.isNew && editor.library !== LOCAL && !editor.saving) refreshRevision();
  if (!$('#panel-team').hidden || team.open) loadConflicts();
}

// ---------------------------------------------------------------------------------------------
// Start

async function loadCore() {
  const app = $('[data-testid="quiver-options"]');
  try {
    const core = await loadWasmCore();
    page.core = core;
    const schema = JSON.parse(core.part_schema());
    page.schema = schema;
    $select('#part-add-type').replaceChildren(...schema.kinds.map((/** @type {{kind: string}} */ { kind: ty }) => h('option', { value: ty }, t(`type_${ty}`))));
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
  $textarea('#pv-context').value = JSON.stringify({ 'customer.name': 'Ada', 'order.id': 'A-1001' }, null, 1);
  const showTab = setupTabs();
  page.rpc = connect({ onStatus, onEvent });
  editorHooks.libraryChanged = loadLibrary;
  editorHooks.currentChanged = renderLibrary;
  editorHooks.resolved = () => { loadConflicts(); };
  teamHooks.showTab = showTab;
  teamHooks.libraryChanged = loadLibrary;

  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let searchTimer;
  $input('#lib-search').addEventListener('input', (e) => {
    library.query = source(e).value;
    clearTimeout(searchTimer);
    searchTimer = setTimeout(loadLibrary, 120);
  });
  $select('#lib-folder').addEventListener('change', (e) => { library.folder = source(e).value; loadLibrary(); });
  $select('#lib-tag').addEventListener('change', (e) => { library.tag = source(e).value; loadLibrary(); });
  $select('#lib-library').addEventListener('change', (e) => { library.only = source(e).value; renderLibrary(); });
  $select('#editor-library').addEventListener('change', (e) => {
    // A new template's library: its team facts (a viewer's drafts) follow the choice.
    editor.library = source(e).value;
    editor.meta = { library: editor.library };
    renderTeamInfo();
  });
  $button('#lib-new').addEventListener('click', () => {
    if (!mayDiscard('new')) return;
    loadEditor(blankTemplate(), true, null);
    control($form('#editor'), 'id').focus();
  });
  // Unsaved edits: typing, and the part/variable buttons (add, move, remove, fallback).
  const form = $form('#editor');
  const markDirty = () => { editor.dirty = true; editor.discardKey = null; };
  for (const type of ['input', 'change']) {
    form.addEventListener(type, (e) => { if (!(e.target instanceof Element) || e.target.id !== 'editor-revs') markDirty(); });
  }
  form.addEventListener('click', (e) => {
    const b = e.target instanceof Element ? e.target.closest('button[type="button"]') : null;
    if (b && !['editor-delete', 'editor-revert'].includes(b.id)) markDirty();
  });
  window.addEventListener('beforeunload', (e) => { if (editor.dirty) e.preventDefault(); });
  form.addEventListener('submit', saveTemplate);
  form.addEventListener('input', (e) => {
    const name = e.target instanceof HTMLInputElement ? e.target.name : '';
    if (['title', 'folder', 'tags', 'shortcut', 'id'].includes(name)) schedulePreview();
  });
  $button('#editor-delete').addEventListener('click', deleteTemplate);
  $button('#doctor-run').addEventListener('click', runDoctor);
  $select('#editor-revs').addEventListener('change', (e) => showOldRevision(Number(source(e).value)));
  $button('#editor-delete').addEventListener('blur', () => { if (editor.deleteArmed) setTimeout(disarmDelete, 300); });
  $button('#editor-revert').addEventListener('click', () => { if (editor.id) openTemplate(editor.id, { force: true, library: editor.library }); else loadEditor(blankTemplate(), true, null); });
  $button('#var-add').addEventListener('click', addVariable);
  $button('#part-add').addEventListener('click', addPart);
  for (const id of ['pv-platform', 'pv-channel', 'pv-sdk', 'pv-context']) $(`#${id}`).addEventListener('input', schedulePreview);

  $input('#import-file').addEventListener('change', async (e) => {
    const file = e.target instanceof HTMLInputElement ? e.target.files?.[0] : undefined;
    if (file) $textarea('#import-text').value = await file.text();
  });
  $button('#import-run').addEventListener('click', runImport);
  $button('#export-run').addEventListener('click', runExport);
  $form('#site-add').addEventListener('submit', addSiteRule);
  $form('#history-filters').addEventListener('submit', (e) => { e.preventDefault(); loadHistory(true); });
  $button('#history-more').addEventListener('click', () => loadHistory(false));
  $form('#settings').addEventListener('submit', saveSettings);
  $form('#team-join').addEventListener('submit', joinTeam);
  $button('#team-sync').addEventListener('click', syncNow);
  $button('#conflict-resolve').addEventListener('click', () => resolveConflict('choices'));
  $button('#conflict-both').addEventListener('click', () => resolveConflict('both'));
  $button('#conflict-edit').addEventListener('click', editConflict);
  $button('#conflict-close').addEventListener('click', closeConflict);
  api.storage.onChanged.addListener((changes, area) => {
    if (area === 'local' && changes[SITE_RULES_KEY] && !$('#panel-sites').hidden) renderSiteRules();
  });

  // options.html#edit=<id>[&library=<library>] (from the popup) opens that template; #import,
  // #history, #team, ... a tab.
  const followHash = () => {
    const hash = new URLSearchParams(location.hash.slice(1));
    const edit = hash.get('edit');
    const lib = hash.get('library') || LOCAL;
    const tab = location.hash.slice(1);
    if (edit) {
      showTab('library');
      if (page.status.state === 'up') openTemplate(edit, { library: lib });
      else editor.pendingOpen = { id: edit, library: lib };
    } else if (['library', 'import', 'sites', 'history', 'team', 'daemon'].includes(tab)) showTab(tab);
  };
  followHash();
  window.addEventListener('hashchange', followHash);
  loadDaemonPanel();
  loadCore();
}

start();
