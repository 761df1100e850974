// @ts-check
/**
 * The send queue: one FIFO per workspace, persisted in storage.local so that neither a restart of
 * the background nor of the browser loses track of a reserved send: after a background restart the
 * frames reconnect (same tokens) and the queue resumes; after a browser restart no frame comes back
 * and the leftovers are cancelled in the daemon (never posted) once the grace has passed.
 *
 * The pipeline: send.reserve -> wait -> send.begin -> content script posts -> send.done, strictly
 * first in, first out per workspace, surviving native-port drops and background restarts.
 * With a daemon that announces `send.reserve.begin` (protocol 1.3), the head of a queue reserves
 * with `"begin": true`: a free slot answers `go` and the send posts at once (one round trip).
 * A send that has to wait sleeps until its slot: the daemon's `not_before_ms`, which
 * `meter.released` (its `next` names the send and its slot) moves when the send ahead is done,
 * so it asks `send.begin` when the slot opens instead of polling. A `send.begin` that still
 * answers "wait" is followed once exactly, then with a growing floor up to WAIT_FALLBACK_MS: the
 * fallback for a lost event. A reconnect of the native port re-asks at once (events are lost
 * while it is down).
 * Item stages: new -> reserved -> begun -> posting -> posted -> sent|failed|cancelled
 * (new -> begun directly when the reservation was granted at once).
 * "posting" survives a restart only as "outcome unknown" (reported failed), never as a re-post.
 */
import { api } from '../lib/browser.js';
import { errorBody, RpcError } from '../lib/rpc.js';
import { usageChanged } from './library.js';
import { LOCAL } from '../lib/team.js';
import { log, quietly, sleep } from './log.js';
import { hasCapability, onDaemonEvent, onStatus, RECOVERABLE, request, requestRetrying, waitForUp } from './native.js';
import { CS_GRACE_MS, dropPairIfIdle, hooks, pairFor, pairs, sendToPanel, waitForCs } from './pairing.js';

/** @typedef {import('./pairing.js').Pair} Pair */
/** @typedef {import('./pairing.js').PostResult} PostResult */
/** @typedef {import('../lib/rpc.js').ErrorBody} ErrorBody */
/** @typedef {'new' | 'reserved' | 'begun' | 'posting' | 'posted' | 'sent' | 'failed' | 'cancelled'} Stage */
/**
 * A send: what the panel asked for, where it is, and the daemon's answers so far.
 * @typedef {{
 *   idempotency_key: string, key: string, batch: string, token: string, workspace: string,
 *   platform: string, template_id: string, library?: string, revision: number, part_index: number, payload: string,
 *   post_as: 'string' | 'object', conversation: string | null, customer: string | null,
 *   send_id: number | null, stage: Stage, delay_ms: number | null, due_at: number | null,
 *   result: PostResult | null, error: ErrorBody | null, maybeReserved: boolean, waits?: number,
 * }} Item
 */
/**
 * @typedef {{workspace: string, items: Item[], reserving: boolean, reservingItem: Item | null,
 *   running: boolean, wake: (() => void)[]}} Queue
 */

const POST_TIMEOUT_MS = 10_000;
/** The longest a send waits for its slot without asking: the fallback for a lost event. */
export const WAIT_FALLBACK_MS = 5_000;
/** The daemon capability of the one-round-trip reservation. */
const RESERVE_BEGIN = 'send.reserve.begin';
/** Wakes a suspended background while sends are queued, so they resume or get cleaned up. */
export const QUEUE_ALARM = 'quiver-queue';
const QUEUE_STORE_KEY = 'quiver.sendQueue.v1';

/** @type {Map<string, Queue>} workspace -> its queue */
export const queues = new Map();
/** @type {Set<Stage>} */
const FINAL = new Set(['sent', 'failed', 'cancelled']);

/** @returns {Queue} */
function queueFor(/** @type {string} */ workspace) {
  let q = queues.get(workspace);
  if (!q) {
    q = { workspace, items: [], reserving: false, reservingItem: null, running: false, wake: [] };
    queues.set(workspace, q);
  }
  return q;
}

