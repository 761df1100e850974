// @ts-check
/**
 * The wasm core (extension/src/lib.rs, built by `wasm-bindgen --target web` into pkg/): loaded
 * and initialised once per context, on the first `loadCore()`. Not at import time: a module
 * service worker (Chromium) forbids top-level await, and a page that never needs the core should
 * not pay for it. Never imported by the content script (classic script; and Chromium would
 * compile its wasm under the page's CSP).
 */
import init, * as wasm from '../pkg/quiver_core.js';

/** @typedef {typeof wasm} Core */

/** @type {Promise<Core> | null} */
let loading = null;

/**
 * The initialised core. Rejects (every later call too) when the wasm does not load.
 * @returns {Promise<Core>}
 */
export function loadCore() {
  loading ??= init({ module_or_path: new URL('../pkg/quiver_core_bg.wasm', import.meta.url) }).then(() => wasm);
  return loading;
}
