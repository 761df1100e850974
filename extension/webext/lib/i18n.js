// @ts-check
/** Translation: `_locales/<lang>/messages.json` through the browser's i18n API. */
import { api } from './browser.js';

/**
 * The message `key` with `$1`.. filled from `subs`; `fallback` when the browser has none (the
 * key itself by default).
 * @param {string} key
 * @param {unknown} [subs] one substitution or a list
 * @param {string} [fallback]
 * @returns {string}
 */
export function t(key, subs, fallback = key) {
  const list = subs === undefined ? [] : /** @type {unknown[]} */ ([]).concat(subs).map(String);
  let m = '';
  try {
    m = api.i18n?.getMessage?.(key, list.length ? list : undefined) ?? '';
  } catch {
    m = '';
  }
  if (m) return m;
  return list.reduce((acc, v, i) => acc.replaceAll(`$${i + 1}`, v), fallback);
}

/**
 * Fills `data-i18n` (text), `data-i18n-placeholder`, `-aria-label` and `-title` under `root`
 * (what is in the markup stays where a message is missing), and sets the document's language to
 * the one the messages are in (message `langKey`, a BCP 47 tag).
 * @param {ParentNode} [root]
 * @param {string} [langKey]
 */
export function translate(root = document, langKey = 'page_lang') {
  for (const el of root.querySelectorAll('[data-i18n]')) {
    if (el instanceof HTMLElement) el.textContent = t(el.dataset.i18n ?? '', undefined, el.textContent || el.dataset.i18n);
  }
  for (const [attr, prop] of [['placeholder', 'i18nPlaceholder'], ['aria-label', 'i18nAriaLabel'], ['title', 'i18nTitle']]) {
    for (const el of root.querySelectorAll(`[data-i18n-${attr}]`)) {
      if (!(el instanceof HTMLElement)) continue;
      const key = el.dataset[prop] ?? '';
      el.setAttribute(attr, t(key, undefined, el.getAttribute(attr) || key));
    }
  }
  let lang = '';
  try {
    lang = api.i18n?.getMessage?.(langKey) || api.i18n?.getUILanguage?.() || '';
  } catch {
    lang = '';
  }
  if (lang) document.documentElement.lang = lang;
}