function notify(/** @type {Queue} */ q) {
  const wake = q.wake.splice(0);
  for (const w of wake) w();
}

/** Waits until the queue changes, or `ms` passes (if given). */
/**
 * @param {Queue} q
 * @param {number} [ms]
 * @returns {Promise<void>}
 */
function waitChange(q, ms) {
  return new Promise((resolve) => {
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let timer;
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    if (ms !== undefined) timer = setTimeout(done, Math.max(0, ms));
    q.wake.push(done);
  });
}

/**
 * How long the background keeps quiet after queueing a send and after handing a post to the
 * assistant frame, so that the reservation, and then the post's two hops to the workspace page,
 * have the browser to themselves. After queueing it puts off saving the queue (work for the
 * browser's main thread: storage, alarms) and the acknowledgement to the panel; after a post,
 * the panel's `sending`, the save and `send.done` (the meter counts from `send.done`, so this
 * only ever widens the gap between two sends). Measured in docs/benchmarks.md (issue 9).
 */
export const QUIET_AFTER_SEND_MS = 25;

/** @type {ReturnType<typeof setTimeout> | null} */
let persistTimer = null;
let persistDue = 0;
/**
 * Saves the queue (every item not final) to storage.local, `delayMs` from now at the latest;
 * changes in the meantime are saved by the same write.
 * @param {number} [delayMs]
 */
function persist(delayMs = 0) {
  const due = Date.now() + delayMs;
  if (persistTimer !== null) {
    if (persistDue <= due) return;
    clearTimeout(persistTimer);
  }
  persistDue = due;
  persistTimer = setTimeout(() => {
    persistTimer = null;
    /** @type {Item[]} */
    const items = [];
    for (const q of queues.values()) for (const i of q.items) if (!FINAL.has(i.stage)) items.push(i);
    quietly(() => api.storage.local.set({ [QUEUE_STORE_KEY]: items }));
    if (items.length && !queueAlarm) {
      queueAlarm = true;
      quietly(() => api.alarms.create(QUEUE_ALARM, { delayInMinutes: 0.5, periodInMinutes: 0.5 }));
    } else if (!items.length && queueAlarm) {
      queueAlarm = false;
      quietly(() => api.alarms.clear(QUEUE_ALARM));
    }
  }, delayMs);
}
let queueAlarm = true; // unknown at start-up: the first persist() clears it if nothing is queued

/** Restores the queue saved before a restart; `ready` resolves once done. */
async function restore() {
  let items = [];
  try {
    const got = await api.storage.local.get(QUEUE_STORE_KEY);
    items = Array.isArray(got?.[QUEUE_STORE_KEY]) ? got[QUEUE_STORE_KEY] : [];
  } catch (e) {
    log.warn('could not read the saved send queue', e);
  }
  for (const item of items) {
    if (!item || FINAL.has(item.stage)) continue;
    if (item.stage === 'begun') {
      // Begun but not handed to the frame before the restart: report it, never post late.
      item.stage = 'posted';
      item.result = { ok: false, error: 'not posted: the extension restarted before posting' };
    } else if (item.stage === 'new') {
      item.maybeReserved = true; // its reserve may have reached the daemon before the restart
    } else if (item.stage === 'posting') {
      item.stage = 'posted';
      item.result = { ok: false, error: 'outcome unknown: the extension restarted while posting' };
    }
    pairFor(item.token);
    queueFor(item.workspace).items.push(item);
  }
  if (items.length) log.info(`resuming ${items.length} queued send(s)`);
  for (const q of queues.values()) kick(q);
  persist();
}

function kick(/** @type {Queue} */ q) {
  notify(q);
  reserveLoop(q);
  runLoop(q);
}

/**
 * Queues a send the panel asked for (checked by checkSend).
 * @param {Pair} pair
 * @param {any} msg
 */
