// @ts-check
/**
 * The Team tab: join a hub with an invite, each hub and team library's state (role, hub sequence,
 * local cursor, outbox, drafts, conflicts, digest match, connection, last error), sync now,
 * leave; and the conflicts view: each kept conflict with its base, head and other side field by
 * field (parts drawn from the core's `preview`, as the customer would see them), a side chosen
 * per field, then resolved with `team.resolve` (`take`), kept both (the other side as a new
 * template), or written by hand in the editor (`edited`). Only the daemon talks to the hub.
 */
import { drawDisplay, renderContext } from '../lib/draw.js';
import { t } from '../lib/i18n.js';
import { h } from '../lib/page.js';
import { $, $button, $form, control } from './dom.js';
import { loadEditor, mayDiscard } from './editor.js';
import { call, failure, failureText, libraryName, loadTeamStatus, page, shortTime } from './state.js';

/** @typedef {import('./state.js').Template} Template */
/** @typedef {import('./state.js').LibraryStatus} LibraryStatus */
/**
 * One side of a kept conflict, and the conflict (docs/protocol.md, `team.conflicts`).
 * @typedef {{rev_id: string, known: boolean, op: string | null, template: Template | null, author: string | null, at: number | null}} Side
 * @typedef {{library: string, library_name: string, conflict: string, template: string, fields: string[],
 *   base: Side | null, head: Side, other: Side, resolving: boolean}} Conflict
 */

/** The fields a resolution can take from either side (docs/sync.md, "Conflict rules"). */
const FIELDS = /** @type {const} */ (['title', 'folder', 'shortcut', 'tags', 'variables', 'parts']);

/**
 * What the options page needs of the tab's neighbours, set by options.js: showing another tab
 * (the editor, for a resolution written by hand), and the library list's reload.
 */
export const teamHooks = {
  showTab: (/** @type {string} */ _name) => {},
  libraryChanged: () => Promise.resolve(),
};

export const team = {
  /** @type {Conflict[]} */
  conflicts: [],
  /** @type {Conflict | null} the conflict shown */
  open: null,
  /** @type {Map<string, 'head' | 'other'>} the side taken per field (`deleted`: the whole template) */
  choices: new Map(),
  /** @type {{hub: string, force: boolean} | null} a leave asked once (a second press confirms) */
  leaving: null,
  busy: false,
};

// ---------------------------------------------------------------------------------------------
// Status, join, leave, sync

/**
 * @param {string} kind ok, warn or error
 * @param {string} text
 * @param {string} [code]
 */
function showTeamMessage(kind, text, code = '') {
  const el = $('#team-message');
  el.hidden = false;
  el.className = `message ${kind}`;
  el.dataset.kind = kind;
  el.dataset.code = code;
  el.textContent = text;
}

/** Reads the team state and the conflicts again and draws them (when the tab is shown). */
export async function loadTeamTab() {
  try {
    await loadTeamStatus();
  } catch (e) {
    showTeamMessage('error', failureText(e), failure(e).code);
  }
  renderTeamStatus();
  if (page.team.available) await Promise.all([loadConflicts(), loadProposals()]);
}

/** The hubs joined and each team library's state, from `page.team`. */
export function renderTeamStatus() {
  const { available, hubs, libraries } = page.team;
  $('#team-unavailable').hidden = available || page.status.state !== 'up';
  $('#team-join').hidden = !available;
  $('#team-none').hidden = !available || hubs.length > 0;
  $('#team-sync').hidden = hubs.length === 0;
  $('#team-hubs').replaceChildren(...hubs.map((hub) => {
    const armed = team.leaving?.hub === hub.hub_id;
    return h('div', { class: 'hub', dataset: { testid: 'quiver-team-hub', hubId: hub.hub_id, state: hub.state } },
      h('p', {},
        h('strong', {}, hub.url), ' ',
        h('span', { class: `conn conn-${hub.state}`, dataset: { testid: 'quiver-team-hub-state' } }, t(`team_state_${hub.state}`)),
        hub.events ? h('span', { class: 'muted' }, ` · ${t('team_live')}`) : null),
      h('p', { class: 'muted' }, t('team_hub_who', [hub.user_name, hub.device_name]),
        hub.last_ok_at ? ` · ${t('team_last_ok', shortTime(hub.last_ok_at))}` : ''),
      hub.last_error ? h('p', { class: 'message error', dataset: { testid: 'quiver-team-hub-error' } }, hub.last_error) : null,
      h('button', {
        type: 'button',
        class: 'danger',
        'data-armed': armed ? 'true' : null,
        dataset: { testid: 'quiver-team-leave', hubId: hub.hub_id },
        onclick: () => leaveHub(hub.hub_id),
      }, armed ? (team.leaving?.force ? t('team_leave_force') : t('team_leave_confirm')) : t('team_leave')));
  }));
  const rows = [...libraries.values()].map(libraryRow);
  $('#team-libraries-table').hidden = rows.length === 0;
  $('#team-library-rows').replaceChildren(...rows);
}

