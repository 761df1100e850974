// Fake Sobot agent workbench. It records every message its frames post to it (the msgType 26
// objects the docked page sends), and posts `{name: "selected", cid, uid}` to the docked iframe
// when the agent switches conversation (platform-spec §2.3: the docked page is not reloaded; it
// re-reads its context from the message).
//
// Test hooks: window.__quiverReceived (as pages/udesk/workspace.js) and
// window.__quiverSelect(cid, uid) (what the conversation buttons do).
'use strict';

window.__quiverReceived = [];

const list = document.querySelector('[data-testid="received-list"]');
const frame = document.getElementById('assistant');

window.addEventListener('message', (event) => {
  if (event.source !== frame.contentWindow) return;
  const entry = { data: event.data, origin: event.origin, t: performance.now(), wall: Date.now() };
  window.__quiverReceived.push(entry);
  const li = document.createElement('li');
  li.dataset.testid = 'received-message';
  const meta = document.createElement('span');
  meta.className = 'meta';
  meta.textContent = `#${window.__quiverReceived.length} from ${event.origin}`;
  const body = document.createElement('code');
  body.textContent = typeof event.data === 'string' ? event.data : JSON.stringify(event.data);
  li.append(meta, body);
  list.append(li);
});

window.__quiverSelect = (cid, uid) => {
  frame.contentWindow.postMessage({ name: 'selected', cid, uid }, '*');
};
for (const b of document.querySelectorAll('[data-cid]')) {
  b.addEventListener('click', () => window.__quiverSelect(b.dataset.cid, b.dataset.uid));
}

const port = location.port ? `:${location.port}` : '';
frame.src = `${location.protocol}//localhost${port}/sobot/${frame.dataset.assistantPage}`;