export async function acceptSend(pair, msg) {
  await ready;
  if (!(await waitForCs(pair)) || !pair.workspace) {
    throw new RpcError('no_assistant_frame', 'the assistant frame of this panel is not connected');
  }
  /** @type {Item} */
  const item = {
    idempotency_key: crypto.randomUUID(),
    key: msg.key,
    batch: typeof msg.batch === 'string' ? msg.batch : msg.key,
    token: pair.token,
    workspace: pair.workspace,
    platform: msg.platform,
    template_id: msg.template_id,
    library: typeof msg.library === 'string' && msg.library ? msg.library : LOCAL,
    revision: msg.revision,
    part_index: msg.part_index,
    payload: msg.payload,
    post_as: msg.post_as,
    conversation: typeof msg.conversation === 'string' && msg.conversation ? msg.conversation : null,
    customer: typeof msg.customer === 'string' && msg.customer ? msg.customer : null,
    send_id: null,
    stage: 'new',
    delay_ms: null,
    due_at: null,
    result: null,
    error: null,
    maybeReserved: false,
  };
  const q = queueFor(item.workspace);
  q.items.push(item);
  kick(q); // its reservation leaves now
  // The panel shows the send as queued from the click; it hears of it again when its
  // reservation is answered. Saved once the reservation had its time.
  persist(QUIET_AFTER_SEND_MS);
  return { key: item.key };
}

function publicState(/** @type {Item} */ item) {
  if (FINAL.has(item.stage)) return item.stage;
  return item.stage === 'new' || item.stage === 'reserved' ? 'queued' : 'sending';
}

function emitState(/** @type {Item} */ item) {
  const pair = pairs.get(item.token);
  if (!pair) return;
  const state = publicState(item);
  /** @type {Record<string, unknown>} */
  const msg = {
    type: 'send-state',
    key: item.key,
    send_id: item.send_id,
    state,
    template_id: item.template_id,
    library: item.library ?? LOCAL,
    part_index: item.part_index,
  };
  if (state === 'queued') {
    msg.delay_ms = item.due_at === null ? null : Math.max(0, item.due_at - Date.now());
    msg.not_before_ms = item.due_at;
  }
  if (item.error) msg.error = item.error;
  sendToPanel(pair, msg);
}

/**
 * @param {Queue} q
 * @param {Item} item
 * @param {Stage} stage
 * @param {unknown} error
 */
function finish(q, item, stage, error) {
  if (FINAL.has(item.stage)) return;
  item.stage = stage;
  if (error) item.error = errorBody(error);
  emitState(item);
  persist();
  if (stage !== 'sent') cancelRestOfBatch(q, item);
  notify(q);
}

/** A part that did not go out stops the template's later parts: they would read out of order. */
function cancelRestOfBatch(/** @type {Queue} */ q, /** @type {Item} */ item) {
  const at = q.items.indexOf(item);
  for (const other of q.items.slice(at + 1)) {
    if (other.batch === item.batch && other.token === item.token && !FINAL.has(other.stage)) {
      requestCancel(q, other, `an earlier part of this template was ${item.stage}`);
    }
  }
}

/**
 * @param {Queue} q
 * @param {Item} item
 * @param {string} why
 */
function requestCancel(q, item, why) {
  if (FINAL.has(item.stage)) return false;
  if (item.stage === 'new' || item.stage === 'reserved') {
    const wasNew = item.stage === 'new';
    finish(q, item, 'cancelled', new RpcError('cancelled', why));
    if (item.send_id !== null) cancelRemote(item.send_id);
    else if (wasNew && item.maybeReserved && q.reservingItem !== item) cancelLostReservation(item);
    // (A new item the reserve loop is working on is cancelled there when its reply comes.)
    return true;
  }
  return false; // already being posted: too late
}

/** Cancels the send `key` of the panel of `token`, if still possible. */
export function cancelByKey(/** @type {string} */ token, /** @type {unknown} */ key) {
  for (const q of queues.values()) {
    const item = q.items.find((i) => i.token === token && i.key === key);
    if (item) return requestCancel(q, item, 'cancelled by the agent');
  }
  return false;
}

