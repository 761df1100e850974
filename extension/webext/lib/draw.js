// @ts-check
/**
 * The one part drawer: draws the wasm core's `Display` (docs/core-api.md, `preview`), what the
 * customer will see of a part, for the palette (panel.js) and the editor's preview (options.js).
 * It knows no platform rule and fills no placeholder: the core chose the rendition, filled every
 * text as on the wire (dates in the agent's zone), left a missing variable as `[name]` and its
 * link out. Rich HTML is the core's sanitizer output (exactly the wire's): parsed inertly
 * (DOMParser runs no script) and inserted as it is, so whatever the wire carries (a tracking
 * `<img>` too) is shown.
 */
import { t } from './i18n.js';

/**
 * @typedef {{text: string, color?: string | null, bold?: boolean, break?: boolean, size?: number | null}} Segment
 * @typedef {{title: string, digest: string, cover?: string | null, url: string}} Article
 * @typedef {{kind: 'text', text: string}
 *   | {kind: 'rich', html: string, text: string}
 *   | {kind: 'image', url?: string | null, media_id?: string | null}
 *   | {kind: 'news', articles: Article[]}
 *   | {kind: 'product', name: string, url?: string | null, image: string | null, segments: Segment[]}
 *   | {kind: 'miniprogram', title: string, pagepath: string, name?: string | null, avatar?: string | null, cover?: string | null, media_id?: string | null}} Display
 * @typedef {{code: string, message: string}} Refusal
 * @typedef {{platform: string, wire: string, post_as: string, kind: string, fallback_used: boolean}} WirePayload
 * @typedef {{index: number, wire: WirePayload | null, refusal: Refusal | null, rendition: number | null,
 *   kind: string | null, missing: string[], display: Display | null}} PartPreview
 */

/**
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {string} [cls]
 * @param {string} [text]
 * @returns {HTMLElementTagNameMap[K]}
 */
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * An image from the web (`data-missing` when there is no link to draw, e.g. a variable without a
 * value, or only a WeChat media id).
 * @param {string | null | undefined} src
 * @param {string} cls
 * @param {string} [alt]
 */
function img(src, cls, alt = '') {
  const i = el('img', cls);
  i.alt = alt;
  i.referrerPolicy = 'no-referrer';
  i.loading = 'lazy';
  if (src && /^(https?|blob):/i.test(src)) i.src = src;
  else i.dataset.missing = 'true';
  return i;
}

/**
 * The sanitizer's HTML as nodes of this document (parsed inertly; nothing removed).
 * @param {string} html
 * @returns {Node[]}
 */
function richNodes(html) {
  const doc = new DOMParser().parseFromString(`<body>${html}</body>`, 'text/html');
  for (const i of doc.body.querySelectorAll('img')) i.referrerPolicy = 'no-referrer';
  for (const a of doc.body.querySelectorAll('a')) {
    a.classList.add('rich-link');
    const href = a.getAttribute('href') ?? a.getAttribute('data-miniprogram-path');
    if (href) a.title = href;
    // Shown, not followed: the preview is not the place to open the customer's links.
    a.addEventListener('click', (e) => e.preventDefault());
  }
  return [...doc.body.childNodes].map((n) => document.adoptNode(n));
}

/**
 * Draws what the customer will see: a `.bubble` with `data-kind` (the rendition's type).
 * `opts.media` gives a `blob:` URL for a WeChat media id whose bytes the page holds (the
 * conversations page: images the hub keeps, `sha256:HEX`); without one, a media id is shown
 * as text.
 * @param {Display} d
 * @param {{media?: (id: string) => string | null | undefined}} [opts]
 * @returns {HTMLElement}
 */
export function drawDisplay(d, opts = {}) {
  const media = (/** @type {string | null | undefined} */ id) => (id && opts.media ? opts.media(id) : null);
  const box = el('div', `bubble bubble-${d.kind}`);
  box.dataset.kind = d.kind;
  switch (d.kind) {
    case 'text':
      box.append(el('p', 'bubble-text', d.text));
      break;
    case 'rich': {
      const body = el('div', 'bubble-rich');
      body.append(...richNodes(d.html));
      box.append(body);
      break;
    }
    case 'image':
      if (d.url || !d.media_id || media(d.media_id)) box.append(img(d.url ?? media(d.media_id), 'bubble-image', t('palette_image', undefined, 'Image')));
      else box.append(el('p', 'bubble-media', `media_id: ${d.media_id}`));
      break;
    case 'news':
      for (const a of d.articles ?? []) {
        const card = el('div', 'card news-card');
        card.append(el('div', 'card-title', a.title), img(a.cover, 'card-cover'), el('div', 'card-digest', a.digest));
        if (a.url) card.append(el('div', 'card-url', a.url));
        box.append(card);
      }
      break;
    case 'product': {
      const card = el('div', 'card product-card');
      const text = el('div', 'product-text');
      text.append(el('div', 'card-title', d.name));
      const segs = el('div', 'product-segments');
      for (const s of d.segments ?? []) {
        const span = el('span', 'segment', s.text);
        if (s.color && /^#[0-9a-f]{6}$/i.test(s.color)) span.style.color = s.color;
        if (s.bold) span.style.fontWeight = '700';
        if (typeof s.size === 'number' && s.size > 0 && s.size <= 40) span.style.fontSize = `${s.size}px`;
        segs.append(span);
        if (s.break) segs.append(el('br'));
      }
      text.append(segs);
      if (d.url) text.append(el('div', 'card-url', d.url));
      card.append(img(d.image, 'product-image', d.name), text);
      box.append(card);
      break;
    }
    case 'miniprogram': {
      const card = el('div', 'card mp-card');
      const head = el('div', 'mp-head');
      head.append(img(d.avatar, 'mp-avatar'), el('span', 'mp-name', d.name ?? ''));
      card.append(head, el('div', 'card-title', d.title), img(d.cover ?? media(d.media_id), 'mp-thumb'));
      card.append(el('div', 'mp-foot', t('palette_miniprogram', undefined, 'Mini Program')));
      box.append(card);
      break;
    }
    default:
      box.append(el('p', 'bubble-text', ''));
  }
  return box;
}

/**
 * One line of what the customer will see (the palette's list): the display's main text.
 * @param {Display | null | undefined} d
 * @returns {string}
 */
export function summary(d) {
  if (!d) return '';
  switch (d.kind) {
    case 'text': case 'rich': return d.text;
    case 'image': return t('palette_image', undefined, 'Image');
    case 'news': return d.articles.map((a) => a.title).join(' · ');
    case 'product': return [d.name, ...d.segments.map((s) => s.text)].join(' ');
    case 'miniprogram': return d.title;
    default: return '';
  }
}

/**
 * The context the core renders with: `values` (dotted names), plus the agent's clock and time
 * zone, so `{{date}}` is the date the wire carries, in the agent's zone.
 * @param {Record<string, string>} values
 * @param {Date} [at]
 * @returns {Record<string, string>}
 */
export function renderContext(values, at = new Date()) {
  return { ...values, now: String(at.getTime()), tz: String(-at.getTimezoneOffset()) };
}
