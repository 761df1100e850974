// The enterprise's docked page. Nothing here talks to Quiver: the extension's content script
// finds this frame by its site rule (http://localhost/sobot/assistant*) and posts to window.parent.
'use strict';

document.querySelector('[data-testid="assistant-origin"]').textContent = `Origin: ${location.origin} ${location.search}`;