/** A restored send may have been reserved before the restart: find it (same key) and cancel it. */
async function cancelLostReservation(/** @type {Item} */ item) {
  try {
    const r = await requestRetrying('send.reserve', reserveParams(item));
    if (r?.send_id === undefined) return;
    // Granted by a go-now reservation whose reply was lost: never posted, hand the slot back.
    if (r.state === 'sending') await reportDone(r.send_id, { ok: false, error: 'cancelled before posting' });
    else await cancelRemote(r.send_id);
  } catch (err) {
    const e = /** @type {RpcError} */ (err);
    log.info('cancelling a lost reservation', e.code, e.message);
  }
}

async function cancelRemote(/** @type {number} */ sendId) {
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      await request('send.cancel', { send_id: sendId });
      return;
    } catch (err) {
      const e = /** @type {RpcError} */ (err);
      if (!RECOVERABLE.has(e.code)) {
        log.info('send.cancel', sendId, e.code, e.message);
        return;
      }
      await Promise.all([waitForUp(), sleep(1_000)]);
    }
  }
}

/**
 * @param {Item} item
 * @param {boolean} [begin] ask for the slot at once (protocol 1.3)
 */
function reserveParams(item, begin = false) {
  return {
    ...(begin ? { begin: true } : {}),
    idempotency_key: item.idempotency_key,
    platform: item.platform,
    workspace: item.workspace,
    conversation: item.conversation ?? null,
    customer: item.customer ?? null,
    template_id: item.template_id,
    // The library (1.4) only when it is a team library: the default, and what an older daemon knows.
    ...(item.library && item.library !== LOCAL ? { library: item.library } : {}),
    revision: item.revision,
    part_index: item.part_index,
    payload: item.payload,
  };
}

/**
 * Whether `item`'s reservation may ask for its slot at once: the daemon speaks it, the item is
 * the first of its queue (nothing of this queue is on its way: one send at a time, in order)
 * and its assistant frame is connected to post it.
 * @param {Queue} q
 * @param {Item} item
 * @param {Pair | undefined} pair
 */
function mayGoNow(q, item, pair) {
  return hasCapability(RESERVE_BEGIN) && Boolean(pair?.cs) && q.items.find((i) => !FINAL.has(i.stage)) === item;
}

/**
 * Tells the assistant frame that a post may follow, just after a request that may grant a slot
 * (a reservation with `begin`, `send.begin`) has left. The content script has nothing to do with
 * it: receiving it wakes the frame's process while the daemon answers, so the post does not wait
 * for that wake-up (Chromium: click to posted about 0.8 ms shorter, docs/benchmarks.md).
 */
function expectPost(/** @type {Pair | undefined} */ pair) {
  const cs = pair?.cs;
  if (cs) quietly(() => cs.postMessage({ type: 'expect' }));
}

