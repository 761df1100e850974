// @ts-check
/*
 * Build settings of the DEVELOPMENT build (`cargo xtask build-extension --dev`, used by
 * `cargo xtask run` and the e2e suite); the production build has extension/webext/build-config.js.
 * - rules: the demo workspaces of tests/e2e/pages: the assistant pages on localhost (any port),
 *   served only inside a workspace on 127.0.0.1 (any port).
 * - openShadowRoot: the panel's shadow root is open, so tests reach the data-testid hooks inside it.
 */
globalThis.QUIVER_BUILD = Object.freeze({
  dev: true,
  openShadowRoot: true,
  rules: Object.freeze([
    { pattern: 'http://localhost/udesk/assistant*', platform: 'udesk', workspaces: ['http://127.0.0.1'], enabled: true },
    { pattern: 'http://localhost/sobot/assistant*', platform: 'sobot', workspaces: ['http://127.0.0.1'], enabled: true },
  ]),
});
