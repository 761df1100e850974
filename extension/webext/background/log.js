// @ts-check
/** The background's console log, and a guard for extension calls whose failure only matters there. */

export const log = {
  /** @param {...unknown} a */
  info: (...a) => console.info('[quiver]', ...a),
  /** @param {...unknown} a */
  warn: (...a) => console.warn('[quiver]', ...a),
};

/** Swallows (and logs) the error of `fn`, whether it throws or returns a promise that rejects. */
export function quietly(/** @type {() => unknown} */ fn) {
  try {
    const r = /** @type {{catch?: unknown} | null | undefined} */ (fn());
    if (r && typeof r.catch === 'function') /** @type {Promise<unknown>} */ (r).catch((e) => log.warn(e));
  } catch (e) {
    log.warn(e);
  }
}

/** @param {number} ms */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