/** Reserves every new item in order, as soon as it is queued, so the daemon sees the whole queue. */
async function reserveLoop(/** @type {Queue} */ q) {
  if (q.reserving) return;
  q.reserving = true;
  try {
    for (;;) {
      const item = q.items.find((i) => i.stage === 'new');
      if (!item) break;
      const pair = pairs.get(item.token);
      if (!pair || (!pair.cs && pair.csLostAt + CS_GRACE_MS <= Date.now())) {
        requestCancel(q, item, 'the assistant frame is gone');
        continue;
      }
      q.reservingItem = item;
      let r;
      try {
        // Keep going for a cancelled send whose reservation may exist, to cancel it there too.
        // Each attempt decides again whether it may ask for the slot at once: only the first
        // send of the queue, with its frame there, to a daemon that speaks it (a retry reuses
        // the idempotency key either way: a replay never grants twice).
        let begins = false; // whether the attempt on its way asks for the slot at once
        const asking = requestRetrying(
          'send.reserve',
          () => reserveParams(item, (begins = mayGoNow(q, item, pair))),
          (maybeSent) => {
            if (maybeSent) item.maybeReserved = true;
            return item.stage === 'new' || item.maybeReserved;
          },
        );
        if (begins) expectPost(pair);
        r = await asking;
      } catch (e) {
        finish(q, item, 'failed', e);
        continue;
      }
      if (item.stage !== 'new') {
        // Cancelled while the reservation was on its way: cancel it in the daemon too (a
        // granted slot is handed back with send.done). If no attempt could have reached the
        // daemon, the retry stopped and no send exists.
        if (FINAL.has(item.stage) && r?.send_id !== undefined) {
          if (r.go === true || r.state === 'sending') reportDone(r.send_id, { ok: false, error: 'cancelled before posting' }).catch(() => {});
          else if (r.state === 'queued' || r.state === undefined) cancelRemote(r.send_id);
        }
        continue;
      }
      item.send_id = r.send_id;
      item.delay_ms = Number(r.delay_ms) || 0;
      item.due_at = dueAt(r);
      if (r.go === true) {
        item.stage = 'begun'; // granted: the run loop posts it now (and tells the panel then)
        persist(QUIET_AFTER_SEND_MS); // with its post, in the same write
        notify(q);
        continue;
      } else if (r.state === 'sending') {
        // A replayed reservation that was granted before (its reply was lost, so this
        // background never posted it): never granted twice; reported as not posted.
        item.stage = 'posted';
        item.result = { ok: false, error: 'not posted: the reply granting its slot was lost' };
      } else if (r.state === 'sent' || r.state === 'failed' || r.state === 'cancelled') {
        // A replay of a send that has ended: that is its outcome; do not post it.
        const why = r.error ?? `the send was already ${r.state}`;
        finish(q, item, r.state, r.state === 'sent' ? null : new RpcError(r.state === 'cancelled' ? 'cancelled' : 'post_failed', why));
        continue;
      } else {
        item.stage = 'reserved';
      }
      emitState(item);
      persist();
      notify(q);
    }
  } catch (e) {
    log.warn('reserve loop', e);
  } finally {
    q.reserving = false;
    q.reservingItem = null;
  }
}

/** Runs the head of the queue, one send at a time. */
async function runLoop(/** @type {Queue} */ q) {
  if (q.running) return;
  q.running = true;
  try {
    while (q.items.length) {
      const item = q.items[0];
      if (FINAL.has(item.stage)) {
        q.items.shift();
        persist();
        const pair = pairs.get(item.token);
        if (pair) dropPairIfIdle(pair);
        continue;
      }
      if (item.stage === 'new') {
        await waitChange(q);
        continue;
      }
      try {
        await runItem(q, item);
      } catch (e) {
        log.warn('send failed unexpectedly', e);
        finish(q, item, 'failed', e);
      }
    }
    queues.delete(q.workspace);
  } finally {
    q.running = false;
  }
}

