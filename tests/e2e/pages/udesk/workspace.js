// Fake Udesk IM console. It records every message its frames post to it, the way the real
// console's listener would receive `{"method":"sendMsg",...}` strings from the assistant iframe.
//
// Test hook: window.__quiverReceived is an array of
//   { data, origin, t: performance.now(), wall: Date.now() }
// in arrival order, and each message is also shown as <li data-testid="received-message">.
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

window.__quiverReceived = [];

const list = document.querySelector('[data-testid="received-list"]');

window.addEventListener('message', (event) => {
  const entry = {
    data: event.data,
    origin: event.origin,
    t: performance.now(),
    wall: Date.now(),
  };
  window.__quiverReceived.push(entry);

  const li = document.createElement('li');
  li.dataset.testid = 'received-message';
  const text = typeof event.data === 'string' ? event.data : JSON.stringify(event.data);
  const meta = document.createElement('span');
  meta.className = 'meta';
  meta.textContent = `#${window.__quiverReceived.length} from ${event.origin} at ${new Date(entry.wall).toISOString()}`;
  const body = document.createElement('code');
  body.textContent = text;
  li.append(meta, body);
  list.append(li);
});

// The assistant lives on another origin: same port, host `localhost` instead of `127.0.0.1`.
// The listener above is installed before the iframe starts loading.
const frame = document.getElementById('assistant');
const port = location.port ? `:${location.port}` : '';
frame.src = `${location.protocol}//localhost${port}/udesk/${frame.dataset.assistantPage}`;
