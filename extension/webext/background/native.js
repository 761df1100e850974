// @ts-check
/**
 * The ONE native-messaging port to `quiver native-host`, reconnected with backoff: the
 * connection's status, requests to the daemon matched to their replies by id (chunked replies
 * joined by the wasm core's `Reassembler`), and the daemon's events, handed to whoever listens (`onStatus`, `onDaemonEvent`).
 */
import { api } from '../lib/browser.js';
import { Pending, RpcError } from '../lib/rpc.js';
import { log, quietly, sleep } from './log.js';
import { loadCore } from '../lib/core.js';

export const HOST_NAME = 'dev.quiver.host';
export const PROTOCOL = 1;
export const CLIENT = `quiver-extension/${api.runtime.getManifest().version}`;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30_000;
const REQUEST_TIMEOUT_MS = 15_000;
export const RECONNECT_ALARM = 'quiver-reconnect';
/** Errors after which a step is retried once the daemon is reachable again. */
export const RECOVERABLE = new Set(['host_unavailable', 'host_disconnected', 'daemon_unavailable', 'timeout']);

/**
 * What panels and pages are told of the connection.
 * @typedef {{state: 'up' | 'down', host: 'connected' | 'connecting' | 'disconnected', reason: string | null, daemon: string | null}} Status
 */

const native = {
  /** @type {chrome.runtime.Port | null} */
  port: null,
  /** @type {Status['host']} 'connecting' until the host says something, then 'connected' */
  host: 'disconnected',
  daemonUp: false,
  /** @type {string | null} */
  daemon: null,
  /** @type {string | null} */
  reason: 'not connected yet',
  backoff: BACKOFF_MIN_MS,
  /** @type {ReturnType<typeof setTimeout> | null} */
  timer: null,
  /** @type {Pending<unknown>} */
  pending: new Pending(),
  chunks: /** @type {Chunks} */ (/** @type {unknown} */ (null)),
  /** @type {(() => void)[]} */
  upWaiters: [],
  /** @type {Set<string>} what the daemon announced at `hello` on this port (empty until then) */
  capabilities: new Set(),
  /** whether `capabilities` are the answer of this daemon's `hello` (false until it comes) */
  capabilitiesKnown: false,
};

/**
 * A reply too large for one native message comes as `{"id", "chunk": {"seq", "total", "data"}}`
 * pieces, joined by the wasm core's `Reassembler` (quiver_shared::proto::Reassembler, with its
 * limits). The core loads asynchronously: pieces that arrive before it is ready wait here, in
 * order, and go in once it is; none is lost.
 */
class Chunks {
  /** @type {import('../lib/core.js').Core['Reassembler']['prototype'] | null} */
  #r = null;
  /** @type {{id: number, frame: string}[] | null} pieces waiting for the core (null once it is ready) */
  #waiting = [];
  /** @type {(reply: Record<string, unknown> & {id: number}) => void} */
  #deliver;

  /** @param {(reply: Record<string, unknown> & {id: number}) => void} deliver gets each whole reply (or the error reply of a broken one) */
  constructor(deliver) {
    this.#deliver = deliver;
    loadCore().then((core) => {
      this.#r = new core.Reassembler();
      const waiting = this.#waiting ?? [];
      this.#waiting = null;
      for (const w of waiting) this.#join(w.id, w.frame);
    }, (e) => {
      const waiting = this.#waiting ?? [];
      this.#waiting = null;
      log.warn('the wasm core did not load: chunked replies cannot be joined', e);
      for (const id of new Set(waiting.map((w) => w.id))) this.#fail(id, `the wasm core did not load: ${e?.message ?? e}`);
    });
  }