async function runItem(/** @type {Queue} */ q, /** @type {Item} */ item) {
  const pair = pairFor(item.token);
  // Past `new`, an item has its send id.
  const sendId = /** @type {number} */ (item.send_id);
  // 1. Wait for the slot, then ask for it.
  let beginPause = 250;
  item.waits = 0;
  while (item.stage === 'reserved') {
    const wait = (item.due_at ?? 0) - Date.now();
    if (wait > 0) {
      await waitChange(q, wait);
      continue; // re-check: cancelled? still waiting?
    }
    if (!(await waitForCs(pair))) {
      requestCancel(q, item, 'the assistant frame is gone');
      return;
    }
    if (item.stage !== 'reserved') return;
    let r;
    try {
      const asking = request('send.begin', { send_id: item.send_id });
      expectPost(pair);
      r = await asking;
      beginPause = 250;
    } catch (err) {
      const e = /** @type {RpcError} */ (err);
      if (RECOVERABLE.has(e.code)) {
        await Promise.all([waitForUp(), sleep(beginPause)]);
        beginPause = Math.min(beginPause * 2, 5_000);
        continue;
      }
      finish(q, item, 'failed', e);
      return;
    }
    if (item.stage !== 'reserved') {
      // Cancelled while asking. If the slot was granted, hand it back.
      if (r?.go) await reportDone(sendId, { ok: false, error: 'cancelled before posting' });
      return;
    }
    if (r?.go) {
      item.stage = 'begun';
      break; // the panel hears `sending` once the post is on its way
    } else {
      // Not yet. The daemon's delay is exact when this send is first in line with nothing in
      // flight; when a send is ahead or in flight, meter.released names this one when that is
      // done (onReleased). A second "wait" in a row means the event is awaited: the timer then
      // only backs it up, with a growing floor, never polling.
      const waits = /** @type {number} */ ((item.waits ?? 0) + 1);
      item.waits = waits;
      const floor = waits > 1 ? Math.min(250 * 2 ** (waits - 2), WAIT_FALLBACK_MS) : 0;
      item.delay_ms = Number(r?.delay_ms) || 0;
      item.due_at = Math.max(dueAt(r), Date.now() + floor);
    }
    emitState(item);
    persist();
  }
  // 2. Hand the payload to the assistant frame, then keep quiet while it crosses to the page: the
  // panel hears `sending`, the queue is saved (`posting`) and the daemon hears `send.done` after.
  if (item.stage === 'begun') {
    item.stage = 'posting';
    const posting = postViaContentScript(pair, item);
    persist(QUIET_AFTER_SEND_MS);
    await sleep(QUIET_AFTER_SEND_MS);
    emitState(item);
    item.result = await posting;
    item.stage = 'posted';
    persist();
  }
  // 3. Report the outcome; the daemon measures the interval from here.
  if (item.stage === 'posted') {
    const result = item.result ?? { ok: false, error: 'no result' };
    /** @type {Error | null} */
    let err = null;
    try {
      await reportDone(sendId, result);
    } catch (e) {
      const failure = /** @type {RpcError} */ (e);
      err = failure;
      log.warn('send.done', item.send_id, failure.code, failure.message);
    }
    if (result.ok) {
      finish(q, item, 'sent', null);
      usageChanged();
    }
    else finish(q, item, 'failed', new RpcError('post_failed', result.error ?? 'post failed'));
    if (err && result.ok) log.warn('sent, but the daemon did not record it:', err.message);
  }
}

/** When a reserved slot opens: the daemon's `not_before_ms` if it gave one, else now + delay_ms. */
function dueAt(/** @type {{not_before_ms?: unknown, delay_ms?: unknown} | null | undefined} */ r) {
  const nb = Number(r?.not_before_ms);
  if (Number.isFinite(nb) && nb > 0) return nb;
  return Date.now() + (Number(r?.delay_ms) || 0);
}

function reportDone(/** @type {number} */ sendId, /** @type {PostResult} */ result) {
  /** @type {{send_id: number, ok: boolean, error?: string | null}} */
  const params = { send_id: sendId, ok: result.ok };
  if (!result.ok) params.error = result.error;
  return requestRetrying('send.done', params);
}

/** @returns {Promise<PostResult>} */
function postViaContentScript(/** @type {Pair} */ pair, /** @type {Item} */ item) {
  const cs = pair.cs;
  const sendId = /** @type {number} */ (item.send_id);
  if (!cs) return Promise.resolve({ ok: false, error: 'the assistant frame is gone' });
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      pair.postWaiters.delete(sendId);
      resolve({ ok: false, error: `no answer from the assistant frame within ${POST_TIMEOUT_MS} ms` });
    }, POST_TIMEOUT_MS);
    pair.postWaiters.set(sendId, (r) => {
      clearTimeout(timer);
      resolve(r);
    });
    try {
      cs.postMessage({ type: 'post', send_id: item.send_id, wire: item.payload, post_as: item.post_as });
    } catch (e) {
      pair.postWaiters.delete(sendId);
      clearTimeout(timer);
      resolve({ ok: false, error: `could not reach the assistant frame: ${/** @type {Error} */ (e)?.message ?? e}` });
    }
  });
}


