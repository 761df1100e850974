// @ts-check
/**
 * Hooks of the DEVELOPMENT build (`cargo xtask build-extension --dev` puts this file in place of
 * extension/webext/dev-hooks.js, which installs nothing): the benchmark hook of
 * tests/e2e/bench/palette.mjs, `globalThis.__quiverBench` in the panel. It indexes the templates
 * it is given in a separate index (the palette's own is untouched) and times searches. Reachable
 * only by the extension's own pages and the test driver, never by the workspace page
 * (cross-origin frame).
 */
import { loadCore } from './lib/core.js';

/** @param {import('../webext/dev-hooks.js').PanelHooks} panel */
export function installDevHooks({ call, target, maxShown, state }) {
  /** @type {import('./lib/core.js').Core | null} */
  let core = null;
  loadCore().then((c) => {
    core = c;
  }, () => {});
  Object.assign(globalThis, {
    __quiverBench: {
      /** The palette's state (panel.js `state`): its index, and when it became usable. */
      state,
      /**
       * `list`: the templates to index (the bench's generator, tests/e2e/bench/palette.mjs).
       * @param {unknown[]} list
       * @param {string[]} queries
       */
      searchTimes(list, queries, rounds = 3) {
        if (!core) throw new Error('the wasm core is not loaded yet');
        // As the panel's buildIndex() and computeBoost() do: the library's text, the index, the fit.
        const t0 = performance.now();
        const idx = new core.SearchIndex(JSON.stringify(list));
        const buildMs = performance.now() - t0;
        const t1 = performance.now();
        idx.channel_fit(JSON.stringify(target()));
        const fitMs = performance.now() - t1;
        /** @type {number[]} */
        const times = [];
        for (let r = 0; r < rounds; r++) {
          for (const q of queries) {
            // Per keystroke: every prefix of the query.
            for (let k = 1; k <= q.length; k++) {
              const a = performance.now();
              JSON.parse(idx.search(q.slice(0, k), maxShown, Date.now(), new Float32Array(0)));
              times.push(performance.now() - a);
            }
          }
        }
        idx.free();
        return { buildMs, fitMs, times };
      },
      /**
       * The palette's own work per keystroke: the search box's `input` handler (search, rows,
       * badges, preview lines) and the layout it causes, for every prefix of each query. With
       * `team`, every row is drawn as in a library with team templates (a library badge each,
       * a sync badge where the state is not synced), whatever the library shown.
       * @param {string[]} queries
       */
      renderTimes(queries, team = false, rounds = 3) {
        const s = /** @type {{team?: boolean}} */ (state);
        const before = s.team;
        if (team) s.team = true;
        const box = /** @type {HTMLInputElement} */ (document.querySelector('[data-testid="quiver-search"]'));
        const list = /** @type {HTMLElement} */ (document.querySelector('[data-testid="quiver-templates"]'));
        /** @type {number[]} */
        const times = [];
        try {
          for (let r = 0; r < rounds; r++) {
            for (const q of queries) {
              for (let k = 1; k <= q.length; k++) {
                const a = performance.now();
                box.value = q.slice(0, k);
                box.dispatchEvent(new Event('input', { bubbles: true }));
                void list.offsetHeight; // the layout of the new rows
                times.push(performance.now() - a);
              }
            }
          }
        } finally {
          s.team = before;
          box.value = '';
          box.dispatchEvent(new Event('input', { bubbles: true }));
        }
        return times;
      },
      hello: () => call('hello'),
    },
  });
}
