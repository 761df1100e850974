// Unit tests of the background (webext/background.js and its modules) in Node, imported as the
// browser imports them, with a test double of the browser's WebExtension API and of the native
// host's port. Each load() is a fresh background: its own copy of the module graph
// (fresh-modules.mjs). The wasm core is the built one (target/extension/pkg).
// Run: node --test extension/tests/
import test from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { register } from 'node:module';
import { webcrypto } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';

const EXT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const PKG = path.join(process.env.QUIVER_EXTENSION_DIR ?? path.join(EXT, '..', 'target', 'extension'), 'pkg');
register('./fresh-modules.mjs', import.meta.url, { data: { webext: path.join(EXT, 'webext'), pkg: PKG } });

// The browser fetches the extension's own files (the wasm core, loaded by lib/core.js); Node's
// fetch has no file: URLs, so the double reads them (webext/pkg/ is the built core, as above).
const realFetch = globalThis.fetch;
globalThis.fetch = async (url, init) => {
  const u = new URL(String(url instanceof Request ? url.url : url));
  if (u.protocol !== 'file:') return realFetch(url, init);
  let file = fileURLToPath(u);
  const pkgInSource = path.join(EXT, 'webext', 'pkg') + path.sep;
  if (file.startsWith(pkgInSource)) file = path.join(PKG, file.slice(pkgInSource.length));
  const type = file.endsWith('.wasm') ? 'application/wasm' : 'application/octet-stream';
  return new Response(await readFile(file), { headers: { 'content-type': type } });
};

// The background's logs stay out of the test report, and its timers (reconnects, alarms) must
// not keep the test process alive once the tests are done. The tests' own waits use realTimeout.
const realTimeout = globalThis.setTimeout;
globalThis.setTimeout = (f, ms, ...a) => realTimeout(f, ms, ...a).unref();
console.info = () => {};
console.warn = () => {};
const tick = (ms) => new Promise((r) => realTimeout(r, ms));
let instances = 0;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const event = () => {
  const fns = [];
  return { addListener: (f) => fns.push(f), fire: (...a) => fns.forEach((f) => f(...a)) };
};

function fakePort(name, sender) {
  return {
    name,
    sender,
    sent: [],
    /** When each of `sent` was posted (performance.now()). */
    at: [],
    onMessage: event(),
    onDisconnect: event(),
    postMessage(m) {
      this.sent.push(structuredClone(m));
      this.at.push(performance.now());
    },
    disconnect() {
      this.disconnected = true;
    },
  };
}

/** Loads a fresh background with its own browser double; returns handles to drive it. */
async function load({ session = {} } = {}) {
  const natives = [];
  const store = {};
  const api = {
    runtime: {
      id: 'ext',
      getManifest: () => ({ version: '0.1.0' }),
      getURL: (p) => `chrome-extension://ext/${p}`,
      onConnect: event(),
      onStartup: event(),
      connectNative(name) {
        assert.equal(name, 'dev.quiver.host');
        const p = fakePort(name, {});
        natives.push(p);
        return p;
      },
    },
    alarms: { create: async () => {}, clear: async () => {}, onAlarm: event() },
    commands: { onCommand: event() },
    storage: {
      local: {
        get: async (k) => ({ [k]: store[k] }),
        set: async (o) => Object.assign(store, structuredClone(o)),
      },
      // storage.session outlives a background restart (same object across load() calls).
      session: {
        get: async (k) => ({ [k]: structuredClone(session[k]) }),
        set: async (o) => Object.assign(session, structuredClone(o)),
      },
    },
  };
  // lib/browser.js takes the API when the instance is evaluated.
  globalThis.chrome = api;
  const instance = ++instances;
  const mod = (file) => import(`${pathToFileURL(path.join(EXT, 'webext', file)).href}?instance=${instance}`);
  await mod('background.js');
  const [native, library, queue] = await Promise.all([mod('background/native.js'), mod('background/library.js'), mod('background/queue.js')]);
  const bg = {
    /** The background's modules (this instance's). */
    mod: { native, library, queue },
    api,
    store,
    natives,
    get native() {
      return natives.at(-1);
    },
    /** Waits for the native port to carry a request for `method` not yet answered; returns it. */
    async nextRequest(method, port = bg.native) {
      return waitFor(() => port.sent.find((m) => m.method === method && !m.answered));
    },
    reply(req, result, port = bg.native) {
      req.answered = true;
      port.onMessage.fire({ id: req.id, result });
    },
    fail(req, code, message, port = bg.native) {
      req.answered = true;
      port.onMessage.fire({ id: req.id, error: { code, message } });
    },
    /** Answers `hello` on the current port: an older daemon by default, `capabilities` given. */
    async up(capabilities = []) {
      const hello = await bg.nextRequest('hello');
      assert.deepEqual(hello.params, { protocol: 1, client: 'quiver-extension/0.1.0' });
      bg.reply(hello, { protocol: 1, daemon: '0.1.0', capabilities });
      await waitFor(() => bg.mod.native.status().state === 'up');
    },
    /** A daemon of protocol 1.3: `send.reserve` may answer `go`. */
    async upFast() {
      await bg.up(['send', 'send.reserve.begin', 'events']);
    },
    /**
     * A content script (tab 4, frame 3 on localhost) that registers `workspace`, then the panel it
     * created (frame 5). `register: false` leaves the registration out.
     */
    async connectFrames(token = webcrypto.randomUUID(), { workspace = 'http://127.0.0.1:8000', tab = 4, frameOrigin = 'http://localhost:8000', register = true } = {}) {
      const cs = fakePort(`quiver-cs:${token}`, {
        id: 'ext',
        tab: { id: tab, url: '' }, // no host permission for the workspace: the browser hides its URL
        frameId: 3,
        url: `${frameOrigin}/udesk/assistant.html`,
        origin: frameOrigin,
      });
      const panel = bg.panelPort(token, { tab });
      api.runtime.onConnect.fire(cs);
      if (register) cs.onMessage.fire({ type: 'register', workspace, parent: workspace });
      await bg.connect(panel);
      return { cs, panel, token };
    },
    /** Fires onConnect for `port` and lets the background decide (panels are decided async). */
    async connect(port) {
      api.runtime.onConnect.fire(port);
      await tick(0);
      return port;
    },
    panelPort(token, { tab = 4, frameId = 5, resume = null } = {}) {
      return fakePort(resume ? `quiver-panel:${token}:${resume}` : `quiver-panel:${token}`, {
        id: 'ext',
        tab: { id: tab, url: '' },
        frameId,
        url: `chrome-extension://dynamic-id/panel.html#${token}&platform=udesk`,
      });
    },
  };
  return bg;
}