/**
 * Why the panel's `send` message is malformed, or null.
 * @param {any} m
 * @returns {string | null}
 */
export function checkSend(m) {
  /** @param {unknown} v */
  const str = (v) => typeof v === 'string' && v.length > 0;
  /** @param {unknown} v */
  const uint = (v) => typeof v === 'number' && Number.isInteger(v) && v >= 0;
  if (!str(m.key)) return 'send: `key` must be a non-empty string';
  if (!str(m.template_id)) return 'send: `template_id` must be a non-empty string';
  if (m.library !== undefined && m.library !== null && !str(m.library)) return 'send: `library` must be a non-empty string';
  if (!uint(m.revision)) return 'send: `revision` must be a non-negative integer';
  if (!uint(m.part_index)) return 'send: `part_index` must be a non-negative integer';
  if (!str(m.payload)) return 'send: `payload` must be a non-empty string';
  if (m.post_as !== 'string' && m.post_as !== 'object') return 'send: `post_as` must be "string" or "object"';
  if (!str(m.platform)) return 'send: `platform` must be a non-empty string';
  for (const k of ['conversation', 'customer']) {
    if (m[k] !== undefined && m[k] !== null && typeof m[k] !== 'string') return `send: \`${k}\` must be a string`;
  }
  if (m.post_as === 'object') {
    try {
      JSON.parse(m.payload);
    } catch {
      return 'send: `payload` must be JSON text when `post_as` is "object"';
    }
  }
  return null;
}

/** Resolves once the saved queue is restored (startQueue). */
export let ready = Promise.resolve();

/** Restores the saved queue and wires the queue into pairing; called once at start-up. */
export function startQueue() {
  hooks.busy = (token) => [...queues.values()].some((q) => q.items.some((i) => i.token === token));
  hooks.csConnected = () => {
    for (const q of queues.values()) notify(q);
  };
  hooks.panelPaired = (token) => {
    // On (re)connect the panel is sent the state of each of its sends still in the queue.
    ready.then(() => {
      for (const q of queues.values()) {
        for (const item of q.items) if (item.token === token) emitState(item);
      }
    });
  };
  onDaemonEvent((name, data) => {
    if (name === 'meter.released') onReleased(data);
    else if (name === 'daemon.up') reaskAll();
  });
  let wasUp = false;
  onStatus((s) => {
    // Events sent while the port was down are lost: ask again once it is back.
    if (s.state === 'up' && !wasUp) reaskAll();
    wasUp = s.state === 'up';
  });
  ready = restore();
  return ready;
}

/**
 * `meter.released`: a send of a key ended; `next` names the first send of that key's queue and
 * when its slot opens. If it is one of ours, it asks `send.begin` then.
 * @param {Record<string, unknown>} data
 */
function onReleased(data) {
  const next = /** @type {{send_id?: unknown, delay_ms?: unknown, not_before_ms?: unknown} | null} */ (data?.next ?? null);
  if (!next || typeof next.send_id !== 'number') return;
  for (const q of queues.values()) {
    const item = q.items.find((i) => i.send_id === next.send_id);
    if (!item) continue;
    if (item.stage === 'reserved') {
      item.due_at = dueAt(next);
      item.delay_ms = Number(next.delay_ms) || 0;
      item.waits = 0;
      emitState(item);
      notify(q);
    }
    return;
  }
}

/** Has every waiting send ask for its slot now (after a reconnect, events may have been lost). */
function reaskAll() {
  for (const q of queues.values()) {
    let changed = false;
    for (const item of q.items) {
      if (item.stage === 'reserved') {
        item.due_at = Math.min(item.due_at ?? 0, Date.now());
        item.waits = 0;
        changed = true;
      }
    }
    if (changed) notify(q);
  }
}
