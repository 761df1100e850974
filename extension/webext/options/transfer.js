// @ts-check
/** The Import tab: a library file checked by the core, then imported all or nothing; export. */
import { loadCore as loadWasmCore } from '../lib/core.js';
import { t } from '../lib/i18n.js';
import { h } from '../lib/page.js';
import { LOCAL } from '../lib/team.js';
import { $, $button, $textarea } from './dom.js';
import { listAll, loadLibrary } from './library.js';
import { call, failure, failureText, page } from './state.js';

/** @typedef {import('./state.js').Template} Template */
/** @typedef {{line: number, column: number, field: string, message: string}} CheckError */

const IMPORT_BATCH_BYTES = 3 * 1024 * 1024;

/**
 * @param {string} kind ok or error
 * @param {(Node | string)[]} nodes
 * @param {{line?: number, column?: number, field?: string, code?: string}} [extra]
 */
function showImport(kind, nodes, extra = {}) {
  const box = $('#import-result');
  box.hidden = false;
  box.className = `message ${kind}`;
  box.dataset.state = kind === 'ok' ? 'ok' : 'error';
  box.setAttribute('role', kind === 'ok' ? 'status' : 'alert');
  box.replaceChildren(...nodes);
  for (const k of /** @type {const} */ (['line', 'column', 'field', 'code'])) {
    if (extra[k] !== undefined) box.dataset[k] = String(extra[k]);
    else delete box.dataset[k];
  }
}

/**
 * Shows why the file is refused: the first error (`where` its 1-based line and column, unknown
 * when 0), then any others the core found.
 * @param {{line: number, column: number} | null} where
 * @param {string} field
 * @param {string} message
 * @param {string} [code]
 * @param {CheckError[]} [more]
 */
function importError(where, field, message, code = 'invalid_params', more = []) {
  const at = where && where.line > 0 ? where : null;
  /** @param {{line: number, column: number} | null} w @param {string} f @param {string} m */
  const describe = (w, f, m) => [w ? `${t('import_at', [String(w.line), String(w.column)])}, ` : '', f ? `${t('import_field')} ${f}: ` : '', m];
  /** @type {(Node | string)[]} */
  const nodes = [
    h('strong', {}, t('import_refused')),
    h('p', { dataset: { testid: 'quiver-import-error', line: String(at?.line ?? ''), column: String(at?.column ?? ''), field: field ?? '' } },
      ...describe(at, field, message)),
  ];
  if (more.length) {
    nodes.push(h('ul', { class: 'import-more' }, more.map((e) => h('li', { dataset: { testid: 'quiver-import-error-more', line: String(e.line || ''), column: String(e.column || ''), field: e.field } },
      ...describe(e.line > 0 ? e : null, e.field, e.message)))));
  }
  showImport('error', nodes, { line: at?.line, column: at?.column, field: field ?? '', code });
}

/** Validates the whole file (the core's `check_library`: the importer's checks), then imports it all or nothing. */
export async function runImport() {
  const text = $textarea('#import-text').value;
  const button = $button('#import-run');
  button.disabled = true;
  try {
    const wasm = page.core ?? await loadWasmCore();
    /** @type {CheckError[]} */
    const errors = JSON.parse(wasm.check_library(text));
    if (errors.length) {
      const [first, ...more] = errors;
      return importError(first, first.field, first.message, 'invalid_params', more);
    }
    const lib = /** @type {{templates: Template[]}} */ (JSON.parse(text));
    // Batches below the daemon's 4 MiB frame, in one session: nothing is written before the last.
    /** @type {Template[][]} */
    const batches = [[]];
    let size = 0;
    for (const tpl of lib.templates) {
      const n = JSON.stringify(tpl).length * 3;
      if (size + n > IMPORT_BATCH_BYTES && batches[batches.length - 1].length) { batches.push([]); size = 0; }
      batches[batches.length - 1].push(tpl);
      size += n;
    }
    const session = batches.length > 1 ? crypto.randomUUID() : undefined;
    let offset = 0;
    let result;
    try {
      for (const [b, templates] of batches.entries()) {
        /** @type {{templates: Template[], session?: string, last?: boolean}} */
        const params = { templates };
        if (session) { params.session = session; params.last = b === batches.length - 1; }
        result = await call('templates.import', params);
        offset += templates.length;
      }
    } catch (e) {
      const f = failure(e);
      let field = f.data?.field ?? '';
      if (session) field = field.replace(/^templates\[(\d+)\]/, (/** @type {string} */ _, /** @type {string} */ n) => `templates[${Number(n) + offset}]`);
      return importError(null, field, f.message, f.code);
    }
    showImport('ok', [h('p', { dataset: { testid: 'quiver-import-ok' } }, t('import_done', [String(result?.templates ?? lib.templates.length), String(result?.created ?? 0), String(result?.updated ?? 0), String(result?.unchanged ?? 0)]))], { code: 'ok' });
    loadLibrary();
  } catch (e) {
    const f = failure(e);
    importError(null, '', `${f.code}: ${f.message}`, f.code);
  } finally {
    button.disabled = false;
  }
}

/**
 * Downloads the local library as a library file (without the store's revision numbers). Team
 * libraries live on their hub (and may hold the same ids): they are not part of it.
 */
export async function runExport() {
  const out = $('#export-result');
  try {
    const templates = (await listAll()).filter((e) => e.meta.library === LOCAL).map(({ tpl }) => {
      const c = { ...tpl };
      delete c.revision;
      return c;
    });
    const text = `${JSON.stringify({ quiver: 1, templates }, null, 2)}\n`;
    const url = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
    const a = h('a', { href: url, download: `quiver-library-${new Date().toISOString().slice(0, 10)}.json`, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    out.dataset.count = String(templates.length);
    out.textContent = t('export_done', String(templates.length));
  } catch (e) {
    out.textContent = failureText(e);
  }
}