/** One team library's row of the status table. */
function libraryRow(/** @type {LibraryStatus} */ l) {
  const digest = l.digest_match === true ? t('team_digest_match') : l.digest_match === false ? t('team_digest_differs') : t('team_digest_unknown');
  return h('tr', {
    dataset: {
      testid: 'quiver-team-library', libraryId: l.id, role: l.role ?? '', outbox: String(l.outbox), conflicts: String(l.conflicts),
      digestMatch: l.digest_match === null ? '' : String(l.digest_match), state: l.state,
    },
  },
  h('td', {}, h('strong', {}, l.name), l.review_required ? h('div', { class: 'muted' }, t('team_review_required')) : null),
  h('td', { dataset: { field: 'role' } }, l.role ? t(`role_${l.role}`) : '—'),
  h('td', { dataset: { field: 'seq' }, title: t('team_seq_title') }, t('team_seq', [String(l.cursor), String(l.head_seq)])),
  h('td', { dataset: { field: 'outbox' } }, String(l.outbox)),
  h('td', { dataset: { field: 'drafts' } }, String(l.drafts)),
  h('td', { dataset: { field: 'conflicts' } }, String(l.conflicts)),
  h('td', { dataset: { field: 'digest' }, title: l.digest ?? '' }, digest),
  h('td', { dataset: { field: 'state' } }, t(`team_state_${l.state}`)),
  h('td', { dataset: { field: 'error' } }, l.last_error ?? ''));
}

/** Joins a hub with the invite typed in (`team.join`). */
export async function joinTeam(/** @type {SubmitEvent} */ e) {
  e.preventDefault();
  const form = $form('#team-join');
  const invite = control(form, 'invite').value.trim();
  const device = control(form, 'device').value.trim();
  if (!invite) {
    showTeamMessage('error', t('team_invite_missing'), 'invalid_params');
    control(form, 'invite').focus();
    return;
  }
  const button = $button('[data-testid="quiver-team-join"]');
  button.disabled = true;
  showTeamMessage('warn', t('team_joining'), 'joining');
  try {
    /** @type {{invite: string, device_name?: string}} */
    const params = { invite };
    if (device) params.device_name = device;
    const r = await call('team.join', params);
    control(form, 'invite').value = '';
    const names = (r.libraries ?? []).map((/** @type {{name: string, role: string}} */ l) => `${l.name} (${t(`role_${l.role}`)})`).join(', ');
    showTeamMessage('ok', t('team_joined', [r.url, r.user_name, names || '—']), 'joined');
    await loadTeamTab();
    await teamHooks.libraryChanged();
  } catch (err) {
    const f = failure(err);
    showTeamMessage('error', t('team_join_failed', [f.code, f.message]), f.code);
  } finally {
    button.disabled = false;
  }
}

/**
 * Leaves hub `hubId` (its libraries are removed from this device; the send history stays). The
 * first press asks, the second leaves; with edits not pushed yet the daemon refuses, and a third
 * press leaves anyway (they are lost).
 */
async function leaveHub(/** @type {string} */ hubId) {
  if (team.leaving?.hub !== hubId) {
    team.leaving = { hub: hubId, force: false };
    showTeamMessage('warn', t('team_leave_explain'), 'leave_armed');
    renderTeamStatus();
    return;
  }
  const force = team.leaving.force;
  try {
    const r = await call('team.leave', { hub: hubId, force });
    team.leaving = null;
    showTeamMessage('ok', t('team_left', String(r.libraries?.length ?? 0)), 'left');
    await loadTeamTab();
    await teamHooks.libraryChanged();
  } catch (err) {
    const f = failure(err);
    if (f.code === 'conflict' && !force) {
      team.leaving = { hub: hubId, force: true };
      showTeamMessage('warn', t('team_leave_outbox', f.message), 'outbox');
      renderTeamStatus();
      return;
    }
    team.leaving = null;
    showTeamMessage('error', failureText(err), f.code);
    renderTeamStatus();
  }
}

