// @ts-check
/**
 * What the options page's modules share: the port to the daemon (through the background), the
 * wasm core and its part schema once loaded, the last status, and the types of what the daemon
 * returns.
 */
import { t } from '../lib/i18n.js';

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

export const page = {
  /** @type {{call: (method: string, params?: object) => Promise<any>} | null} */
  rpc: null,
  /** @type {Core | null} the wasm core once loaded */
  core: null,
  /** @type {{kinds: SchemaKind[]} | null} null until the core is loaded */
  schema: null,
  /** @type {Status} */
  status: { state: 'down', host: 'disconnected', reason: null, daemon: null },
};

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
