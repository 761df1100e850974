// Module resolution hooks for the extension's unit tests (registered by them with
// `module.register`): loads a fresh copy of the extension's module graph per `?instance=N`, and
// finds the wasm core (`webext/pkg/`) where the build put it.
//
// - A module imported with `?instance=N` passes the same query to the modules it imports
//   relatively, so each instance has its own module state (a fresh background per test, as a
//   browser starts one).
// - `webext/pkg/*` does not exist in the source tree: it resolves to the built core in
//   `data.pkg` (target/extension/pkg, `cargo xtask build-extension`).
import { pathToFileURL } from 'node:url';

let pkg = null;
let webext = null;

export function initialize(data) {
  pkg = pathToFileURL(`${data.pkg}/`).href;
  webext = pathToFileURL(`${data.webext}/`).href;
}

export async function resolve(specifier, context, next) {
  const parent = context.parentURL ? new URL(context.parentURL) : null;
  const relative = specifier.startsWith('./') || specifier.startsWith('../');
  if (parent && relative) {
    const target = new URL(specifier, parent);
    if (target.href.startsWith(`${webext}pkg/`)) {
      target.href = pkg + target.href.slice(`${webext}pkg/`.length);
    }
    if (parent.searchParams.has('instance') && !target.search) target.search = parent.search;
    return next(target.href, context);
  }
  return next(specifier, context);
}
