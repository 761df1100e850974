// @ts-check
/**
 * The options page's element lookups, typed: a missing element, or one of another kind, is a bug
 * of the page and throws at once with the selector.
 */

/** @typedef {HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement} Control */

/**
 * @template {Element} T
 * @param {string} sel
 * @param {new (...args: any[]) => T} type
 * @param {ParentNode} [root]
 * @returns {T}
 */
export function q(sel, type, root = document) {
  const el = root.querySelector(sel);
  if (!(el instanceof type)) throw new Error(`options page: ${sel} is ${el ? el.constructor.name : 'missing'}, not ${type.name}`);
  return el;
}

export const $ = (/** @type {string} */ sel) => q(sel, HTMLElement);
export const $input = (/** @type {string} */ sel) => q(sel, HTMLInputElement);
export const $select = (/** @type {string} */ sel) => q(sel, HTMLSelectElement);
export const $textarea = (/** @type {string} */ sel) => q(sel, HTMLTextAreaElement);
export const $button = (/** @type {string} */ sel) => q(sel, HTMLButtonElement);
export const $form = (/** @type {string} */ sel) => q(sel, HTMLFormElement);

/**
 * The control named `name` of `form`.
 * @param {HTMLFormElement} form
 * @param {string} name
 * @returns {Control}
 */
export function control(form, name) {
  const c = form.elements.namedItem(name);
  if (c instanceof HTMLInputElement || c instanceof HTMLSelectElement || c instanceof HTMLTextAreaElement) return c;
  throw new Error(`options page: the form has no control named ${name}`);
}

/** The control an event came from (an input, select or textarea). */
export function source(/** @type {Event} */ e) {
  const c = e.target;
  if (c instanceof HTMLInputElement || c instanceof HTMLSelectElement || c instanceof HTMLTextAreaElement) return c;
  throw new Error(`options page: ${e.type} from ${c instanceof Element ? c.tagName : 'no element'}`);
}

/** Whether the checkbox an event came from is checked. */
export const checked = (/** @type {Event} */ e) => e.target instanceof HTMLInputElement && e.target.checked;
