// Runs every render vector of shared/test_data through the BUILT wasm core (target/extension/pkg),
// so the adapters are exercised once more as the browser runs them, not only natively.
// The extension must be built first (`cargo xtask build-extension`; `cargo xtask test` does it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const extDir = process.env.QUIVER_EXTENSION_DIR ?? path.join(root, 'target', 'extension');
const dataDir = path.join(root, 'shared', 'test_data');

let corePromise;
function loadCore() {
  corePromise ??= loadCoreOnce();
  return corePromise;
}

async function loadCoreOnce() {
  const js = path.join(extDir, 'pkg', 'quiver_core.js');
  const wasm = path.join(extDir, 'pkg', 'quiver_core_bg.wasm');
  assert.ok(fs.existsSync(js) && fs.existsSync(wasm), `the wasm core is not built at ${extDir}/pkg`);
  // The no-modules output declares a global `wasm_bindgen`; expose it from this context.
  vm.runInThisContext(fs.readFileSync(js, 'utf8') + '\nglobalThis.__quiverCore = wasm_bindgen;', { filename: js });
  const core = globalThis.__quiverCore;
  await core({ module_or_path: fs.readFileSync(wasm) });
  return core;
}

function renderCases(dir, out = []) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) renderCases(p, out);
    else if (e.name.endsWith('.json')) {
      const c = JSON.parse(fs.readFileSync(p, 'utf8'));
      if (c.template && c.expect && (c.case === undefined || c.case === 'render')) out.push([p, c]);
    }
  }
  return out;
}

test('every render vector gives the same bytes or refusal through the wasm core', async () => {
  const core = await loadCore();
  const cases = renderCases(dataDir);
  assert.ok(cases.length >= 40, `expected the render vectors, found ${cases.length}`);
  const failures = [];
  for (const [file, c] of cases) {
    const target = c.target ?? { platform: c.platform };
    let got;
    try {
      got = { ok: JSON.parse(core.render(JSON.stringify(target), JSON.stringify(c.template), c.part ?? 0, JSON.stringify(c.context ?? {}))) };
    } catch (e) {
      got = { err: e };
    }
    const rel = path.relative(dataDir, file);
    const want = c.expect;
    if (want.wire !== undefined) {
      if (!got.ok) failures.push(`${rel}: want wire, got refusal ${got.err.code}: ${got.err.message}`);
      else if (got.ok.wire !== want.wire) failures.push(`${rel}: wire\n  got:  ${got.ok.wire}\n  want: ${want.wire}`);
      else if (want.kind && got.ok.kind !== want.kind) failures.push(`${rel}: kind ${got.ok.kind}, want ${want.kind}`);
      else if (want.post_as && got.ok.post_as !== want.post_as) failures.push(`${rel}: post_as ${got.ok.post_as}, want ${want.post_as}`);
    } else if (want.refusal !== undefined) {
      if (got.ok) failures.push(`${rel}: want refusal ${want.refusal}, got wire ${got.ok.wire}`);
      else if (got.err.code !== want.refusal) failures.push(`${rel}: refusal ${got.err.code}, want ${want.refusal} (${got.err.message})`);
      else if (want.message_contains && !got.err.message.includes(want.message_contains)) failures.push(`${rel}: message ${got.err.message} lacks ${want.message_contains}`);
    }
  }
  assert.equal(failures.length, 0, `${failures.length} of ${cases.length} vectors differ in wasm:\n${failures.join('\n')}`);
});

test('the wasm core refuses a malformed target with a code', async () => {
  const core = await loadCore();
  assert.throws(() => core.render('{"platform":"udesk","channel":"fax"}', '{"id":"t","title":"t","parts":[{"type":"text","text":"x"}]}', 0, '{}'),
    (e) => e.code === 'invalid_target' && /fax/.test(e.message));
});
