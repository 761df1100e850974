// @ts-check
/*
 * Build settings, read by content.js (listed before it in the same isolated world; pages cannot
 * see or change them). This is the production build's: no built-in site rules, and the panel's
 * shadow root is closed. `cargo xtask build-extension --dev` replaces this file with
 * extension/dev/build-config.js (demo site rules, an open shadow root for the e2e suite).
 */
globalThis.QUIVER_BUILD = Object.freeze({ dev: false, openShadowRoot: false, rules: Object.freeze([]) });
