// @ts-check
/**
 * Chunked replies: a reply too large for one native message comes as
 * `{"id", "chunk": {"seq", "total", "data"}}` pieces whose `data`, in `seq` order, concatenate to
 * the reply's JSON text. The JS twin of `quiver_shared::proto::Reassembler`, with its limits; kept
 * in this one module so the wasm core's export can take its place.
 */

/** Limits of chunked replies (as quiver_shared::proto::Reassembler). */
export const MAX_CHUNKS = 4096;
export const MAX_REASSEMBLED = 64 * 1024 * 1024;

/** @typedef {{id: number, chunk?: {seq?: unknown, total?: unknown, data?: unknown}}} ChunkMessage */
/** A whole reply, or the error reply standing for a broken chunked one. */
/** @typedef {{id: number, result?: unknown, error?: {code: string, message: string, data?: unknown}}} Reply */

export class Reassembler {
  /** @type {Map<number, {total: number, parts: (string | undefined)[], got: number, bytes: number}>} */
  #replies = new Map();

  /**
   * Collects one piece. Returns the whole reply once its last piece is in, an error reply when
   * the pieces are broken (the reply is dropped), else null.
   * @param {ChunkMessage} msg
   * @returns {Reply | null}
   */
  push(msg) {
    const { id } = msg;
    const { seq, total, data } = msg.chunk ?? {};
    /** @param {string} why @returns {Reply} */
    const fail = (why) => {
      this.#replies.delete(id);
      return { id, error: { code: 'internal', message: `chunked reply: ${why}` } };
    };
    if (!Number.isInteger(seq) || !Number.isInteger(total) || typeof data !== 'string') {
      return fail('malformed chunk');
    }
    const s = /** @type {number} */ (seq);
    const n = /** @type {number} */ (total);
    if (n < 1 || n > MAX_CHUNKS || s < 0 || s >= n) {
      return fail(`chunk ${s} of ${n} is impossible`);
    }
    let c = this.#replies.get(id);
    if (!c) {
      c = { total: n, parts: new Array(n), got: 0, bytes: 0 };
      this.#replies.set(id, c);
    }
    if (c.total !== n) return fail('chunks of one reply disagree on `total`');
    if (c.parts[s] === undefined) {
      c.parts[s] = data;
      c.got += 1;
      c.bytes += data.length;
    }
    if (c.bytes > MAX_REASSEMBLED) return fail(`reply larger than ${MAX_REASSEMBLED} bytes`);
    if (c.got < c.total) return null;
    this.#replies.delete(id);
    let whole;
    try {
      whole = JSON.parse(c.parts.join(''));
    } catch (e) {
      return fail(`the joined reply is not JSON: ${/** @type {Error} */ (e).message}`);
    }
    if (!whole || typeof whole !== 'object' || whole.chunk !== undefined || whole.id !== id) {
      return fail('the joined reply is not a reply to this request');
    }
    return whole;
  }

  /** Drops the pieces of reply `id` (nobody waits for it any more). */
  forget(/** @type {number} */ id) {
    this.#replies.delete(id);
  }

  /** Drops every reply in progress (the port they came on is gone). */
  clear() {
    this.#replies.clear();
  }
}
