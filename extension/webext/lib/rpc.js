// @ts-check
/**
 * Request/reply over a port: the error type every layer uses, and the table of calls waiting
 * for their reply (the background's native port, the panel's and the pages' ports).
 */

/** An error with a protocol code (docs/protocol.md, or a local one) and the daemon's details. */
export class RpcError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {unknown} [data]
   */
  constructor(code, message, data) {
    super(message);
    this.code = code;
    /** @type {unknown} */
    this.data = data;
  }
}

/** An error as it crosses a port: code, message, and the daemon's details if any. */
/** @typedef {{code: string, message: string, data?: unknown}} ErrorBody */

/**
 * @param {unknown} e
 * @returns {ErrorBody}
 */
export function errorBody(e) {
  const err = /** @type {{code?: unknown, message?: unknown, data?: unknown} | null | undefined} */ (e);
  return {
    code: typeof err?.code === 'string' ? err.code : 'internal',
    message: String(err?.message ?? e),
    ...(err?.data !== undefined ? { data: err.data } : {}),
  };
}

/**
 * Calls waiting for their reply, by id. `start` hands out the id and the promise; the reply
 * settles it; a timeout (if given) rejects it and forgets it.
 * @template T
 */
export class Pending {
  /** @type {Map<number, {resolve: (v: T) => void, reject: (e: Error) => void, timer: ReturnType<typeof setTimeout> | undefined}>} */
  #calls = new Map();
  #next = 1;

  /**
   * @param {number} [timeoutMs] no timeout when absent
   * @param {(id: number) => Error} [onTimeout] the error a timed-out call is rejected with
   * @returns {{id: number, promise: Promise<T>}}
   */
  start(timeoutMs, onTimeout) {
    const id = this.#next++;
    /** @type {Promise<T>} */
    const promise = new Promise((resolve, reject) => {
      const timer = timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
          this.#calls.delete(id);
          reject(onTimeout ? onTimeout(id) : new RpcError('timeout', `no reply within ${timeoutMs} ms`));
        }, timeoutMs);
      this.#calls.set(id, { resolve, reject, timer });
    });
    return { id, promise };
  }

  /** @param {unknown} id */
  has(id) {
    return this.#calls.has(/** @type {number} */ (id));
  }

  /** Removes the call `id`; returns its settlers, or undefined when nobody waits for it. */
  #take(/** @type {unknown} */ id) {
    const call = this.#calls.get(/** @type {number} */ (id));
    if (!call) return undefined;
    this.#calls.delete(/** @type {number} */ (id));
    clearTimeout(call.timer);
    return call;
  }

  /**
   * @param {unknown} id
   * @param {T} value
   * @returns {boolean} false when nobody waits for `id`
   */
  resolve(id, value) {
    const call = this.#take(id);
    call?.resolve(value);
    return Boolean(call);
  }

  /**
   * @param {unknown} id
   * @param {Error} error
   * @returns {boolean} false when nobody waits for `id`
   */
  reject(id, error) {
    const call = this.#take(id);
    call?.reject(error);
    return Boolean(call);
  }

  /** Rejects every waiting call with `error`. */
  rejectAll(/** @type {Error} */ error) {
    const calls = [...this.#calls.values()];
    this.#calls.clear();
    for (const call of calls) {
      clearTimeout(call.timer);
      call.reject(error);
    }
  }
}
