// The built wasm core in Node (V8, Chromium's engine), by hand, no browser:
//   node tests/e2e/bench/core.mjs [PKG_DIR ...]   (default target/extension/pkg)
// For each core, as the panel builds its index (the bench hook's `searchTimes`): the library's
// text (`JSON.stringify`, the floor: the same in every core), `new SearchIndex`, the channel fit
// for Udesk, then every prefix of each query as one keystroke (`search`, 50 hits, as the palette
// asks). With several cores, runs are interleaved (in turns) so load from elsewhere hits them
// alike.
// QUIVER_BENCH_LIBRARY (default 100,000) templates, QUIVER_BENCH_RUNS (default 6) runs per core,
// 3 rounds of the queries per run, after a warm-up. Numbers only, no assertions: the results go to
// docs/benchmarks.md.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { QUERIES, generated } from './library.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const dirs = process.argv.slice(2).length ? process.argv.slice(2) : [path.join(ROOT, 'target/extension/pkg')];
const LIBRARY = Number(process.env.QUIVER_BENCH_LIBRARY || 100_000);
const RUNS = Number(process.env.QUIVER_BENCH_RUNS || 6);

const cores = [];
for (const dir of dirs) {
  // A query string per core: each directory's `quiver_core.js` is its own module instance.
  const core = await import(`${pathToFileURL(path.join(path.resolve(dir), 'quiver_core.js')).href}?${cores.length}`);
  core.initSync({ module: readFileSync(path.join(dir, 'quiver_core_bg.wasm')) });
  cores.push({ dir, core, runs: [] });
}
const list = generated(LIBRARY);

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const p95 = (xs) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(0.95 * xs.length))];

function run(core) {
  const t0 = performance.now();
  const text = JSON.stringify(list);
  const stringify = performance.now() - t0;
  const t1 = performance.now();
  const index = new core.SearchIndex(text);
  const build = performance.now() - t1;
  const t2 = performance.now();
  index.channel_fit(JSON.stringify({ platform: 'udesk' }));
  const fit = performance.now() - t2;
  const keys = [];
  for (let round = 0; round < 3; round++) {
    for (const q of QUERIES) {
      for (let k = 1; k <= q.length; k++) {
        const a = performance.now();
        JSON.parse(index.search(q.slice(0, k), 50, Date.now(), new Float32Array(0)));
        keys.push(performance.now() - a);
      }
    }
  }
  index.free();
  return { stringify, build, fit, keyMedian: median(keys), keyP95: p95(keys), keys: keys.length };
}

// Warm-up (JIT, the cores' memory), not counted.
for (const c of cores) new c.core.SearchIndex(JSON.stringify(list.slice(0, 1000))).free();

for (let r = 0; r < RUNS; r++) {
  // The order turns every run: whichever core runs second is slowed by the first one's garbage.
  for (const c of r % 2 ? [...cores].reverse() : cores) {
    const m = run(c.core);
    c.runs.push(m);
    console.log(`${c.dir} run ${r + 1}: stringify ${m.stringify.toFixed(0)} ms, build ${m.build.toFixed(0)} ms, ` +
      `fit ${m.fit.toFixed(1)} ms, keystroke median ${m.keyMedian.toFixed(2)} / p95 ${m.keyP95.toFixed(2)} ms (n=${m.keys})`);
  }
}
const range = (xs, digits) => `${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)} (median ${median(xs).toFixed(digits)})`;
console.log(`\n${LIBRARY} templates, ${RUNS} runs per core:`);
for (const c of cores) {
  const f = (k) => c.runs.map((m) => m[k]);
  console.log(`${c.dir}: stringify ${range(f('stringify'), 0)} ms; build ${range(f('build'), 0)} ms; fit ${range(f('fit'), 1)} ms; ` +
    `keystroke median ${range(f('keyMedian'), 2)} ms, p95 ${range(f('keyP95'), 2)} ms`);
}
