// A hostile site: frames an integrator's assistant page (or the whole workspace) and tries to get
// what Quiver sends. It records every message it receives in window.__quiverReceived (as the
// demo workspace does) and answers Quiver's origin handshake itself ({quiver: "origin?"} ->
// {quiver: "origin!", nonce}), as a page that knows the protocol would.
'use strict';

window.__quiverReceived = [];
window.addEventListener('message', (event) => {
  window.__quiverReceived.push({ data: event.data, origin: event.origin, wall: Date.now() });
  const li = document.createElement('li');
  li.dataset.testid = 'received-message';
  li.textContent = typeof event.data === 'string' ? event.data : JSON.stringify(event.data);
  document.querySelector('[data-testid="received-list"]').append(li);
  const d = event.data;
  if (d && typeof d === 'object' && d.quiver === 'origin?' && event.source) {
    event.source.postMessage({ quiver: 'origin!', nonce: d.nonce }, '*');
  }
});

const port = location.port ? `:${location.port}` : '';
const what = new URLSearchParams(location.search).get('frame');
const src = {
  assistant: `http://localhost${port}/udesk/assistant.html`,
  workspace: `http://127.0.0.1${port}/udesk/workspace.html`,
}[what];
if (src) {
  const frame = document.createElement('iframe');
  frame.id = 'framed';
  frame.src = src;
  frame.style.width = '900px';
  frame.style.height = '600px';
  document.body.append(frame);
}
