// @ts-check
/**
 * The site-rule grammar (storage.local `siteRules`, documented in content.js), for the
 * extension's pages and the background: which patterns are valid, the host permissions a rule
 * needs, and matching. The content script cannot import it (content scripts are classic
 * scripts) and keeps its own matcher; extension/tests/sites.test.mjs runs both on one table of
 * cases, so they cannot drift.
 *
 * A rule pattern is `scheme://host[:port]/path`: scheme `http`, `https` or `*`; host a name,
 * `*.` + a name (any subdomain) or `*`; `*` in the path is any run of characters (query
 * included); no port = any port. A workspace is an origin pattern `scheme://host[:port]` (host
 * may start with `*.`, a bare `*` is refused).
 */

/**
 * @typedef {{pattern: string, platform: string, workspaces?: string[], enabled?: boolean,
 *   channel?: string}} SiteRule
 */

const RULE_RE = /^(\*|https?):\/\/(\*|(?:\*\.)?[^/*:]+)(?::\d+)?\/.*$/;
const WORKSPACE_RE = /^(https?|\*):\/\/(?:\*\.)?[a-z0-9.-]+(?::\d+)?$/i;

/** True when `pattern` is a rule pattern the options page accepts. */
export function isRulePattern(/** @type {string} */ pattern) {
  return RULE_RE.test(pattern);
}

/**
 * The match pattern (`scheme://host/*`) of the origin a rule pattern or a workspace names, the
 * host permission it needs; null when it names none.
 * @returns {string | null}
 */
export function originPermission(/** @type {unknown} */ pattern) {
  const m = /^(\*|https?):\/\/([^/]+)/.exec(String(pattern ?? '').trim());
  if (!m) return null;
  const host = m[2].replace(/:\d+$/, '');
  if (!/^(\*|(\*\.)?[a-z0-9.-]+)$/i.test(host)) return null;
  return `${m[1]}://${host}/*`;
}

/**
 * The host permissions a rule needs: its assistant page's origin and, when
 * `withWorkspaces` (a browser without `location.ancestorOrigins`: there the content script must
 * run in the workspace frames to answer the origin handshake, content.js), its workspaces' too.
 * Null when the pattern is not valid.
 * @param {string} pattern
 * @param {unknown} workspaces
 * @param {boolean} withWorkspaces
 * @returns {string[] | null}
 */
export function permissionsFor(pattern, workspaces, withWorkspaces) {
  const assistant = isRulePattern(pattern) ? originPermission(pattern) : null;
  if (!assistant) return null;
  const extra = withWorkspaces && Array.isArray(workspaces)
    ? workspaces.map(originPermission).filter((o) => o !== null)
    : [];
  return [...new Set([assistant, ...extra])];
}

/**
 * The workspace origins typed in (space or comma separated), or null if one is not an origin
 * pattern.
 * @returns {string[] | null}
 */
export function parseWorkspaces(/** @type {string} */ text) {
  const list = text.split(/[\s,]+/).filter(Boolean).map((w) => w.replace(/\/$/, ''));
  return list.length && list.every((w) => WORKSPACE_RE.test(w)) ? [...new Set(list)] : null;
}

function globToRe(/** @type {string} */ glob) {
  return glob.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
}

/** True when `url` matches the rule pattern `pattern`. */
export function ruleMatches(/** @type {unknown} */ pattern, /** @type {URL} */ url) {
  const m = /^(\*|https?):\/\/([^/]+)(\/.*)?$/.exec(String(pattern ?? '').trim());
  if (!m) return false;
  const [, scheme, hostPort, pathGlob = '/*'] = m;
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
  if (scheme !== '*' && `${scheme}:` !== url.protocol) return false;
  const [host, port] = hostPort.split(/:(?=\d+$)/);
  if (port !== undefined && port !== (url.port || (url.protocol === 'https:' ? '443' : '80'))) return false;
  const h = url.hostname.toLowerCase();
  const ph = host.toLowerCase();
  if (ph !== '*') {
    if (ph.startsWith('*.')) {
      const base = ph.slice(2);
      if (h !== base && !h.endsWith(`.${base}`)) return false;
    } else if (ph !== h) {
      return false;
    }
  }
  return new RegExp(`^${globToRe(pathGlob)}$`).test(url.pathname + url.search);
}

/** True when `origin` (`scheme://host[:port]`) matches the workspace pattern `pattern`. */
export function originMatches(/** @type {unknown} */ pattern, /** @type {string} */ origin) {
  const m = /^(\*|https?):\/\/([^/:]+)(?::(\d+))?\/?$/.exec(String(pattern ?? '').trim());
  if (!m || m[2] === '*') return false;
  let url;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  if (url.origin !== origin || (url.protocol !== 'http:' && url.protocol !== 'https:')) return false;
  const [, scheme, host, port] = m;
  if (scheme !== '*' && `${scheme}:` !== url.protocol) return false;
  if (port !== undefined && port !== (url.port || (url.protocol === 'https:' ? '443' : '80'))) return false;
  const h = url.hostname.toLowerCase();
  const ph = host.toLowerCase();
  if (ph.startsWith('*.')) return h === ph.slice(2) || h.endsWith(ph.slice(1));
  return h === ph;
}

/** True when every ancestor origin (parent first, top last) is one of the rule's workspaces. */
export function servesAncestors(/** @type {SiteRule | null | undefined} */ rule, /** @type {unknown} */ ancestors) {
  const allowed = Array.isArray(rule?.workspaces) ? rule.workspaces : [];
  return Array.isArray(ancestors) && ancestors.length > 0
    && ancestors.every((o) => allowed.some((p) => originMatches(p, o)));
}
