// @ts-check
/**
 * Team libraries as the extension sees them (docs/sync.md, docs/protocol.md 1.4): a template
 * belongs to one library, `local` (the user's own) or a team library (a UUID from the hub), and
 * its id is unique only within that library. Everything that holds templates of several
 * libraries keys them by `library/id` (`templateKey`); the template itself stays plain library
 * JSON (the wasm core's `Template` refuses unknown fields), and what the daemon knows of its team
 * state (`TeamMeta`: sync state, last author and time, a draft's reason) travels beside it.
 */

/** The user's own library (never synced). */
export const LOCAL = 'local';

/**
 * The team state of one template, from the `meta` of `templates.list` or the team fields of
 * `templates.get` / `templates.search`. `sync`: `synced` (the hub has it), `pending` (saved
 * here, not pushed yet), `draft` (the hub refused it: `reason` says why), `proposed` (waiting
 * for a reviewer), `conflict` (two versions kept; `team.conflicts`).
 * @typedef {{library: string, sync?: string, author?: string | null, changed_at?: number | null,
 *   head_rev?: string | null, reason?: string | null}} TeamMeta
 */
/**
 * A team library as `team.status` lists it (the fields the pages use).
 * @typedef {{id: string, name: string, role: string | null, hub_id?: string | null}} TeamLibrary
 */

/** @type {TeamMeta} */
export const LOCAL_META = Object.freeze({ library: LOCAL });

/** The key of template `id` of `library`, unique across libraries. */
export function templateKey(/** @type {string | null | undefined} */ library, /** @type {string} */ id) {
  return `${library || LOCAL}/${id}`;
}

/**
 * The library and id of a key (library ids never hold a `/`; template ids may).
 * @param {string} key
 * @returns {{library: string, id: string}}
 */
export function splitKey(key) {
  const i = key.indexOf('/');
  return i < 0 ? { library: LOCAL, id: key } : { library: key.slice(0, i), id: key.slice(i + 1) };
}

const META_FIELDS = /** @type {const} */ (['sync', 'author', 'changed_at', 'head_rev', 'reason']);

/**
 * The team state in a daemon reply (a `templates.list` meta row, a `templates.get` result, a
 * search hit): only the fields of TeamMeta, nothing of the template.
 * @param {unknown} row
 * @returns {TeamMeta}
 */
export function metaOf(row) {
  const r = /** @type {Record<string, unknown> | null} */ (row && typeof row === 'object' ? row : null);
  const library = typeof r?.library === 'string' && r.library ? r.library : LOCAL;
  if (library === LOCAL) return LOCAL_META;
  /** @type {Record<string, unknown>} */
  const out = { library };
  for (const f of META_FIELDS) if (r?.[f] !== undefined && r[f] !== null) out[f] = r[f];
  return /** @type {TeamMeta} */ (out);
}

/** Roles whose edits the hub publishes (a viewer's stay local drafts). */
const PUBLISHING = new Set(['editor', 'maintainer', 'owner']);
/** Whether `role` publishes its edits to the team library. */
export const mayPublish = (/** @type {string | null | undefined} */ role) => PUBLISHING.has(role ?? '');
