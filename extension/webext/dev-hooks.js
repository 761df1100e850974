// @ts-check
/**
 * Hooks the development build gives the test tools: none in production.
 * `cargo xtask build-extension --dev` replaces this file with extension/dev/dev-hooks.js (the
 * benchmark hook of tests/e2e/bench/palette.mjs).
 */

/**
 * What the panel lends the hooks: its port call, its conversation target, how many matches it
 * shows, and its state (read by the benchmark: the index and when it became usable).
 * @typedef {{call: (type: string, fields?: object) => Promise<unknown>, target: () => object, maxShown: number, state: object}} PanelHooks
 */

/** @param {PanelHooks} _panel */
export function installDevHooks(_panel) {}
