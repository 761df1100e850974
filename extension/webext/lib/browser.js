// @ts-check
/**
 * The WebExtension API of this browser: `browser` in Firefox, `chrome` in Chromium. Both give
 * promises in MV3; the Chromium typings (`@types/chrome`) describe the surface used here.
 */
export const api = /** @type {typeof chrome} */ (/** @type {any} */ (globalThis).browser ?? globalThis.chrome);