/** Pushes and pulls now (`team.sync`), waiting a few seconds at most. */
export async function syncNow() {
  const button = $button('#team-sync');
  button.disabled = true;
  try {
    // The daemon serves a team.sync beside the connection's other requests (sends go on).
    const r = await call('team.sync', { wait_ms: 5000 });
    const errors = (r.errors ?? []).map((/** @type {{error: string}} */ x) => x.error);
    if (errors.length) showTeamMessage('error', errors.join('\n'), 'sync_errors');
    else showTeamMessage(r.idle ? 'ok' : 'warn', r.idle ? t('team_synced') : t('team_sync_busy'), r.idle ? 'synced' : 'busy');
  } catch (err) {
    showTeamMessage('error', failureText(err), failure(err).code);
  } finally {
    button.disabled = false;
  }
  await loadTeamTab();
}

// ---------------------------------------------------------------------------------------------
// Review: the proposals waiting in the libraries this user reviews

/**
 * A proposal as `team.proposals` lists it (docs/protocol.md).
 * @typedef {{revision: {rev_id: string, template: string, op: string, body?: Template | null, client_at_ms: number},
 *   state: string, author: {user_name: string}, received_at_ms: number}} Proposal
 */

/** The team libraries that require review and where this user is a maintainer or owner. */
function reviewedLibraries() {
  return [...page.team.libraries.values()]
    .filter((l) => l.review_required && (l.role === 'maintainer' || l.role === 'owner'));
}

/** Reads and draws the proposals waiting in every library this user reviews. */
export async function loadProposals() {
  const libs = reviewedLibraries();
  $('#proposals-section').hidden = libs.length === 0;
  if (libs.length === 0) return;
  /** @type {{library: LibraryStatus, proposal: Proposal}[]} */
  const items = [];
  for (const library of libs) {
    try {
      const r = await call('team.proposals', { library: library.id });
      for (const proposal of r?.proposals ?? []) items.push({ library, proposal });
    } catch (e) {
      showTeamMessage('error', failureText(e), failure(e).code);
    }
  }
  $('#proposals-none').hidden = items.length > 0;
  $('#proposals').replaceChildren(...items.map(({ library, proposal }) => {
    const rev = proposal.revision;
    const title = rev.body?.title || rev.template;
    const review = (/** @type {boolean} */ approve) => reviewProposal(library.id, rev.rev_id, approve);
    return h('li', { dataset: { testid: 'quiver-team-proposal', library: library.id, revId: rev.rev_id, templateId: rev.template } },
      h('strong', {}, title), ' ',
      h('span', { class: 'library-badge' }, library.name), ' ',
      h('span', { class: 'muted' }, t(rev.op === 'delete' ? 'proposal_by_delete' : 'proposal_by',
        [proposal.author.user_name, shortTime(proposal.received_at_ms)])), ' ',
      h('button', { type: 'button', class: 'primary', dataset: { testid: 'quiver-proposal-approve' }, onclick: () => review(true) }, t('proposal_approve')), ' ',
      h('button', { type: 'button', dataset: { testid: 'quiver-proposal-reject' }, onclick: () => review(false) }, t('proposal_reject')));
  }));
}

/**
 * Approves or rejects a proposal (`team.review`), then redraws the tab.
 * @param {string} library
 * @param {string} revId
 * @param {boolean} approve
 */
async function reviewProposal(library, revId, approve) {
  if (team.busy) return;
  team.busy = true;
  try {
    const r = await call('team.review', { library, rev_id: revId, approve });
    const landed = r?.result?.status ?? r?.state ?? '';
    showTeamMessage('ok', approve ? t('proposal_approved', landed) : t('proposal_rejected'), approve ? 'approved' : 'rejected');
  } catch (e) {
    showTeamMessage('error', failureText(e), failure(e).code);
  } finally {
    team.busy = false;
  }
  await loadTeamTab();
  await teamHooks.libraryChanged();
}

// ---------------------------------------------------------------------------------------------
// Conflicts

