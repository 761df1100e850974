// @ts-check
/**
 * User sites: content scripts for the origins of the user's site rules (storage.local
 * `siteRules`, shape documented in content.js) that the user granted (optional_host_permissions).
 * The manifest's static matches cover the demo pages; rules cannot be matched by URL here (a
 * match pattern has no port wildcard and no query), so the script runs on the rule's whole
 * origin and content.js applies the rule itself.
 */
import { api } from '../lib/browser.js';
import { originPermission } from '../lib/sites.js';
import { log } from './log.js';

const USER_SCRIPT_ID = 'quiver-user-sites';

let syncingUserSites = Promise.resolve();
/** Re-registers the user sites' content script (one sync at a time). */
export function syncUserSites() {
  syncingUserSites = syncingUserSites.then(syncUserSitesNow).catch((e) => log.warn('user sites', e));
  return syncingUserSites;
}

async function syncUserSitesNow() {
  if (!api.scripting?.registerContentScripts || !api.permissions?.contains) return;
  const got = await api.storage.local.get('siteRules');
  /** @type {import('../lib/sites.js').SiteRule[]} */
  const rules = Array.isArray(got?.siteRules) ? got.siteRules : [];
  // The assistant pages' origins, and the workspaces' (where granted: there the script only
  // answers the origin handshake of browsers without location.ancestorOrigins, see content.js).
  const enabled = rules.filter((r) => r && r.enabled !== false);
  const patterns = enabled.flatMap((r) => [r.pattern, ...(Array.isArray(r.workspaces) ? r.workspaces : [])]);
  const wanted = [...new Set(patterns.map(originPermission).filter((o) => o !== null))];
  /** @type {string[]} */
  const granted = [];
  for (const origin of wanted) {
    try {
      if (await api.permissions.contains({ origins: [origin] })) granted.push(origin);
    } catch {
      // an origin the browser does not accept as a permission
    }
  }
  const existing = await api.scripting.getRegisteredContentScripts({ ids: [USER_SCRIPT_ID] }).catch(() => []);
  if (existing.length) await api.scripting.unregisterContentScripts({ ids: [USER_SCRIPT_ID] });
  if (!granted.length) return;
  await api.scripting.registerContentScripts([{
    id: USER_SCRIPT_ID,
    matches: granted,
    js: ['build-config.js', 'content.js'],
    allFrames: true,
    runAt: 'document_idle',
    persistAcrossSessions: true,
  }]);
  log.info('content script registered for', granted.join(' '));
}
