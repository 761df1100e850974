// Demo workspace server for the end-to-end suite and `cargo xtask run`.
//
// Serves tests/e2e/pages/ on one random loopback port under two origins:
//   workspace: http://127.0.0.1:<port>/udesk/workspace.html
//   assistant: http://localhost:<port>/udesk/assistant.html  (same port, other host = other origin)
// so the assistant iframe is cross-origin to the workspace page, as in a real Udesk console.
// A third origin, http://127.0.0.2:<port> (`hostileOrigin`), plays a site that is not a workspace
// (pages/hostile/): no site rule names it and no content script runs there.
//
// `localhost` may resolve to ::1 first (Firefox uses the system resolver, Chromium tries both).
// A refused ::1 connection falls back quickly, but to avoid depending on that we also listen on
// [::1] with the same port when the machine has IPv6 loopback (best effort).
//
// Pages whose name ends in `-strict.html` are sent with `Content-Security-Policy: script-src 'self'`,
// the kind of header real consoles send; no page has inline scripts, so they work under it.

import http from 'node:http';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const PAGES_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'pages');
export const STRICT_CSP = "script-src 'self'";

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

async function handle(root, req, res) {
  const url = new URL(req.url, 'http://placeholder');
  let rel;
  try {
    rel = decodeURIComponent(url.pathname);
  } catch {
    res.writeHead(400).end('bad path');
    return;
  }
  if (rel === '/favicon.ico') {
    res.writeHead(204).end(); // keeps a 404 out of the browsers' consoles
    return;
  }
  if (rel.endsWith('/')) rel += 'index.html';
  const file = path.join(root, path.normalize(rel));
  if (!file.startsWith(root + path.sep)) {
    res.writeHead(403).end('forbidden');
    return;
  }
  let body;
  try {
    body = await fs.readFile(file);
  } catch {
    res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${rel}`);
    return;
  }
  const headers = {
    'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
    'cache-control': 'no-store',
  };
  if (file.endsWith('-strict.html')) headers['content-security-policy'] = STRICT_CSP;
  res.writeHead(200, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
}

function listen(server, port, host) {
  return new Promise((resolve, reject) => {
    const onError = (err) => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve(server.address().port);
    });
  });
}

/**
 * Starts the server. Returns { port, workspaceOrigin, assistantOrigin, hostileOrigin, url(path), close() }.
 * `url('udesk/workspace.html')` is on the workspace origin.
 */
export async function startServer({ root = PAGES_DIR } = {}) {
  const resolvedRoot = path.resolve(root);
  const handler = (req, res) =>
    handle(resolvedRoot, req, res).catch((err) => {
      res.writeHead(500).end(String(err));
    });
  const v4 = http.createServer(handler);
  const port = await listen(v4, 0, '127.0.0.1');
  const servers = [v4];
  const hostile = http.createServer(handler);
  await listen(hostile, port, '127.0.0.2');
  servers.push(hostile);
  const v6 = http.createServer(handler);
  try {
    await listen(v6, port, '::1');
    servers.push(v6);
  } catch {
    // No IPv6 loopback or the port is taken there: `localhost` then reaches 127.0.0.1.
  }
  for (const s of servers) s.keepAliveTimeout = 1000;
  const workspaceOrigin = `http://127.0.0.1:${port}`;
  const assistantOrigin = `http://localhost:${port}`;
  const hostileOrigin = `http://127.0.0.2:${port}`;
  return {
    port,
    workspaceOrigin,
    assistantOrigin,
    hostileOrigin,
    url: (p) => `${workspaceOrigin}/${p.replace(/^\//, '')}`,
    close: () =>
      Promise.all(
        servers.map(
          (s) =>
            new Promise((resolve) => {
              s.close(() => resolve());
              s.closeAllConnections?.();
            }),
        ),
      ),
  };
}

// `node lib/server.mjs` serves the pages until interrupted (handy for looking at them by hand).
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const s = await startServer();
  console.log(`workspace: ${s.url('udesk/workspace.html')}`);
  console.log(`strict:    ${s.url('udesk/workspace-strict.html')}`);
}
