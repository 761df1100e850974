// The integrator's assistant page. Nothing here talks to Quiver: the extension's content script
// finds this frame by itself and posts the payloads to window.parent.
'use strict';

// CSP probe for the tests: can this page's own scripts evaluate strings? Under the strict pages'
// `script-src 'self'` they cannot. Recorded as <html data-script-eval="blocked|allowed">.
try {
  // eslint-disable-next-line no-new-func
  new Function('return 1')();
  document.documentElement.dataset.scriptEval = 'allowed';
} catch {
  document.documentElement.dataset.scriptEval = 'blocked';
}

document.querySelector('[data-testid="assistant-origin"]').textContent = `Origin: ${location.origin}`;