/** Reads the open conflicts; the one shown is redrawn, or closed once it is resolved. */
export async function loadConflicts() {
  try {
    const r = await call('team.conflicts', {});
    team.conflicts = Array.isArray(r?.conflicts) ? r.conflicts : [];
  } catch (e) {
    showTeamMessage('error', failureText(e), failure(e).code);
    return;
  }
  renderConflictList();
  if (team.open) {
    const open = team.open;
    const still = team.conflicts.find((c) => c.conflict === open.conflict && c.library === open.library);
    if (still) showConflict(still, { keepChoices: true });
    else closeConflict();
  }
}

function renderConflictList() {
  $('#conflicts-none').hidden = team.conflicts.length > 0;
  $('#conflicts').replaceChildren(...team.conflicts.map((c) => {
    const title = c.head.template?.title ?? c.other.template?.title ?? c.template;
    return h('li', { dataset: { testid: 'quiver-team-conflict', templateId: c.template, library: c.library, conflict: c.conflict, resolving: String(c.resolving) } },
      h('button', { type: 'button', class: 'link', onclick: () => showConflict(c) }, title),
      ' ', h('span', { class: 'library-badge' }, c.library_name || libraryName(c.library)),
      ' ', h('span', { class: 'muted' }, t('conflict_fields', c.fields.map(fieldName).join(', '))),
      c.resolving ? h('span', { class: 'sync-badge sync-pending' }, t('conflict_resolving')) : null);
  }));
}

/** A field's name for people. */
const fieldName = (/** @type {string} */ f) => t(`conflict_field_${f}`);

/**
 * @param {string} kind
 * @param {string} text
 * @param {string} [code]
 */
function showConflictMessage(kind, text, code = '') {
  const el = $('#conflict-message');
  el.hidden = false;
  el.className = `message ${kind}`;
  el.dataset.code = code;
  el.textContent = text;
}

/** A field of a side's template (undefined: that side deleted the template). */
function fieldOf(/** @type {Side | null} */ side, /** @type {string} */ f) {
  const tpl = side?.template;
  if (!tpl) return undefined;
  const v = /** @type {Record<string, unknown>} */ (/** @type {unknown} */ (tpl))[f];
  if (f === 'tags' || f === 'variables') return v ?? [];
  return v ?? '';
}

const same = (/** @type {unknown} */ a, /** @type {unknown} */ b) => JSON.stringify(a) === JSON.stringify(b);

/** Whether one side deleted the template (the whole template is then taken from one side). */
const isDeleteConflict = (/** @type {Conflict} */ c) => c.fields.includes('deleted') || !c.head.template || !c.other.template;

/**
 * Shows conflict `c`: per field that differs between the two sides (the clashing ones marked),
 * base, head and other side by side, each with a choice of side. Fields changed on one side
 * only start on that side, clashing ones on head.
 * @param {Conflict} c
 * @param {{keepChoices?: boolean}} [opts]
 */
export function showConflict(c, { keepChoices = false } = {}) {
  const sameConflict = team.open?.conflict === c.conflict;
  team.open = c;
  if (!keepChoices || !sameConflict) {
    team.choices = new Map();
    if (isDeleteConflict(c)) team.choices.set('deleted', 'head');
    else {
      for (const f of FIELDS) {
        const base = fieldOf(c.base, f);
        const head = fieldOf(c.head, f);
        const other = fieldOf(c.other, f);
        if (same(head, other)) continue;
        team.choices.set(f, !c.fields.includes(f) && c.base && same(base, head) && !same(base, other) ? 'other' : 'head');
      }
    }
  }
  const box = $('#conflict');
  box.hidden = false;
  box.dataset.library = c.library;
  box.dataset.templateId = c.template;
  box.dataset.conflict = c.conflict;
  box.dataset.resolving = String(c.resolving);
  $('#conflict-heading').textContent = t('conflict_heading', [c.head.template?.title ?? c.template, c.library_name || libraryName(c.library)]);
  $('#conflict-sides').textContent = t('conflict_explain');
  $('#conflict-head-col').textContent = t('conflict_head', [c.head.author ?? '?', shortTime(c.head.at)]);
  $('#conflict-other-col').textContent = t('conflict_other', [c.other.author ?? '?', shortTime(c.other.at)]);
  if (!sameConflict) $('#conflict-message').hidden = true;
  if (c.resolving && $('#conflict-message').hidden) showConflictMessage('warn', t('conflict_resolving_help'), 'resolving');
  const rows = isDeleteConflict(c)
    ? [deleteRow(c)]
    : FIELDS.filter((f) => team.choices.has(f)).map((f) => fieldRow(c, f));
  $('#conflict-rows').replaceChildren(...rows);
  for (const id of ['#conflict-resolve', '#conflict-edit', '#conflict-both']) $button(id).disabled = c.resolving || team.busy;
  $button('#conflict-edit').hidden = isDeleteConflict(c);
}

