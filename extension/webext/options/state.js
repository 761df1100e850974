// @ts-check
/**
 * What the options page's modules share: the port to the daemon (through the background), the
 * wasm core and its part schema once loaded, the last status, the team libraries the daemon
 * syncs (names and roles, from `team.status`), and the types of what the daemon returns.
 */
import { t } from '../lib/i18n.js';
import { LOCAL } from '../lib/team.js';

/** @typedef {import('../lib/core.js').Core} Core */
/** @typedef {import('../lib/page.js').Status} Status */
/** @typedef {{name: string, label?: string, required?: boolean}} Variable */
/** @typedef {{type: string, fallback?: Part} & Record<string, any>} Part */
/**
 * @typedef {{id: string, title: string, folder?: string, tags?: string[], shortcut?: string,
 *   revision?: number, variables?: Variable[], parts: Part[]}} Template
 */
/**
 * The part schema (the core's `part_schema()`, read from the model): the editor's forms are built
 * from it.
 * @typedef {{name: string, input: string, required: boolean, max_bytes: number | null, min_items: number | null, max_items: number | null, items: SchemaField[] | null}} SchemaField
 * @typedef {{kind: string, one_of: string[], fields: SchemaField[]}} SchemaKind
 */
/** @typedef {{code: string, message: string, data?: any}} Failure */
/** @typedef {import('../lib/team.js').TeamMeta} TeamMeta */
/**
 * A hub this device joined, and a team library, as `team.status` lists them (docs/protocol.md).
 * @typedef {{hub_id: string, url: string, user_name: string, device_name: string, state: string,
 *   events: boolean, last_error: string | null, last_ok_at: number | null}} HubStatus
 * @typedef {{id: string, name: string, hub_id: string | null, role: string | null, review_required: boolean,
 *   head_seq: number, cursor: number, lag: number, outbox: number, drafts: number, conflicts: number,
 *   templates: number, digest: string | null, hub_digest: string | null, digest_match: boolean | null,
 *   state: string, last_error: string | null, caught_up: boolean}} LibraryStatus
 */

export const page = {
  /** @type {{call: (method: string, params?: object) => Promise<any>} | null} */
  rpc: null,
  /** @type {Core | null} the wasm core once loaded */
  core: null,
  /** @type {{kinds: SchemaKind[]} | null} null until the core is loaded */
  schema: null,
  /** @type {Status} */
  status: { state: 'down', host: 'disconnected', reason: null, daemon: null },
  /**
   * The daemon's team side: `available` once `team.status` answered (false for a daemon without
   * team libraries), the hubs and libraries it listed.
   */
  team: {
    available: false,
    /** @type {HubStatus[]} */
    hubs: [],
    /** @type {Map<string, LibraryStatus>} */
    libraries: new Map(),
  },
};

/**
 * Asks `team.status` and keeps it in `page.team`; a daemon without team libraries leaves it empty.
 * @returns {Promise<typeof page.team>}
 */
export async function loadTeamStatus() {
  try {
    const r = await call('team.status', {});
    page.team.available = true;
    page.team.hubs = Array.isArray(r?.hubs) ? r.hubs : [];
    page.team.libraries = new Map((Array.isArray(r?.libraries) ? r.libraries : []).map((/** @type {LibraryStatus} */ l) => [l.id, l]));
  } catch (e) {
    if (failure(e).code !== 'unknown_method') throw e;
    page.team.available = false;
    page.team.hubs = [];
    page.team.libraries = new Map();
  }
  return page.team;
}

/** Whether some team library was joined (the pages then name every template's library). */
export const hasTeamLibraries = () => page.team.libraries.size > 0;

/** A library's name for people: the team library's name, "Personal" for the local one. */
export function libraryName(/** @type {string | null | undefined} */ id) {
  if (!id || id === LOCAL) return t('library_local');
  return page.team.libraries.get(id)?.name ?? id.slice(0, 8);
}

/** The user's role in library `id` (null for the local library and unknown ones). */
export const roleIn = (/** @type {string | null | undefined} */ id) => (id && id !== LOCAL ? page.team.libraries.get(id)?.role ?? null : null);

/**
 * Calls a daemon method through the background.
 * @param {string} method
 * @param {object} [params]
 * @returns {Promise<any>}
 */
export function call(method, params = {}) {
  if (!page.rpc) return Promise.reject(new Error('options page: not connected yet'));
  return page.rpc.call(method, params);
}

/** @param {string} kind */
export const kindSchema = (kind) => page.schema?.kinds.find((k) => k.kind === kind) ?? null;

/**
 * A thrown value as a failure with a code (an RpcError has one; anything else is `error`).
 * @param {unknown} e
 * @returns {Failure}
 */
export function failure(e) {
  const o = /** @type {{code?: unknown, message?: unknown, data?: unknown}} */ (e && typeof e === 'object' ? e : {});
  return {
    code: typeof o.code === 'string' ? o.code : 'error',
    message: typeof o.message === 'string' ? o.message : String(e),
    data: o.data,
  };
}

/** The page's one-line text for a failure. */
export function failureText(/** @type {unknown} */ e) {
  const f = failure(e);
  return t('error_code', [f.code, f.message]);
}

const PLATFORM_NAMES = /** @type {Record<string, string>} */ ({ udesk: 'Udesk', sobot: 'Sobot', 'wechat-dkf': 'platform_wechat_dkf', 'wechat-mp': 'platform_wechat_mp' });
/** A platform's name for people. */
export function platformName(/** @type {string} */ p) {
  const n = PLATFORM_NAMES[p];
  return n?.startsWith('platform_') ? t(n) : n ?? p;
}

/**
 * What a template's team state is called, and its longer explanation; null when there is nothing
 * to say (a local template, or one the hub has as it is here).
 * @param {TeamMeta | null | undefined} meta
 * @returns {{label: string, title: string} | null}
 */
export function syncText(meta) {
  switch (meta?.sync) {
    case 'pending': return { label: t('sync_pending'), title: t('sync_pending_title') };
    case 'draft': return { label: t('sync_draft'), title: t('sync_draft_title', meta.reason ?? t('sync_draft_unknown')) };
    case 'proposed': return { label: t('sync_proposed'), title: t('sync_proposed_title') };
    case 'conflict': return { label: t('sync_conflict'), title: t('sync_conflict_title') };
    default: return null;
  }
}

/** A time as the page shows it (short date and time, the page's language). */
export function shortTime(/** @type {number | null | undefined} */ ms) {
  if (!ms) return '';
  return new Intl.DateTimeFormat(t('page_lang'), { dateStyle: 'short', timeStyle: 'short' }).format(new Date(ms));
}
