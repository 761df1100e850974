// @ts-check
/**
 * The History tab: the daemon's send history, filtered, a page at a time. Each row names the
 * template's library and, for a team template, the exact team revision sent (`rev_id`).
 */
import { api } from '../lib/browser.js';
import { t } from '../lib/i18n.js';
import { h } from '../lib/page.js';
import { $, $form, control } from './dom.js';
import { call, failureText, libraryName, platformName } from './state.js';

/**
 * @typedef {{template_id: string | null, revision: number | null, part_index: number, platform: string,
 *   workspace: string | null, customer: string | null, state: string, error: string | null, queued_at: number,
 *   library?: string | null, rev_id?: string | null}} HistoryRow
 */

export const hist = {
  loaded: false,
  /** @type {string | null} */
  cursor: null,
  /** @type {Record<string, unknown>} */
  filter: {},
};

/** The filter form as `history.list` parameters. */
function historyFilter() {
  const f = $form('#history-filters');
  const v = (/** @type {string} */ name) => control(f, name).value;
  /** @type {Record<string, unknown>} */
  const p = {};
  if (v('template_id').trim()) p.template_id = v('template_id').trim();
  if (v('platform')) p.platform = v('platform');
  if (v('customer').trim()) p.customer = v('customer').trim();
  if (v('state')) p.state = v('state');
  // Dates are the agent's local days: since is inclusive, until includes its whole day.
  if (v('since')) p.since_ms = new Date(`${v('since')}T00:00:00`).getTime();
  if (v('until')) p.until_ms = new Date(`${v('until')}T00:00:00`).getTime() + 86_400_000;
  return p;
}

/** Loads the first page (`fresh`, with the form's filter) or the next one. */
export async function loadHistory(/** @type {boolean} */ fresh) {
  const msg = $('#history-message');
  if (fresh) { hist.filter = historyFilter(); hist.cursor = null; $('#history-rows').replaceChildren(); }
  hist.loaded = true;
  try {
    /** @type {Record<string, unknown>} */
    const params = { ...hist.filter, limit: 100 };
    if (hist.cursor) params.cursor = hist.cursor;
    const r = /** @type {{rows: HistoryRow[], next_cursor: string | null}} */ (await call('history.list', params));
    msg.hidden = true;
    const fmt = new Intl.DateTimeFormat(api.i18n.getUILanguage(), { dateStyle: 'short', timeStyle: 'medium' });
    $('#history-rows').append(...r.rows.map((row) => h('tr', { dataset: { testid: 'quiver-history-row', state: row.state, templateId: row.template_id ?? '', library: row.library ?? '', revId: row.rev_id ?? '' } },
      h('td', {}, fmt.format(new Date(row.queued_at))),
      h('td', {}, `${row.template_id} · ${t('revision_n', String(row.revision))} · #${row.part_index + 1}`),
      h('td', { dataset: { testid: 'quiver-history-library' } }, row.template_id ? libraryName(row.library) : '',
        row.rev_id ? h('div', { class: 'muted rev-id', title: row.rev_id, dataset: { testid: 'quiver-history-rev' } }, t('history_team_revision', row.rev_id)) : null),
      h('td', {}, platformName(row.platform)), h('td', {}, row.workspace ?? ''), h('td', {}, row.customer ?? ''),
      h('td', {}, h('span', { class: `state state-${row.state}` }, t(`state_${row.state}`))), h('td', {}, row.error ?? ''))));
    hist.cursor = r.next_cursor;
    $('#history-more').hidden = !hist.cursor;
    $('#history-empty').hidden = $('#history-rows').children.length > 0;
  } catch (e) {
    msg.hidden = false;
    msg.className = 'message error';
    msg.textContent = failureText(e);
  }
}