/**
 * The row of one field: its name (marked when both sides changed it), the base's value, and
 * each side's value with the choice of that side.
 * @param {Conflict} c
 * @param {string} f
 */
function fieldRow(c, f) {
  const clash = c.fields.includes(f);
  return h('tr', { class: clash ? 'clash' : '', dataset: { testid: 'quiver-conflict-field', field: f, clash: String(clash), choice: team.choices.get(f) ?? '' } },
    h('th', { scope: 'row' }, fieldName(f), clash ? h('div', { class: 'clash-note' }, t('conflict_both_changed')) : h('div', { class: 'muted' }, t('conflict_one_changed'))),
    h('td', { dataset: { side: 'base' } }, c.base?.known ? drawValue(c.base, f) : h('span', { class: 'muted' }, t('conflict_no_base'))),
    sideCell(c, f, 'head'),
    sideCell(c, f, 'other'));
}

/**
 * One side's cell: the value and the choice (a radio per field).
 * @param {Conflict} c
 * @param {string} f
 * @param {'head' | 'other'} side
 */
function sideCell(c, f, side) {
  const chosen = team.choices.get(f) === side;
  const radio = h('input', {
    type: 'radio', name: `take-${f}`, value: side, checked: chosen,
    disabled: c.resolving ? true : null,
    dataset: { testid: 'quiver-conflict-take', field: f, side },
    onchange: () => { team.choices.set(f, side); showConflict(c, { keepChoices: true }); },
  });
  return h('td', { class: chosen ? 'chosen' : '', dataset: { side, value: valueText(fieldOf(c[side], f)) } },
    h('label', { class: 'check take' }, radio, t(side === 'head' ? 'conflict_take_head' : 'conflict_take_other')),
    drawValue(c[side], f));
}

/** The one row of a conflict where a side deleted the template: keep it, or the deletion. */
function deleteRow(/** @type {Conflict} */ c) {
  const cell = (/** @type {'head' | 'other'} */ side) => {
    const s = c[side];
    const chosen = team.choices.get('deleted') === side;
    return h('td', { class: chosen ? 'chosen' : '', dataset: { side, value: s.template ? 'kept' : 'deleted' } },
      h('label', { class: 'check take' },
        h('input', {
          type: 'radio', name: 'take-deleted', value: side, checked: chosen, disabled: c.resolving ? true : null,
          dataset: { testid: 'quiver-conflict-take', field: 'deleted', side },
          onchange: () => { team.choices.set('deleted', side); showConflict(c, { keepChoices: true }); },
        }),
        t(side === 'head' ? 'conflict_take_head' : 'conflict_take_other')),
      s.template ? h('div', {}, h('strong', {}, s.template.title), drawValue(s, 'parts')) : h('p', { class: 'muted' }, t('conflict_deleted')));
  };
  return h('tr', { class: 'clash', dataset: { testid: 'quiver-conflict-field', field: 'deleted', clash: 'true', choice: team.choices.get('deleted') ?? '' } },
    h('th', { scope: 'row' }, fieldName('deleted')),
    h('td', { dataset: { side: 'base' } }, c.base?.template ? h('strong', {}, c.base.template.title) : h('span', { class: 'muted' }, t('conflict_no_base'))),
    cell('head'), cell('other'));
}