  /** Takes one piece of reply `id`. */
  push(/** @type {number} */ id, /** @type {unknown} */ chunk) {
    const frame = JSON.stringify({ id, chunk });
    if (this.#waiting) this.#waiting.push({ id, frame });
    else this.#join(id, frame);
  }

  /** @param {number} id @param {string} frame */
  #join(id, frame) {
    if (!this.#r) { this.#fail(id, 'the wasm core did not load'); return; }
    let whole;
    try {
      whole = this.#r.push(frame);
    } catch (e) {
      this.#fail(id, /** @type {Error} */ (e)?.message ?? String(e));
      return;
    }
    if (whole !== undefined) this.#deliver(JSON.parse(whole));
  }

  /** @param {number} id @param {string} why */
  #fail(id, why) {
    log.warn(`chunked reply to ${id}: ${why}`);
    this.#deliver({ id, error: { code: 'internal', message: `chunked reply: ${why}` } });
  }

  /** Drops the pieces of reply `id` (nobody waits for it any more). */
  forget(/** @type {number} */ id) {
    if (this.#waiting) this.#waiting = this.#waiting.filter((w) => w.id !== id);
    else this.#r?.forget(String(id));
  }

  /** Drops every reply in progress (the port they came on is gone). */
  clear() {
    if (this.#waiting) { this.#waiting = []; return; }
    if (!this.#r) return;
    const Ctor = /** @type {any} */ (this.#r).constructor;
    this.#r.free();
    this.#r = new Ctor();
  }

  /** Replies still incomplete. */
  get pending() {
    return this.#waiting ? new Set(this.#waiting.map((w) => w.id)).size : this.#r?.pending ?? 0;
  }
}

/** @type {((status: Status) => void)[]} */
const statusListeners = [];
/** @type {((name: string, data: Record<string, unknown>, wasUp: boolean) => void)[]} */
const eventListeners = [];

/** Calls `fn` with the new status whenever it changes. */
export function onStatus(/** @type {(status: Status) => void} */ fn) {
  statusListeners.push(fn);
}

/** Calls `fn` with every daemon event (`wasUp`: whether the daemon was up before it). */
export function onDaemonEvent(/** @type {(name: string, data: Record<string, unknown>, wasUp: boolean) => void} */ fn) {
  eventListeners.push(fn);
}

/** @returns {Status} */
export function status() {
  const up = Boolean(native.port) && native.daemonUp;
  return {
    state: up ? 'up' : 'down',
    host: native.port ? native.host : 'disconnected',
    reason: up ? null : native.reason,
    daemon: native.daemon,
  };
}

/** Chunked replies still incomplete (pieces kept for requests still waiting). */
export const pendingChunks = () => native.chunks?.pending ?? 0;

/** True while the native port is open. */
export const hasPort = () => native.port !== null;

/**
 * Whether the daemon announced `name` in its `hello` on the current port (`send.reserve.begin`:
 * the one-round-trip reservation of protocol 1.3). False until `hello` is answered, after the
 * port drops and for an older daemon: callers then use the steps every daemon speaks.
 */
export const hasCapability = (/** @type {string} */ name) => native.capabilities.has(name);

/**
 * Whether the daemon may speak `name`: it announced it, or its `hello` has not been answered
 * yet (right after `daemon.up`). For additions a caller can try and fall back from.
 */
export const mayHaveCapability = (/** @type {string} */ name) => !native.capabilitiesKnown || native.capabilities.has(name);

/** Reads `capabilities` from a `hello` reply. */
function setCapabilities(/** @type {unknown} */ reply) {
  const caps = /** @type {{capabilities?: unknown} | null} */ (reply)?.capabilities;
  native.capabilities = new Set(Array.isArray(caps) ? caps.filter((c) => typeof c === 'string') : []);
  native.capabilitiesKnown = true;
}

let lastStatusJson = '';
function statusChanged() {
  const s = status();
  const json = JSON.stringify(s);
  if (json === lastStatusJson) return;
  lastStatusJson = json;
  log.info('status', json);
  for (const fn of statusListeners) fn(s);
  if (s.state === 'up') {
    const waiters = native.upWaiters.splice(0);
    for (const w of waiters) w();
  }
}

/** Resolves when the daemon is reachable (now or later). */
export function waitForUp() {
  if (status().state === 'up') return Promise.resolve();
  return new Promise((resolve) => native.upWaiters.push(() => resolve(undefined)));
}

export function connectNative() {
  if (native.port) return;
  // Joined replies go on as if they had come whole, on the port they came on (if still open).
  native.chunks ??= new Chunks((whole) => { if (native.port) onNativeMessage(native.port, whole); });
  if (native.timer !== null) clearTimeout(native.timer);
  native.timer = null;
  /** @type {chrome.runtime.Port} */
  let port;
  try {
    port = api.runtime.connectNative(HOST_NAME);
  } catch (e) {
    nativeGone(null, `connectNative failed: ${/** @type {Error} */ (e)?.message ?? e}`);
    return;
  }
  native.port = port;
  native.host = 'connecting';
  native.daemonUp = false;
  port.onMessage.addListener((msg) => onNativeMessage(port, msg));
  port.onDisconnect.addListener((p) => {
    const error = /** @type {{error?: {message?: string}}} */ (/** @type {unknown} */ (p))?.error;
    const why = api.runtime.lastError?.message ?? error?.message ?? 'the native host exited';
    nativeGone(port, why);
  });
  statusChanged();
  request('hello', { protocol: PROTOCOL, client: CLIENT }).then(
    (reply) => {
      if (native.port !== port) return;
      const r = /** @type {{protocol?: unknown, daemon?: unknown} | null} */ (reply);
      if (r?.protocol !== PROTOCOL) {
        native.reason = `protocol mismatch: daemon speaks ${r?.protocol}, extension speaks ${PROTOCOL}`;
        native.daemonUp = false;
      } else {
        native.daemonUp = true;
        native.daemon = typeof r.daemon === 'string' ? r.daemon : null;
        native.reason = null;
        setCapabilities(r);
      }
      statusChanged();
    },
    (e) => {
      if (native.port !== port) return;
      native.daemonUp = false;
      native.reason = `${e.code}: ${e.message}`;
      statusChanged();
    },
  );
}

/**
 * @param {chrome.runtime.Port | null} port
 * @param {string} why
 */
function nativeGone(port, why) {
  if (port && native.port !== port) return; // an old port
  native.port = null;
  native.host = 'disconnected';
  native.daemonUp = false;
  native.reason = why;
  native.capabilities = new Set();
  native.capabilitiesKnown = false;
  native.chunks.clear();
  native.pending.rejectAll(new RpcError('host_disconnected', `native host disconnected: ${why}`));
  log.warn('native port closed:', why, `(retry in ${native.backoff} ms)`);
  statusChanged();
  scheduleReconnect();
}

function scheduleReconnect() {
  if (native.timer !== null) clearTimeout(native.timer);
  const delay = native.backoff;
  native.backoff = Math.min(native.backoff * 2, BACKOFF_MAX_MS);
  native.timer = setTimeout(() => {
    native.timer = null;
    connectNative();
  }, delay);
  // Safety net: if this background is suspended before the timer fires, the alarm wakes it
  // (top-level code then connects) and retries every 30 s while the host stays away.
  quietly(() => api.alarms.create(RECONNECT_ALARM, { delayInMinutes: 0.5, periodInMinutes: 0.5 }));
}

function hostAlive(/** @type {chrome.runtime.Port} */ port) {
  if (native.port !== port || native.host === 'connected') return;
  native.host = 'connected';
  native.backoff = BACKOFF_MIN_MS;
  quietly(() => api.alarms.clear(RECONNECT_ALARM));
}

/**
 * @param {chrome.runtime.Port} port
 * @param {unknown} message
 */
function onNativeMessage(port, message) {
  if (native.port !== port) return;
  hostAlive(port);
  if (!message || typeof message !== 'object') {
    log.warn('ignoring a native message that is not an object', message);
    return;
  }
  const msg = /** @type {{event?: unknown, data?: Record<string, unknown>, id?: number | null, chunk?: {}, result?: unknown, error?: {code?: unknown, message?: unknown, data?: unknown}}} */ (message);
  if (typeof msg.event === 'string') {
    onNativeEvent(msg.event, msg.data ?? {});
    return;
  }
  if (msg.id === null || msg.id === undefined) {
    log.warn('native error without id', msg.error ?? msg);
    return;
  }
  if (msg.chunk !== undefined) {
    if (!native.pending.has(msg.id)) return; // a reply nobody waits for (timed out): drop it
    native.chunks.push(msg.id, msg.chunk);
    return;
  }
  const settled = msg.error
    ? native.pending.reject(msg.id, new RpcError(String(msg.error.code ?? 'internal'), String(msg.error.message ?? ''), msg.error.data))
    : native.pending.resolve(msg.id, msg.result);
  if (!settled) log.warn('reply for an unknown or timed-out request', msg.id);
}

/**
 * @param {string} name
 * @param {Record<string, unknown>} data
 */
function onNativeEvent(name, data) {
  const wasUp = native.daemonUp;
  if (name === 'daemon.up') {
    native.daemonUp = true;
    native.reason = null;
    if (typeof data.version === 'string') native.daemon = data.version;
    // Another daemon (restarted, perhaps upgraded or downgraded): speak the common subset until
    // its own `hello` says what it can do.
    native.capabilities = new Set();
    native.capabilitiesKnown = false;
    refreshCapabilities();
  } else if (name === 'daemon.down') {
    native.daemonUp = false;
    native.reason = `daemon down: ${data.reason ?? 'unknown reason'}`;
  }
  for (const fn of eventListeners) fn(name, data, wasUp);
  if (name === 'daemon.up' || name === 'daemon.down') statusChanged();
}

/** Asks `hello` again (the host's daemon changed) for its capabilities. */
function refreshCapabilities() {
  const port = native.port;
  request('hello', { protocol: PROTOCOL, client: CLIENT }).then(
    (r) => {
      if (native.port === port && r?.protocol === PROTOCOL) setCapabilities(r);
    },
    (e) => log.info('hello after daemon.up', e.code, e.message),
  );
}

/**
 * Sends one request to the daemon; the reply is matched by id.
 * @param {string} method
 * @param {unknown} params
 * @param {number} [timeoutMs]
 * @returns {Promise<any>} the daemon's `result` (its shape is the method's, docs/protocol.md)
 */
export function request(method, params, timeoutMs = REQUEST_TIMEOUT_MS) {
  const port = native.port;
  if (!port) {
    return Promise.reject(
      new RpcError('host_unavailable', `the native host is not connected (${native.reason})`),
    );
  }
  const { id, promise } = native.pending.start(timeoutMs, (timedOut) => {
    native.chunks.forget(timedOut);
    return new RpcError('timeout', `${method}: no reply within ${timeoutMs} ms`);
  });
  try {
    port.postMessage({ id, method, params });
  } catch (e) {
    native.pending.reject(id, new RpcError('host_disconnected', `${method}: ${/** @type {Error} */ (e)?.message ?? e}`));
  }
  return promise;
}

/**
 * Like request(), but waits out daemon/host outages and retries (only for idempotent steps).
 * Gives up with `undefined` when `wanted(maybeSent)` turns false; `maybeSent` says whether an
 * earlier attempt may have reached the daemon (its reply was lost). `params` may be a function:
 * it is called for each attempt.
 * @param {string} method
 * @param {unknown} params
 * @param {(maybeSent: boolean) => boolean} [wanted]
 * @returns {Promise<any>}
 */
export async function requestRetrying(method, params, wanted = () => true) {
  let pause = 250;
  let maybeSent = false;
  for (;;) {
    if (!wanted(maybeSent)) return undefined;
    try {
      return await request(method, typeof params === 'function' ? params() : params);
    } catch (e) {
      const code = /** @type {RpcError} */ (e).code;
      if (!RECOVERABLE.has(code)) throw e;
      if (code === 'host_disconnected' || code === 'timeout') maybeSent = true;
      log.warn(`${method} will be retried:`, code, /** @type {Error} */ (e).message);
      // The host may still look up while it cannot reach the daemon: never spin.
      await Promise.all([waitForUp(), sleep(pause)]);
      pause = Math.min(pause * 2, 5_000);
    }
  }
}
