// @ts-check
/*
 * Quiver toolbar popup: the daemon's status and a quick search of the library.
 * Arrow keys move through the matches; Enter (or a click) opens the match in the options page's
 * editor (options.html#edit=<id>). Opening the editor rather than copying text: a template's
 * text is only sendable once rendered for a conversation (variables, channel), which the palette
 * does; the popup is for finding and fixing templates.
 */
import { api } from './lib/browser.js';
import { t, translate } from './lib/i18n.js';
import { connect, h, showStatus } from './lib/page.js';
import { LOCAL } from './lib/team.js';

/**
 * The element `sel` finds (the page's markup has each one).
 * @param {string} sel
 * @returns {any}
 */
const $ = (sel) => document.querySelector(sel);
const FIXES = [
  ['Specified native messaging host not found', 'quiver install --browser chromium'],
  ['Access to the specified native messaging host is forbidden', 'quiver install --browser chromium'],
  ['No such native application', 'quiver install --browser firefox'],
  ['daemon down', 'quiver doctor'],
];

/** @typedef {{id: string, title: string, shortcut?: string, folder?: string, library?: string}} Result */

/** @type {ReturnType<typeof connect>} */
let rpc;
let up = false;
/** @type {Result[]} */
let results = [];
let active = -1;

/** @param {import('./lib/page.js').Status} status */
function onStatus(status) {
  showStatus($('[data-testid="quiver-popup-status"]'), status);
  const fix = $('[data-testid="quiver-popup-fix"]');
  const hit = status.state === 'up' ? null : FIXES.find(([m]) => (status.reason ?? '').includes(m));
  fix.hidden = !hit;
  if (hit) fix.replaceChildren(t('daemon_fix_this'), ' ', h('code', {}, hit[1]));
  const wasUp = up;
  up = status.state === 'up';
  if (up && !wasUp) search();
}

/** @param {string} name */
function onEvent(name) {
  if (name === 'library.changed') search();
}

let seq = 0;
/** Every library (team ones too, protocol 1.4), until a daemon without them refuses the param. */
let everyLibrary = true;
async function search() {
  if (!up) return;
  const mine = ++seq;
  const query = $('#q').value.trim();
  try {
    let r;
    try {
      r = await rpc.call('templates.search', everyLibrary ? { query, limit: 20, library: '*' } : { query, limit: 20 });
    } catch (err) {
      const e = /** @type {{code?: string, message?: string}} */ (err);
      if (!everyLibrary || e.code !== 'invalid_params' || !/library/.test(e.message ?? '')) throw err;
      everyLibrary = false;
      r = await rpc.call('templates.search', { query, limit: 20 });
    }
    if (mine !== seq) return;
    results = r.results;
    active = results.length ? 0 : -1;
    render();
  } catch (err) {
    const e = /** @type {{code?: string, message?: string}} */ (err);
    results = [];
    render(t('error_code', [e.code, e.message]));
  }
}

/** @param {string} [error] shown instead of the matches */
function render(error) {
  const list = $('#results');
  list.replaceChildren(...results.map((r, i) => h('li', {
    id: `r-${i}`, role: 'option', 'aria-selected': String(i === active), class: i === active ? 'active' : null,
    dataset: { testid: 'quiver-popup-result', templateId: r.id, library: r.library ?? LOCAL }, onclick: () => openEditor(r.id, r.library),
  },
  h('span', { class: 'title' }, r.title),
  r.shortcut ? h('kbd', {}, r.shortcut) : null,
  h('span', { class: 'folder muted' }, r.folder || t('library_no_folder')))));
  $('#q').setAttribute('aria-expanded', String(results.length > 0));
  if (active >= 0) $('#q').setAttribute('aria-activedescendant', `r-${active}`);
  else $('#q').removeAttribute('aria-activedescendant');
  const empty = $('#empty');
  empty.hidden = results.length > 0 && !error;
  empty.textContent = error ?? t('popup_no_match');
}

/**
 * @param {string} id
 * @param {string} [library]
 */
function openEditor(id, library) {
  const lib = library && library !== LOCAL ? `&library=${encodeURIComponent(library)}` : '';
  const url = api.runtime.getURL(`options.html#edit=${encodeURIComponent(id)}${lib}`);
  Promise.resolve(api.tabs.create({ url })).finally(() => window.close());
}

function start() {
  translate();
  rpc = connect({ onStatus, onEvent });
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  $('#q').addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(search, 80); });
  $('#q').addEventListener('keydown', (/** @type {KeyboardEvent} */ e) => {
    if (e.key === 'ArrowDown' && results.length) { e.preventDefault(); active = (active + 1) % results.length; render(); }
    else if (e.key === 'ArrowUp' && results.length) { e.preventDefault(); active = (active - 1 + results.length) % results.length; render(); }
    else if (e.key === 'Enter' && active >= 0) { e.preventDefault(); openEditor(results[active].id, results[active].library); }
  });
  $('#open-options').addEventListener('click', () => { Promise.resolve(api.runtime.openOptionsPage()).finally(() => window.close()); });
  $('#open-conversations').addEventListener('click', () => {
    Promise.resolve(api.tabs.create({ url: api.runtime.getURL('conversations.html') })).finally(() => window.close());
  });
}

start();