/** A value as short text (the cells' `data-value`, for tests and tooltips). */
function valueText(/** @type {unknown} */ v) {
  if (v === undefined) return '';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/**
 * A side's value of field `f`, drawn: text, tags, variables, or the parts as the customer would
 * see them (the core's `preview` on Udesk's web channel, each variable shown by name).
 * @param {Side} side
 * @param {string} f
 * @returns {Node}
 */
function drawValue(side, f) {
  if (!side.template) return h('span', { class: 'muted' }, t('conflict_deleted'));
  const v = fieldOf(side, f);
  if (f === 'tags') {
    const tags = /** @type {string[]} */ (v);
    return tags.length ? h('span', { class: 'tags' }, tags.map((tag) => h('span', { class: 'tag' }, tag))) : h('span', { class: 'muted' }, '—');
  }
  if (f === 'variables') {
    const vars = /** @type {{name: string, label?: string, required?: boolean}[]} */ (v);
    return vars.length
      ? h('ul', { class: 'plain' }, vars.map((x) => h('li', {}, h('code', {}, x.name), x.label ? ` ${x.label}` : '', x.required ? ' *' : '')))
      : h('span', { class: 'muted' }, '—');
  }
  if (f === 'parts') return drawParts(side.template);
  const s = String(v ?? '');
  return s ? h('span', {}, s) : h('span', { class: 'muted' }, '—');
}

/** The parts of `tpl` as previews (the raw JSON when the core is not loaded yet). */
function drawParts(/** @type {Template} */ tpl) {
  const core = page.core;
  if (!core) return h('pre', { class: 'wire' }, JSON.stringify(tpl.parts, null, 1));
  /** @type {Record<string, string>} */
  const values = {};
  try {
    for (const v of JSON.parse(core.variables(JSON.stringify(tpl)))) values[v.name] = `‹${v.name}›`;
  } catch { /* an unreadable template is previewed as it is */ }
  /** @type {import('../lib/draw.js').PartPreview[]} */
  let previews = [];
  try {
    previews = JSON.parse(core.preview(JSON.stringify({ platform: 'udesk', channel: 'web' }), JSON.stringify(tpl), JSON.stringify(renderContext(values))));
  } catch (e) {
    return h('p', { class: 'refusal' }, failure(e).message);
  }
  return h('ol', { class: 'conflict-parts', dataset: { testid: 'quiver-conflict-parts' } }, tpl.parts.map((part, i) => {
    const p = previews[i];
    return h('li', { class: 'pv-visual' },
      p?.display ? drawDisplay(p.display) : h('p', { class: 'refusal' }, p?.refusal?.message ?? part.type));
  }));
}

/** What the choices make: `take` for `team.resolve`. */
function takeOfChoices(/** @type {Conflict} */ c) {
  if (isDeleteConflict(c)) return team.choices.get('deleted') ?? 'head';
  /** @type {Record<string, 'head' | 'other'>} */
  const fields = {};
  for (const [f, side] of team.choices) if (side === 'other') fields[f] = 'other';
  return Object.keys(fields).length ? fields : 'head';
}

/**
 * Resolves the conflict shown: `take` as chosen, or `both` (head stays, the other side becomes a
 * new template).
 * @param {'choices' | 'both'} how
 */
export async function resolveConflict(how) {
  const c = team.open;
  if (!c || team.busy) return;
  team.busy = true;
  showConflict(c, { keepChoices: true });
  try {
    const take = how === 'both' ? 'both' : takeOfChoices(c);
    const r = await call('team.resolve', { library: c.library, template: c.template, conflict: c.conflict, take });
    showConflictMessage('ok', r.fork ? t('conflict_resolved_both', r.fork.id) : t('conflict_resolved', String(r.revision)), 'resolved');
    $('#conflict').dataset.resolved = 'true';
    await teamHooks.libraryChanged();
  } catch (err) {
    const f = failure(err);
    showConflictMessage('error', failureText(err), f.code);
  } finally {
    team.busy = false;
  }
  await loadConflicts();
  await loadTeamTab();
}

/**
 * Opens what the choices make in the editor, to be changed by hand and saved as the resolution
 * (`team.resolve` with `edited`).
 */
export function editConflict() {
  const c = team.open;
  if (!c || !c.head.template || !c.other.template) return;
  if (!mayDiscard(`resolve:${c.conflict}`)) { teamHooks.showTab('library'); return; }
  const merged = /** @type {Record<string, unknown>} */ (structuredClone(c.head.template));
  for (const [f, side] of team.choices) {
    if (side === 'other') merged[f] = structuredClone(/** @type {Record<string, unknown>} */ (/** @type {unknown} */ (c.other.template))[f]);
  }
  teamHooks.showTab('library');
  loadEditor(/** @type {Template} */ (/** @type {unknown} */ (merged)), false, null, null, {
    library: c.library,
    meta: { library: c.library, sync: 'conflict' },
    resolving: { library: c.library, template: c.template, conflict: c.conflict },
  });
}

export function closeConflict() {
  team.open = null;
  team.choices = new Map();
  $('#conflict').hidden = true;
}
