// @ts-check
/** The Sites tab: the user's site rules (storage.local `siteRules`, read by the content script). */
import { api } from '../lib/browser.js';
import { t } from '../lib/i18n.js';
import { h } from '../lib/page.js';
import { isRulePattern, originPermission, parseWorkspaces, permissionsFor } from '../lib/sites.js';
import { $, $form, checked, control, source } from './dom.js';
import { platformName } from './state.js';

/** @typedef {import('../lib/sites.js').SiteRule} SiteRule */

export const SITE_RULES_KEY = 'siteRules';
const SITE_PLATFORMS = ['udesk', 'sobot', 'wechat-dkf'];

/** @returns {Promise<SiteRule[]>} */
async function getRules() {
  const r = await api.storage.local.get(SITE_RULES_KEY);
  return Array.isArray(r[SITE_RULES_KEY]) ? r[SITE_RULES_KEY] : [];
}
const setRules = (/** @type {SiteRule[]} */ rules) => api.storage.local.set({ [SITE_RULES_KEY]: rules });

/**
 * The host permissions a rule needs: its assistant page's origin and, in a browser without
 * `location.ancestorOrigins` (Firefox before it shipped it), its workspaces' origins too: there the
 * content script must run in the workspace frames to answer the origin handshake (content.js).
 */
const NEEDS_WORKSPACE_ACCESS = typeof location.ancestorOrigins?.length !== 'number';
const originsFor = (/** @type {string} */ pattern, /** @type {string[] | undefined} */ workspaces) => permissionsFor(pattern, workspaces, NEEDS_WORKSPACE_ACCESS);

function siteMessage(/** @type {string} */ kind, /** @type {string} */ text) {
  const el = $('#site-message');
  el.hidden = false;
  el.className = `message ${kind}`;
  el.dataset.kind = kind;
  el.textContent = text;
}

/** Adds the rule of the form (and asks for the host permissions it needs). */
export function addSiteRule(/** @type {SubmitEvent} */ e) {
  e.preventDefault();
  const form = $form('#site-add');
  const pattern = control(form, 'pattern').value.trim();
  const platform = control(form, 'platform').value;
  const channel = control(form, 'channel').value;
  if (!isRulePattern(pattern) || !originPermission(pattern)) { siteMessage('error', t('sites_bad_pattern')); control(form, 'pattern').focus(); return; }
  const workspaces = parseWorkspaces(control(form, 'workspaces').value);
  if (!workspaces) { siteMessage('error', t('sites_bad_workspaces')); control(form, 'workspaces').focus(); return; }
  // permissions.request must run in the user gesture itself: no await before it. The rule is
  // saved right away; the access column follows the browser's answer (a prompt may stay open).
  /** @type {Promise<boolean>} */
  let asked;
  try {
    asked = Promise.resolve(api.permissions.request({ origins: originsFor(pattern, workspaces) ?? [] }));
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
  }, (/** @type {Error} */ err) => siteMessage('warn', t('sites_permission_error', err.message)));
}

/**
 * Changes one rule in storage.
 * @param {string} pattern
 * @param {(rule: SiteRule) => void} change
 */
async function updateRule(pattern, change) {
  const all = await getRules();
  const r = all.find((x) => x.pattern === pattern);
  if (r) { change(r); await setRules(all); }
}

/** Draws the rules table, with each rule's access (granted host permissions). */
export async function renderSiteRules() {
  const rules = await getRules();
  const rows = await Promise.all(rules.map(async (rule) => {
    const origins = originsFor(rule.pattern, rule.workspaces);
    let access = false;
    try { access = origins ? await api.permissions.contains({ origins }) : false; } catch { /* invalid */ }
    const enabled = h('input', { type: 'checkbox', checked: rule.enabled !== false, dataset: { testid: 'quiver-site-enabled' }, 'aria-label': t('sites_enabled_for', rule.pattern),
      onchange: (/** @type {Event} */ e) => updateRule(rule.pattern, (r) => { r.enabled = checked(e); }) });
    const platform = h('select', { 'aria-label': t('sites_platform_for', rule.pattern),
      onchange: (/** @type {Event} */ e) => updateRule(rule.pattern, (r) => { r.platform = source(e).value; }) },
    SITE_PLATFORMS.map((p) => h('option', { value: p }, platformName(p))));
    platform.value = rule.platform;
    return h('tr', { dataset: { testid: 'quiver-site-rule', pattern: rule.pattern, platform: rule.platform, enabled: String(rule.enabled !== false), access: String(access) } },
      h('td', {}, h('code', {}, rule.pattern)),
      h('td', { dataset: { testid: 'quiver-site-rule-workspaces' } }, Array.isArray(rule.workspaces) && rule.workspaces.length
        ? h('code', {}, rule.workspaces.join(' ')) : t('sites_no_workspaces')),
      h('td', {}, platform),
      h('td', {}, rule.channel ? t(`channel_${rule.channel}`) : t('channel_detect')), h('td', {}, enabled),
      h('td', {}, access ? t('sites_access_yes') : h('button', { type: 'button', onclick: () => {
        api.permissions.request({ origins: origins ?? [] }).then(() => renderSiteRules(), (/** @type {Error} */ err) => siteMessage('warn', t('sites_permission_error', err.message)));
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
