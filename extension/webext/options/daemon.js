// @ts-check
/** The Daemon tab: the connection's state and the fix of a known failure, the doctor, settings. */
import { t } from '../lib/i18n.js';
import { h } from '../lib/page.js';
import { $, $form, control } from './dom.js';
import { call, failureText, page } from './state.js';

/** Browser errors of connectNative and what fixes them. */
const FIXES = [
  { match: 'Specified native messaging host not found', error: 'Specified native messaging host not found.', fix: 'fix_not_found_chromium', cmd: 'quiver install --browser chromium' },
  { match: 'Access to the specified native messaging host is forbidden', error: 'Access to the specified native messaging host is forbidden.', fix: 'fix_forbidden', cmd: 'quiver install --browser chromium' },
  { match: 'No such native application', error: 'No such native application dev.quiver.host', fix: 'fix_not_found_firefox', cmd: 'quiver install --browser firefox' },
  { match: 'daemon down', error: 'daemon down: …', fix: 'fix_daemon_down', cmd: 'quiver doctor' },
  { match: 'protocol mismatch', error: 'protocol mismatch: …', fix: 'fix_protocol', cmd: 'quiver daemon --stop' },
];

/** @typedef {{name: string, ok: boolean, detail: string, fix?: string}} Check */
/** @typedef {{ok: boolean, browsers: {browser: string, ok: boolean, checks: Check[]}[], daemon: Check[]}} Report */

/** Shows the last status: state, host, version, and the fix of a known failure. */
export function renderDaemonFacts() {
  const s = page.status;
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
export async function runDoctor() {
  const box = $('#doctor');
  box.dataset.state = 'running';
  box.replaceChildren(h('p', { class: 'muted' }, t('doctor_running')));
  try {
    const r = /** @type {Report} */ (await call('doctor'));
    const checkRow = (/** @type {Check} */ c) => h('li', { dataset: { testid: 'quiver-doctor-check', name: c.name, ok: String(c.ok) } },
      h('span', { class: c.ok ? 'state state-sent' : 'state state-failed' }, c.ok ? t('doctor_ok') : t('doctor_broken')),
      ' ', h('strong', {}, c.name), ' ', c.detail,
      c.fix ? h('div', { class: 'fix', dataset: { testid: 'quiver-doctor-fix' } }, h('strong', {}, t('daemon_fix_this')), ' ', h('code', {}, c.fix)) : '');
    /** @type {HTMLElement[]} */
    const sections = r.browsers.map((b) => h('section', { dataset: { testid: 'quiver-doctor-browser', browser: b.browser, ok: String(b.ok) } },
      h('h4', {}, `${b.browser}: `, b.ok ? t('doctor_ok') : t('doctor_broken')),
      h('ul', {}, ...b.checks.map(checkRow))));
    if (!r.browsers.length) sections.push(h('p', { class: 'muted' }, t('doctor_no_browser')));
    sections.push(h('section', { dataset: { testid: 'quiver-doctor-daemon' } }, h('h4', {}, t('doctor_daemon')), h('ul', {}, ...r.daemon.map(checkRow))));
    box.replaceChildren(...sections);
    box.dataset.state = r.ok ? 'ok' : 'broken';
  } catch (e) {
    box.dataset.state = 'error';
    box.replaceChildren(h('p', { class: 'message error' }, failureText(e)));
  }
}

/** Fills the tab: the fixes table, then (with the daemon up) the doctor and the settings. */
export async function loadDaemonPanel() {
  $('#fix-rows').replaceChildren(...FIXES.map((f) => h('tr', {}, h('td', {}, h('code', {}, f.error)), h('td', {}, t(f.fix), ' ', h('code', {}, f.cmd)))));
  if (page.status.state !== 'up') return;
  runDoctor();
  try {
    const s = await call('settings.get');
    control($form('#settings'), 'retention').value = s.history_retention_days ?? '';
  } catch { /* shown by the status */ }
}

export async function saveSettings(/** @type {SubmitEvent} */ e) {
  e.preventDefault();
  const v = control($form('#settings'), 'retention').value.trim();
  const msg = $('#settings-message');
  msg.hidden = false;
  try {
    const r = await call('settings.set', { history_retention_days: v ? Number(v) : null });
    msg.className = 'message ok';
    msg.textContent = t('settings_saved', r.history_retention_days == null ? t('settings_forever') : String(r.history_retention_days));
  } catch (err) {
    msg.className = 'message error';
    msg.textContent = failureText(err);
  }
}