async function waitFor(fn, ms = 3000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out: ${fn}`);
    await tick(5);
  }
}

const states = (panel, key) => panel.sent.filter((m) => m.type === 'send-state' && m.key === key).map((m) => m.state);
const sendMsg = (key, extra = {}) => ({
  type: 'send', req: key, key, template_id: 'greeting', revision: 1, part_index: 0,
  payload: '{"method":"sendMsg","type":"text","content":"Hi"}', post_as: 'string', platform: 'udesk', ...extra,
});

test('hello on connect; replies are matched by id, not order', async () => {
  const bg = await load();
  await bg.up();
  const a = bg.mod.native.request('a', {});
  const b = bg.mod.native.request('b', {});
  const [ra, rb] = bg.native.sent.slice(1);
  bg.reply(rb, 'B');
  bg.reply(ra, 'A');
  assert.equal(await a, 'A');
  assert.equal(await b, 'B');
});

test('protocol errors keep their code and message', async () => {
  const bg = await load();
  await bg.up();
  const p = bg.mod.native.request('send.begin', {send_id: 1});
  bg.fail(bg.native.sent[1], 'not_found', 'no send 1');
  await assert.rejects(p, (e) => e.code === 'not_found' && e.message === 'no send 1');
});

test('chunked replies are joined, in any order, duplicates ignored', async () => {
  const bg = await load();
  await bg.up();
  const p = bg.mod.library.listAllTemplates();
  const req = await bg.nextRequest('templates.list');
  const usage = [{ id: 'a', usage_count: 3, last_used_at: 5 }];
  const body = JSON.stringify({ id: req.id, result: { templates: [{ id: 'a', title: 'ü "q"\n' }], usage, next_cursor: null } });
  const pieces = [body.slice(0, 9), body.slice(9, 30), body.slice(30)];
  req.answered = true;
  for (const seq of [2, 0, 0, 1]) bg.native.onMessage.fire({ id: req.id, chunk: { seq, total: 3, data: pieces[seq] } });
  assert.deepEqual(JSON.parse(JSON.stringify(await p)), { templates: [{ id: 'a', title: 'ü "q"\n' }], usage, meta: [{ library: 'local' }] });

  const q = bg.mod.native.request('templates.list', {});
  const r2 = await bg.nextRequest('templates.list');
  bg.native.onMessage.fire({ id: r2.id, chunk: { seq: 3, total: 3, data: 'x' } });
  await assert.rejects(q, (e) => e.code === 'internal' && /impossible/.test(e.message));
});

test('chunked pieces that arrive while the wasm core initialises are joined once it is ready', async () => {
  const bg = await load();
  // At once, before anything is awaited: the core (lib/core.js, fetched and compiled on the
  // background's first connect) cannot be ready yet.
  const hello = bg.native.sent.find((m) => m.method === 'hello');
  const body = JSON.stringify({ id: hello.id, result: { protocol: 1, daemon: '0.1.0-chunked', capabilities: [] } });
  hello.answered = true;
  bg.native.onMessage.fire({ id: hello.id, chunk: { seq: 1, total: 2, data: body.slice(12) } });
  bg.native.onMessage.fire({ id: hello.id, chunk: { seq: 0, total: 2, data: body.slice(0, 12) } });
  await waitFor(() => bg.mod.native.status().state === 'up');
  assert.equal(bg.mod.native.status().daemon, '0.1.0-chunked');
});

test('the pieces of a reply nobody waits for any more are forgotten: on timeout, and when the port drops', async () => {
  const bg = await load();
  await bg.up();
  const body = (id) => JSON.stringify({ id, result: { big: 'x'.repeat(40) } });
  const p = bg.mod.native.request('templates.list', {}, 100);
  const req = await bg.nextRequest('templates.list');
  bg.native.onMessage.fire({ id: req.id, chunk: { seq: 0, total: 2, data: body(req.id).slice(0, 10) } });
  await waitFor(() => bg.mod.native.pendingChunks() === 1);
  // The background's timers do not keep Node alive (unref above): wait with the tests' own.
  let timedOut = null;
  p.catch((e) => { timedOut = e; });
  await waitFor(() => timedOut);
  assert.equal(timedOut.code, 'timeout');
  assert.equal(bg.mod.native.pendingChunks(), 0, 'forgotten when the request timed out');
  // Its last piece, late: dropped, nothing delivered.
  bg.native.onMessage.fire({ id: req.id, chunk: { seq: 1, total: 2, data: body(req.id).slice(10) } });
  assert.equal(bg.mod.native.pendingChunks(), 0);

  const q = bg.mod.native.request('templates.list', {});
  const r2 = bg.native.sent.at(-1); // posted at once
  assert.equal(r2.method, 'templates.list');
  bg.native.onMessage.fire({ id: r2.id, chunk: { seq: 0, total: 2, data: body(r2.id).slice(0, 10) } });
  await waitFor(() => bg.mod.native.pendingChunks() === 1);
  bg.native.onDisconnect.fire({ error: { message: 'host exited' } });
  await assert.rejects(q, (e) => e.code === 'host_disconnected');
  assert.equal(bg.mod.native.pendingChunks(), 0, 'dropped with the port');
});

test('a dropped native port rejects pending requests and reconnects with backoff', async () => {
  const bg = await load();
  await bg.up();
  const p = bg.mod.native.request('x', {});
  bg.native.onDisconnect.fire({ error: { message: 'host exited' } });
  await assert.rejects(p, (e) => e.code === 'host_disconnected');
  assert.equal(bg.mod.native.status().state, 'down');
  assert.equal(bg.natives.length, 1);
  await waitFor(() => bg.natives.length === 2, 2000); // 0.5 s
  await bg.up();
});

test('daemon.down / daemon.up events drive the status the panels see', async () => {
  const bg = await load();
  await bg.up();
  const { panel } = await bg.connectFrames();
  bg.native.onMessage.fire({ event: 'daemon.down', data: { reason: 'socket closed' } });
  bg.native.onMessage.fire({ event: 'daemon.up', data: { version: '0.2.0' } });
  const seen = panel.sent.filter((m) => m.type === 'status').map((m) => m.status.state);
  assert.deepEqual(seen, ['up', 'down', 'up']);
  assert.equal(bg.mod.native.status().daemon, '0.2.0');
});

test('send pipeline: reserve, queued, begin, post by the content script, done, sent', async () => {
  const bg = await load();
  await bg.up();
  const { cs, panel } = await bg.connectFrames();
  panel.onMessage.fire(sendMsg('k1'));
  const reserve = await bg.nextRequest('send.reserve');
  assert.match(reserve.params.idempotency_key, UUID);
  assert.equal(reserve.params.workspace, 'http://127.0.0.1:8000', 'the workspace the content script registered');
  assert.equal(reserve.params.payload, '{"method":"sendMsg","type":"text","content":"Hi"}');
  bg.reply(reserve, { send_id: 7, delay_ms: 40, state: 'queued' });
  await waitFor(() => panel.sent.find((m) => m.type === 'send-state' && m.send_id === 7 && m.delay_ms !== null));
  const begin1 = await bg.nextRequest('send.begin');
  bg.reply(begin1, { go: false, delay_ms: 20 });
  const begin2 = await bg.nextRequest('send.begin');
  bg.reply(begin2, { go: true });
  const post = await waitFor(() => cs.sent.find((m) => m.type === 'post'));
  assert.deepEqual(post, { type: 'post', send_id: 7, wire: reserve.params.payload, post_as: 'string' });
  assert.equal(bg.native.sent.some((m) => m.method === 'send.done'), false, 'done only after posted');
  cs.onMessage.fire({ type: 'posted', send_id: 7, ok: true });
  const done = await bg.nextRequest('send.done');
  assert.deepEqual(done.params, { send_id: 7, ok: true });
  bg.reply(done, { send_id: 7, state: 'sent' });
  await waitFor(() => states(panel, 'k1').at(-1) === 'sent');
  assert.deepEqual([...new Set(states(panel, 'k1'))], ['queued', 'sending', 'sent']);
  assert.deepEqual(panel.sent.find((m) => m.type === 'reply' && m.req === 'k1').result, { key: 'k1' });
});

test('sends of one workspace go strictly one after another, in order', async () => {
  const bg = await load();
  await bg.up();
  const { cs, panel } = await bg.connectFrames();
  for (const k of ['a', 'b', 'c']) panel.onMessage.fire(sendMsg(k, { payload: `"${k}"` }));
  for (let id = 1; id <= 3; id++) bg.reply(await bg.nextRequest('send.reserve'), { send_id: id, delay_ms: 0 });
  const order = [];
  for (let id = 1; id <= 3; id++) {
    bg.reply(await bg.nextRequest('send.begin'), { go: true });
    const post = await waitFor(() => cs.sent.find((m) => m.type === 'post' && m.send_id === id));
    order.push(post.wire);
    assert.equal(bg.native.sent.filter((m) => m.method === 'send.begin').length, id, 'no begin before the previous done');
    cs.onMessage.fire({ type: 'posted', send_id: id, ok: true });
    bg.reply(await bg.nextRequest('send.done'), { send_id: id, state: 'sent' });
  }
  assert.deepEqual(order, ['"a"', '"b"', '"c"']);
});

test('a native port drop mid-queue keeps the queue and reuses the idempotency key', async () => {
  const bg = await load();
  await bg.up();
  const { cs, panel } = await bg.connectFrames();
  panel.onMessage.fire(sendMsg('k'));
  const first = await bg.nextRequest('send.reserve');
  bg.native.onDisconnect.fire({}); // the reply never comes
  await waitFor(() => bg.natives.length === 2, 2000);
  await bg.up();
  const again = await bg.nextRequest('send.reserve');
  assert.equal(again.params.idempotency_key, first.params.idempotency_key);
  bg.reply(again, { send_id: 3, delay_ms: 0 });
  bg.reply(await bg.nextRequest('send.begin'), { go: true });
  await waitFor(() => cs.sent.find((m) => m.type === 'post'));
  cs.onMessage.fire({ type: 'posted', send_id: 3, ok: true });
  bg.reply(await bg.nextRequest('send.done'), { send_id: 3, state: 'sent' });
  await waitFor(() => states(panel, 'k').at(-1) === 'sent');
});

test('a refused reservation reaches the panel with code and message; later parts are cancelled', async () => {
  const bg = await load();
  await bg.up();
  const { panel } = await bg.connectFrames();
  panel.onMessage.fire(sendMsg('p0', { batch: 'B', part_index: 0 }));
  panel.onMessage.fire(sendMsg('p1', { batch: 'B', part_index: 1 }));
  bg.fail(await bg.nextRequest('send.reserve'), 'invalid_params', 'send.reserve: bad platform');
  await waitFor(() => states(panel, 'p1').at(-1) === 'cancelled');
  const failed = panel.sent.find((m) => m.type === 'send-state' && m.key === 'p0' && m.state === 'failed');
  assert.deepEqual(failed.error, { code: 'invalid_params', message: 'send.reserve: bad platform' });
  assert.equal(bg.native.sent.filter((m) => m.method === 'send.reserve').length, 1, 'p1 never reserved');
});

test('the agent can cancel a queued send; the daemon is told', async () => {
  const bg = await load();
  await bg.up();
  const { panel } = await bg.connectFrames();
  panel.onMessage.fire(sendMsg('k'));
  bg.reply(await bg.nextRequest('send.reserve'), { send_id: 5, delay_ms: 60_000 });
  await waitFor(() => states(panel, 'k').length && panel.sent.some((m) => m.send_id === 5));
  panel.onMessage.fire({ type: 'cancel', req: 'c', key: 'k' });
  const cancel = await bg.nextRequest('send.cancel');
  assert.deepEqual(cancel.params, { send_id: 5 });
  await waitFor(() => states(panel, 'k').at(-1) === 'cancelled');
  assert.equal(bg.native.sent.some((m) => m.method === 'send.begin'), false);
});

test('ports: bad names are refused', async () => {
  const bg = await load();
  for (const name of ['quiver-cs:not-a-token', `quiver-cs:${webcrypto.randomUUID()}:${webcrypto.randomUUID()}`, `quiver-panel:${webcrypto.randomUUID()}:x`]) {
    const bad = fakePort(name, { id: 'ext' });
    bg.api.runtime.onConnect.fire(bad);
    assert.equal(bad.disconnected, true, name);
  }
});

const refusal = (port) => port.sent.find((m) => m.type === 'refused')?.code;

test('pairing: a panel is accepted only for a token its content script registered, in its tab, once', async () => {
  const bg = await load();
  await bg.up();
  // No content script registered this token: refused, never told the status.
  const unknown = bg.panelPort(webcrypto.randomUUID());
  await bg.connect(unknown);
  assert.equal(refusal(unknown), 'not_registered');
  assert.equal(unknown.disconnected, true);
  assert.equal(unknown.sent.some((m) => m.type === 'status'), false);
  // Connected but not registered (no workspace): refused.
  const { panel: early } = await bg.connectFrames(undefined, { register: false });
  assert.equal(refusal(early), 'not_registered');

  const { token, panel } = await bg.connectFrames();
  const paired = panel.sent.find((m) => m.type === 'paired');
  assert.match(paired.resume, UUID);
  assert.equal(panel.disconnected, undefined);
  // The same token from another tab, or a second panel: refused.
  const otherTab = bg.panelPort(token, { tab: 9 });
  await bg.connect(otherTab);
  assert.equal(refusal(otherTab), 'wrong_frame');
  const second = bg.panelPort(token, { frameId: 6 });
  await bg.connect(second);
  assert.equal(refusal(second), 'token_used');
  // The real panel goes away (the page removed it) and the page re-embeds panel.html#<token>:
  // the token was used; only the secret the real panel was given resumes it.
  panel.onDisconnect.fire();
  const stolen = bg.panelPort(token, { frameId: 7 });
  await bg.connect(stolen);
  assert.equal(refusal(stolen), 'token_used');
  const guessed = bg.panelPort(token, { resume: webcrypto.randomUUID() });
  await bg.connect(guessed);
  assert.equal(refusal(guessed), 'token_used');
  const back = bg.panelPort(token, { resume: paired.resume });
  await bg.connect(back);
  assert.equal(refusal(back), undefined);
  assert.equal(back.sent[0].type, 'paired');
  // Not a panel page at all.
  const { token: t2 } = await bg.connectFrames(undefined, { tab: 2 });
  const fake = fakePort(`quiver-panel:${t2}`, { id: 'ext', tab: { id: 2 }, frameId: 8, url: 'chrome-extension://ext/options.html' });
  await bg.connect(fake);
  assert.equal(refusal(fake), 'bad_request');
});

test('pairing: a used token stays used across a background restart; the resume secret still works', async () => {
  const session = {};
  const before = await load({ session });
  const { token, panel } = await before.connectFrames();
  const { resume } = panel.sent.find((m) => m.type === 'paired');
  await waitFor(() => session['quiver.paired.v1']?.[token]);
  // The background restarts: the content script reconnects and registers the same token.
  const bg = await load({ session });
  const cs = fakePort(`quiver-cs:${token}`, { id: 'ext', tab: { id: 4, url: '' }, frameId: 3, url: 'http://localhost:8000/udesk/assistant.html', origin: 'http://localhost:8000' });
  bg.api.runtime.onConnect.fire(cs);
  cs.onMessage.fire({ type: 'register', workspace: 'http://127.0.0.1:8000', parent: 'http://127.0.0.1:8000' });
  const stolen = await bg.connect(bg.panelPort(token, { frameId: 7 }));
  assert.equal(refusal(stolen), 'token_used', 'a page that kept the token gains nothing from the restart');
  const back = await bg.connect(bg.panelPort(token, { resume }));
  assert.equal(refusal(back), undefined);
  assert.equal(back.sent[0].type, 'paired');
  // Once the frame and its panel are gone, the token is forgotten.
  cs.onDisconnect.fire();
  back.onDisconnect.fire();
  await waitFor(() => !session['quiver.paired.v1']?.[token]);
});

test('pairing: Firefox names the panel frame; a panel from another frame is refused', async () => {
  const bg = await load();
  const token = webcrypto.randomUUID();
  const cs = fakePort(`quiver-cs:${token}`, { id: 'ext', tab: { id: 4 }, frameId: 3, url: 'http://localhost:1/a', origin: 'http://localhost:1' });
  bg.api.runtime.onConnect.fire(cs);
  cs.onMessage.fire({ type: 'register', workspace: 'http://127.0.0.1:1', parent: 'http://127.0.0.1:1' });
  cs.onMessage.fire({ type: 'panel-frame', frameId: 11 });
  const wrong = bg.panelPort(token, { frameId: 12 });
  await bg.connect(wrong);
  assert.equal(refusal(wrong), 'wrong_frame');
  const right = bg.panelPort(token, { frameId: 11 });
  await bg.connect(right);
  assert.equal(refusal(right), undefined);
});

test('registration: a token stays bound to its frame; bad workspaces are refused', async () => {
  const bg = await load();
  const token = webcrypto.randomUUID();
  const sender = { id: 'ext', tab: { id: 4 }, frameId: 3, url: 'http://localhost:1/a', origin: 'http://localhost:1' };
  const cs = fakePort(`quiver-cs:${token}`, sender);
  bg.api.runtime.onConnect.fire(cs);
  cs.onMessage.fire({ type: 'register', workspace: 'http://127.0.0.1:1', parent: 'http://127.0.0.1:1' });
  await bg.connect(bg.panelPort(token)); // keeps the pair while its content script is away
  cs.onDisconnect.fire();
  // The same token from another frame (another document that learned it) is refused.
  const other = fakePort(`quiver-cs:${token}`, { ...sender, frameId: 9 });
  bg.api.runtime.onConnect.fire(other);
  assert.equal(other.disconnected, true);
  for (const workspace of ['*', 'http://127.0.0.1:1/path', 'javascript:1', 'null']) {
    const c = fakePort(`quiver-cs:${webcrypto.randomUUID()}`, sender);
    bg.api.runtime.onConnect.fire(c);
    c.onMessage.fire({ type: 'register', workspace, parent: 'http://127.0.0.1:1' });
    assert.equal(c.disconnected, true, workspace);
  }
});

test('focus: the content script\'s request reaches its own panel only, through the background', async () => {
  const bg = await load();
  const a = await bg.connectFrames();
  const b = await bg.connectFrames(undefined, { tab: 7 });
  a.cs.onMessage.fire({ type: 'focus' });
  assert.equal(a.panel.sent.filter((m) => m.type === 'focus-search').length, 1);
  assert.equal(b.panel.sent.some((m) => m.type === 'focus-search'), false);
});

test('meter: one queue per workspace, whatever the assistant frame\'s origin', async () => {
  const bg = await load();
  await bg.up();
  const a = await bg.connectFrames(undefined, { workspace: 'https://kf.udesk.cn', frameOrigin: 'https://assist-a.example' });
  const b = await bg.connectFrames(undefined, { workspace: 'https://kf.udesk.cn', frameOrigin: 'https://assist-b.example' });
  a.panel.onMessage.fire(sendMsg('ka'));
  b.panel.onMessage.fire(sendMsg('kb'));
  const r1 = await bg.nextRequest('send.reserve');
  bg.reply(r1, { send_id: 1, delay_ms: 0 });
  const r2 = await bg.nextRequest('send.reserve');
  bg.reply(r2, { send_id: 2, delay_ms: 0 });
  assert.deepEqual([r1.params.workspace, r2.params.workspace], ['https://kf.udesk.cn', 'https://kf.udesk.cn']);
  assert.equal(JSON.stringify([...bg.mod.queue.queues.keys()]), '["https://kf.udesk.cn"]');
  // One after another: no second begin before the first is done.
  bg.reply(await bg.nextRequest('send.begin'), { go: true });
  await waitFor(() => a.cs.sent.find((m) => m.type === 'post'));
  assert.equal(bg.native.sent.filter((m) => m.method === 'send.begin').length, 1);
});

test('history: only the panel\'s workspace, never all of it', async () => {
  const bg = await load();
  await bg.up();
  const { panel } = await bg.connectFrames(undefined, { workspace: 'https://kf.udesk.cn' });
  panel.onMessage.fire({ type: 'history', req: 'h', limit: 5 });
  const hist = await bg.nextRequest('history.list');
  assert.equal(hist.params.workspace, 'https://kf.udesk.cn');
});

test('palette: the open-palette command reaches the content scripts of that tab only', async () => {
  const bg = await load();
  await bg.up();
  const { cs } = await bg.connectFrames();
  const other = fakePort(`quiver-cs:${webcrypto.randomUUID()}`, {
    id: 'ext', tab: { id: 9, url: 'http://127.0.0.1:8000/x' }, url: 'http://localhost:8000/udesk/assistant.html',
  });
  bg.api.runtime.onConnect.fire(other);
  bg.api.commands.onCommand.fire('open-palette', { id: 4 });
  await waitFor(() => cs.sent.some((m) => m.type === 'open'));
  assert.equal(other.sent.some((m) => m.type === 'open'), false);
});

test('palette: context is forwarded to the panel; sends carry conversation/customer and not_before_ms', async () => {
  const bg = await load();
  await bg.up();
  const { cs, panel } = await bg.connectFrames();
  cs.onMessage.fire({ type: 'context', url: 'http://localhost:8000/sobot/assistant.html?cid=C1&uid=U1', selected: [{ name: 'selected', cid: 'C2' }] });
  const ctx = panel.sent.find((m) => m.type === 'context');
  assert.equal(ctx.url, 'http://localhost:8000/sobot/assistant.html?cid=C1&uid=U1');
  assert.deepEqual(ctx.selected, [{ name: 'selected', cid: 'C2' }]);

  panel.onMessage.fire(sendMsg('k1', { conversation: 'C1', customer: 'U1', platform: 'sobot', post_as: 'object', payload: '{"cid":"C1"}' }));
  const reserve = await bg.nextRequest('send.reserve');
  assert.equal(reserve.params.conversation, 'C1');
  assert.equal(reserve.params.customer, 'U1');
  const nb = Date.now() + 5000;
  bg.reply(reserve, { send_id: 3, delay_ms: 5000, not_before_ms: nb, state: 'queued' });
  await waitFor(() => panel.sent.some((m) => m.type === 'send-state' && m.key === 'k1' && m.not_before_ms === nb));

  panel.onMessage.fire({ type: 'history', req: 'h', conversation: 'C1', limit: 5 });
  const hist = await bg.nextRequest('history.list');
  assert.deepEqual(JSON.parse(JSON.stringify(hist.params)), { limit: 5, workspace: 'http://127.0.0.1:8000', conversation: 'C1' });
  bg.reply(hist, { rows: [{ send_id: 3 }], next_cursor: null });
  await waitFor(() => panel.sent.some((m) => m.type === 'reply' && m.req === 'h'));

  bg.native.onMessage.fire({ event: 'library.changed', data: { reason: 'import', ids: ['x'] } });
  assert.ok(panel.sent.some((m) => m.type === 'library-changed'), 'library changes reach the panels');

  panel.onMessage.fire(sendMsg('bad', { conversation: 5 }));
  await waitFor(() => panel.sent.some((m) => m.type === 'reply' && m.req === 'bad' && m.error?.code === 'bad_request'));
});

// The fast path (protocol 1.3, capability send.reserve.begin).

/** Posts `send_id` as the content script, answers send.done, and waits for `sent`. */
async function postAndDone(bg, cs, panel, key, sendId) {
  await waitFor(() => cs.sent.find((m) => m.type === 'post' && m.send_id === sendId));
  cs.onMessage.fire({ type: 'posted', send_id: sendId, ok: true });
  const done = await bg.nextRequest('send.done');
  assert.deepEqual(done.params, { send_id: sendId, ok: true });
  bg.reply(done, { send_id: sendId, state: 'sent' });
  await waitFor(() => states(panel, key).at(-1) === 'sent');
}

test('fast path: a free slot goes in one round trip (reserve with begin, post, done)', async () => {
  const bg = await load();
  await bg.upFast();
  const { cs, panel } = await bg.connectFrames();
  panel.onMessage.fire(sendMsg('k1'));
  const reserve = await bg.nextRequest('send.reserve');
  assert.equal(reserve.params.begin, true);
  assert.equal(cs.sent.some((m) => m.type === 'post'), false, 'nothing is posted before the daemon says go');
  // The frame hears that a post may follow, just after the reservation left.
  const expect = cs.sent.findIndex((m) => m.type === 'expect');
  assert.ok(expect >= 0, 'the frame is told to expect a post');
  assert.ok(cs.at[expect] >= bg.native.at[bg.native.sent.indexOf(reserve)], 'after the reservation');
  bg.reply(reserve, { send_id: 7, state: 'sending', go: true, delay_ms: 0, not_before_ms: Date.now(), replayed: false });
  await postAndDone(bg, cs, panel, 'k1', 7);
  assert.equal(bg.native.sent.some((m) => m.method === 'send.begin'), false, 'no send.begin');
  // The panel shows its send as queued from the click: the background says nothing while the
  // reservation is on its way, and the acknowledgement of the `send` comes after it.
  assert.deepEqual([...new Set(states(panel, 'k1'))], ['sending', 'sent']);
  await waitFor(() => panel.sent.find((m) => m.type === 'reply' && m.req === 'k1'));
  assert.deepEqual(panel.sent.find((m) => m.type === 'reply' && m.req === 'k1').result, { key: 'k1' });
});

test('fast path: the post crosses to the page undisturbed; `sending`, the save and send.done follow', async () => {
  const bg = await load();
  await bg.upFast();
  const { cs, panel } = await bg.connectFrames();
  panel.onMessage.fire(sendMsg('k1'));
  const reserve = await bg.nextRequest('send.reserve');
  bg.reply(reserve, { send_id: 7, state: 'sending', go: true, delay_ms: 0, not_before_ms: Date.now(), replayed: false });
  const post = await waitFor(() => cs.sent.findIndex((m) => m.type === 'post') + 1) - 1;
  const postedAt = cs.at[post];
  // The frame answers at once; the background still keeps quiet for a moment.
  cs.onMessage.fire({ type: 'posted', send_id: 7, ok: true });
  const done = await bg.nextRequest('send.done');
  const doneAt = bg.native.at[bg.native.sent.indexOf(done)];
  const quiet = bg.mod.queue.QUIET_AFTER_SEND_MS;
  // (timers never fire early; 1 ms for the clocks' rounding)
  assert.ok(doneAt - postedAt >= quiet - 1, `send.done ${(doneAt - postedAt).toFixed(1)} ms after the post, not ${quiet}`);
  const sending = panel.sent.findIndex((m) => m.type === 'send-state' && m.key === 'k1' && m.state === 'sending');
  assert.ok(sending >= 0 && panel.at[sending] - postedAt >= quiet - 1, 'the panel hears `sending` after the quiet');
  const saved = bg.store['quiver.sendQueue.v1']?.find((i) => i.key === 'k1');
  assert.ok(saved && ['posting', 'posted'].includes(saved.stage), `saved as posting, not ${saved?.stage}`);
  bg.reply(done, { send_id: 7, state: 'sent' });
  await waitFor(() => states(panel, 'k1').at(-1) === 'sent');
  assert.deepEqual([...new Set(states(panel, 'k1'))], ['sending', 'sent']);
});

test('a send whose reservation is not answered is saved all the same, within a moment', async () => {
  const bg = await load();
  await bg.upFast();
  const { panel } = await bg.connectFrames();
  panel.onMessage.fire(sendMsg('k1'));
  const reserve = await bg.nextRequest('send.reserve');
  // No answer from the daemon: the queue is saved anyway, a moment after the send was queued.
  const saved = await waitFor(() => bg.store['quiver.sendQueue.v1']?.find((i) => i.key === 'k1'));
  assert.equal(saved.stage, 'new');
  assert.equal(saved.idempotency_key, reserve.params.idempotency_key);
  assert.ok(bg.mod.queue.QUIET_AFTER_SEND_MS <= 100, 'saved within a moment');
  // The panel's `send` is acknowledged all the same (it must not time out into "failed").
  await waitFor(() => panel.sent.find((m) => m.type === 'reply' && m.req === 'k1'));
  assert.equal(states(panel, 'k1').includes('failed'), false);
});

test('fast path: an older daemon (no capability) gets the three steps, without `begin`', async () => {
  const bg = await load();
  await bg.up(['send', 'events']);
  const { cs, panel } = await bg.connectFrames();
  panel.onMessage.fire(sendMsg('k1'));
  const reserve = await bg.nextRequest('send.reserve');
  assert.equal('begin' in reserve.params, false, 'an older daemon refuses unknown params');
  assert.equal(cs.sent.some((m) => m.type === 'expect'), false, 'a reservation without `begin` grants no slot');
  bg.reply(reserve, { send_id: 2, state: 'queued', delay_ms: 0, replayed: false });
  const begin = await bg.nextRequest('send.begin');
  assert.equal(cs.sent.filter((m) => m.type === 'expect').length, 1, 'send.begin may grant it: the frame expects a post');
  bg.reply(begin, { go: true });
  await postAndDone(bg, cs, panel, 'k1', 2);
});

test('fast path: only the head asks for its slot; a queued send is woken by meter.released, not a timer', async () => {
  const bg = await load();
  await bg.upFast();
  const { cs, panel } = await bg.connectFrames();
  panel.onMessage.fire(sendMsg('a', { payload: '"a"' }));
  panel.onMessage.fire(sendMsg('b', { payload: '"b"' }));
  const ra = await bg.nextRequest('send.reserve');
  assert.equal(ra.params.begin, true);
  bg.reply(ra, { send_id: 1, state: 'sending', go: true, delay_ms: 0, not_before_ms: Date.now() });
  const rb = await bg.nextRequest('send.reserve');
  assert.equal('begin' in rb.params, false, 'b is behind a: it must not be granted out of order');
  // The daemon's estimate: far enough that no timer can fire during the test.
  bg.reply(rb, { send_id: 2, state: 'queued', delay_ms: 60_000, not_before_ms: Date.now() + 60_000 });
  await postAndDone(bg, cs, panel, 'a', 1);
  await tick(30);
  assert.equal(bg.native.sent.some((m) => m.method === 'send.begin'), false, 'b waits for its slot, it does not poll');
  // a's release names b and its slot: b asks then.
  bg.native.onMessage.fire({
    event: 'meter.released',
    data: { key: '["udesk","w"]', platform: 'udesk', send_id: 1, state: 'sent', next: { send_id: 2, delay_ms: 20, not_before_ms: Date.now() + 20 } },
  });
  const begin = await bg.nextRequest('send.begin');
  assert.deepEqual(begin.params, { send_id: 2 });
  bg.reply(begin, { go: true });
  await postAndDone(bg, cs, panel, 'b', 2);
  assert.equal(bg.native.sent.filter((m) => m.method === 'send.begin').length, 1);
});

test('fast path: a "wait" from send.begin is followed, then the fallback timer stands in for a lost event', async () => {
  const bg = await load();
  await bg.upFast();
  const { cs, panel } = await bg.connectFrames();
  panel.onMessage.fire(sendMsg('k'));
  // Someone else's send holds the key: queued with a short estimate.
  bg.reply(await bg.nextRequest('send.reserve'), { send_id: 4, state: 'queued', go: false, delay_ms: 10, not_before_ms: Date.now() + 10 });
  bg.reply(await bg.nextRequest('send.begin'), { go: false, delay_ms: 10, not_before_ms: Date.now() + 10 });
  // The first "wait" is followed as given.
  bg.reply(await bg.nextRequest('send.begin'), { go: false, delay_ms: 10, not_before_ms: Date.now() + 10 });
  // The second means a release is awaited: its event is lost, and the fallback asks anyway.
  const third = await bg.nextRequest('send.begin', bg.native);
  bg.reply(third, { go: true });
  await postAndDone(bg, cs, panel, 'k', 4);
  assert.equal(bg.native.sent.filter((m) => m.method === 'send.begin').length, 3);
});

test('fast path: a reconnect of the native port re-asks a waiting send at once', async () => {
  const bg = await load();
  await bg.upFast();
  const { cs, panel } = await bg.connectFrames();
  panel.onMessage.fire(sendMsg('k'));
  bg.reply(await bg.nextRequest('send.reserve'), { send_id: 9, state: 'queued', go: false, delay_ms: 60_000, not_before_ms: Date.now() + 60_000 });
  await waitFor(() => panel.sent.some((m) => m.type === 'send-state' && m.send_id === 9));
  // The port drops; the release event sent meanwhile never arrives.
  bg.native.onDisconnect.fire({});
  await waitFor(() => bg.natives.length === 2, 2000);
  await bg.upFast();
  const begin = await bg.nextRequest('send.begin');
  assert.deepEqual(begin.params, { send_id: 9 });
  bg.reply(begin, { go: true });
  await postAndDone(bg, cs, panel, 'k', 9);
});

test('fast path: a retried reservation reuses its key; a replayed grant is never posted', async () => {
  const bg = await load();
  await bg.upFast();
  const { cs, panel } = await bg.connectFrames();
  panel.onMessage.fire(sendMsg('k'));
  const first = await bg.nextRequest('send.reserve');
  assert.equal(first.params.begin, true);
  bg.native.onDisconnect.fire({}); // the daemon granted it, but the reply was lost
  await waitFor(() => bg.natives.length === 2, 2000);
  await bg.upFast();
  const again = await bg.nextRequest('send.reserve');
  assert.equal(again.params.idempotency_key, first.params.idempotency_key);
  bg.reply(again, { send_id: 5, state: 'sending', go: false, delay_ms: 0, replayed: true });
  const done = await bg.nextRequest('send.done');
  assert.equal(done.params.send_id, 5);
  assert.equal(done.params.ok, false, 'reported as not posted');
  bg.reply(done, { send_id: 5, state: 'failed' });
  await waitFor(() => states(panel, 'k').at(-1) === 'failed');
  assert.equal(cs.sent.some((m) => m.type === 'post'), false, 'a replayed grant never posts');
});

test('fast path: a send cancelled while its go-now reservation is on its way hands the slot back', async () => {
  const bg = await load();
  await bg.upFast();
  const { cs, panel } = await bg.connectFrames();
  panel.onMessage.fire(sendMsg('k'));
  const reserve = await bg.nextRequest('send.reserve');
  panel.onMessage.fire({ type: 'cancel', req: 'c', key: 'k' });
  await waitFor(() => states(panel, 'k').at(-1) === 'cancelled');
  bg.reply(reserve, { send_id: 6, state: 'sending', go: true, delay_ms: 0 });
  const done = await bg.nextRequest('send.done');
  assert.deepEqual(done.params, { send_id: 6, ok: false, error: 'cancelled before posting' });
  assert.equal(cs.sent.some((m) => m.type === 'post'), false);
});

// ---- team libraries (protocol 1.4, capability `team`) ----

/** Answers one `templates.list` page. */
async function listPage(bg, result) {
  const req = await bg.nextRequest('templates.list');
  bg.reply(req, { usage: [], next_cursor: null, library_version: 1, ...result });
  return req;
}

test('team: the library spans every library; the same id in two libraries stays two templates', async () => {
  const bg = await load();
  await bg.up(['send', 'events', 'team']);
  const { panel } = await bg.connectFrames();
  panel.onMessage.fire({ type: 'templates', req: 't1' });
  const a = { id: 'greeting', title: 'Hello (mine)', parts: [{ type: 'text', text: 'Hi' }], revision: 1 };
  const b = { id: 'greeting', title: 'Hello (team)', parts: [{ type: 'text', text: 'Hello' }], revision: 3 };
  const list = await listPage(bg, {
    templates: [a, b],
    meta: [
      { id: 'greeting', library: 'local' },
      { id: 'greeting', library: 'L1', head_rev: 'r3', sync: 'draft', author: 'ada', changed_at: 5, reason: 'your role is viewer' },
    ],
    usage: [{ id: 'greeting', library: 'L1', usage_count: 4, last_used_at: 9 }],
  });
  assert.equal(list.params.library, '*', 'every library');
  const status = await bg.nextRequest('team.status');
  bg.reply(status, { hubs: [], libraries: [{ id: 'L1', name: 'Support', role: 'viewer', hub_id: 'H' }] });
  const reply = await waitFor(() => panel.sent.find((m) => m.type === 'reply' && m.req === 't1'));
  const r = reply.result;
  // The templates stay plain library JSON (the core refuses unknown fields): the state is beside them.
  assert.deepEqual(r.templates, [a, b]);
  assert.deepEqual(r.meta, [
    { library: 'local' },
    { library: 'L1', head_rev: 'r3', sync: 'draft', author: 'ada', changed_at: 5, reason: 'your role is viewer' },
  ]);
  assert.deepEqual(r.libraries, [{ id: 'L1', name: 'Support', role: 'viewer', hub_id: 'H' }]);
  assert.equal(typeof r.index, 'string', 'the index was built over both');
  // The usage of the team template ranks it, not the local one with the same id.
  const core = await import(`${pathToFileURL(path.join(EXT, 'webext', 'lib', 'core.js')).href}?instance=core-${instances}`);
  const c = await core.loadCore();
  const idx = c.SearchIndex.from_snapshot(Buffer.from(r.index, 'base64'));
  const hits = JSON.parse(idx.search('', 10, Date.now(), new Float32Array(0)));
  assert.equal(hits[0].index, 1, `the used template first: ${JSON.stringify(hits)}`);
});

test('team: team.changed rebuilds the library for the panels, a connection change does not', async () => {
  const bg = await load();
  await bg.up(['send', 'events', 'team']);
  const { panel } = await bg.connectFrames();
  panel.onMessage.fire({ type: 'templates', req: 't1' });
  await listPage(bg, { templates: [], meta: [] });
  bg.reply(await bg.nextRequest('team.status'), { hubs: [], libraries: [] });
  await waitFor(() => panel.sent.find((m) => m.type === 'reply' && m.req === 't1'));
  const changes = () => panel.sent.filter((m) => m.type === 'library-changed').length;
  bg.native.onMessage.fire({ event: 'team.changed', data: { what: 'connection', hub: 'H', library: null } });
  await tick(10);
  assert.equal(changes(), 0);
  bg.native.onMessage.fire({ event: 'team.changed', data: { what: 'drafts', hub: 'H', library: 'L1' } });
  await waitFor(() => changes() === 1);
  // and the next request lists again
  panel.onMessage.fire({ type: 'templates', req: 't2' });
  await listPage(bg, { templates: [{ id: 'x', title: 'X', parts: [] }], meta: [{ id: 'x', library: 'L1', sync: 'conflict' }] });
  bg.reply(await bg.nextRequest('team.status'), { hubs: [], libraries: [] });
  const r = await waitFor(() => panel.sent.find((m) => m.type === 'reply' && m.req === 't2'));
  assert.deepEqual(r.result.meta, [{ library: 'L1', sync: 'conflict' }]);
});

test('library: a restarted background never tells a generation an earlier run may have stored', async () => {
  const generationOf = async (bg, req) => {
    const { panel } = await bg.connectFrames();
    panel.onMessage.fire({ type: 'templates', req });
    await listPage(bg, { templates: [], meta: [] });
    const r = await waitFor(() => panel.sent.find((m) => m.type === 'reply' && m.req === req));
    assert.ok(Number.isSafeInteger(r.result.generation), JSON.stringify(r.result));
    return r.result.generation;
  };
  const first = await load();
  await first.up(['send', 'events']);
  const seen = [await generationOf(first, 'a')];
  for (let i = 0; i < 3; i++) {
    first.mod.library.libraryChanged();
    seen.push(await generationOf(first, `a${i}`));
  }
  assert.equal(new Set(seen).size, seen.length, `${seen}`);
  // The browser stops the background and starts it again at once (the same millisecond, even).
  const second = await load();
  await second.up(['send', 'events']);
  const g = await generationOf(second, 'b');
  assert.ok(g > Math.max(...seen), `restart: ${g} after ${seen}`);
});

test('team: a daemon before 1.4 whose hello is not answered yet is asked again without `library`', async () => {
  const bg = await load();
  // no hello answered: the capabilities are not known
  const p = bg.mod.library.listAllTemplates();
  const first = await bg.nextRequest('templates.list');
  assert.equal(first.params.library, '*');
  bg.fail(first, 'invalid_params', 'templates.list: unknown field `library`, expected `cursor` or `limit`');
  const again = await bg.nextRequest('templates.list');
  assert.equal(again.params.library, undefined);
  bg.reply(again, { templates: [{ id: 'a', title: 'A', parts: [] }], usage: [], next_cursor: null });
  assert.deepEqual((await p).meta, [{ library: 'local' }]);
  // a daemon that said it has no team libraries is never asked for them
  await bg.up(['send']);
  const q = bg.mod.library.listAllTemplates();
  const plain = await bg.nextRequest('templates.list');
  assert.equal(plain.params.library, undefined);
  bg.reply(plain, { templates: [], usage: [], next_cursor: null });
  await q;
  assert.deepEqual(await bg.mod.library.listTeamLibraries(), []);
  assert.equal(bg.native.sent.some((m) => m.method === 'team.status'), false);
});

test('team: a send of a team template reserves in its library; a local one as before', async () => {
  const bg = await load();
  await bg.up(['send', 'events', 'team']);
  const { cs, panel } = await bg.connectFrames();
  panel.onMessage.fire(sendMsg('k1', { library: 'L1', revision: 3 }));
  const reserve = await bg.nextRequest('send.reserve');
  assert.equal(reserve.params.library, 'L1');
  assert.equal(reserve.params.revision, 3);
  bg.reply(reserve, { send_id: 7, delay_ms: 0, state: 'queued' });
  const st = await waitFor(() => panel.sent.find((m) => m.type === 'send-state' && m.key === 'k1'));
  assert.equal(st.library, 'L1');
  bg.reply(await bg.nextRequest('send.begin'), { go: true });
  await waitFor(() => cs.sent.find((m) => m.type === 'post'));
  cs.onMessage.fire({ type: 'posted', send_id: 7, ok: true });
  bg.reply(await bg.nextRequest('send.done'), { send_id: 7, state: 'sent' });
  panel.onMessage.fire(sendMsg('k2'));
  const local = await bg.nextRequest('send.reserve');
  assert.equal('library' in local.params, false, 'the default library is not named');
  panel.onMessage.fire(sendMsg('k3', { library: 7 }));
  const bad = await waitFor(() => panel.sent.find((m) => m.type === 'reply' && m.req === 'k3'));
  assert.equal(bad.error.code, 'bad_request');
});

test('team: extension pages may call the team methods, with waits long enough for the hub', async () => {
  const bg = await load();
  await bg.up(['team']);
  const page = fakePort(`quiver-page:${webcrypto.randomUUID()}`, { id: 'ext', url: 'chrome-extension://ext/options.html' });
  bg.api.runtime.onConnect.fire(page);
  page.onMessage.fire({ type: 'rpc', req: 1, method: 'team.sync', params: { wait_ms: 20_000 } });
  const sync = await bg.nextRequest('team.sync');
  assert.deepEqual(sync.params, { wait_ms: 20_000 });
  bg.reply(sync, { idle: true, hubs: [], libraries: [] });
  const r = await waitFor(() => page.sent.find((m) => m.type === 'reply' && m.req === 1));
  assert.equal(r.result.idle, true);
  page.onMessage.fire({ type: 'rpc', req: 2, method: 'send.reserve', params: {} });
  const refused = await waitFor(() => page.sent.find((m) => m.type === 'reply' && m.req === 2));
  assert.equal(refused.error.code, 'bad_request');
});
