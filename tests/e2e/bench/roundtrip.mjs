// Browser-side native-messaging round trip, by hand:
//   cargo build --release -p quiver-daemon --bin quiver --example echo_host
//   QUIVER_BIN=target/release/quiver node tests/e2e/bench/roundtrip.mjs [chromium|firefox ...]
//
// From a top-level extension page (popup.html opened in a tab: Firefox refuses connectNative
// from an extension frame inside a web page, "An unexpected error occurred"), one
// runtime.connectNative port per path, N sequential requests each, interleaved in rounds so
// load from elsewhere hits both paths alike:
//   echo    a trivial host (daemon/examples/echo_host.rs) that writes each frame back: the floor
//   quiver  `quiver` as the browser starts it: host -> daemon (Unix socket) -> host, answering
//           `hello` (protocol negotiation) and `settings.get`
// Numbers only, no assertions: the results go to docs/benchmarks.md.
import fs from 'node:fs';
import path from 'node:path';
import { config, withSession, REPO_ROOT } from '../lib/harness.mjs';
import { openExtensionPage } from '../lib/extension-pages.mjs';

const browsers = process.argv.slice(2).length ? process.argv.slice(2) : ['chromium', 'firefox'];
const ROUNDS = Number(process.env.QUIVER_BENCH_ROUNDS || 20);
const PER_ROUND = Number(process.env.QUIVER_BENCH_PER_ROUND || 50);
const ECHO = path.join(REPO_ROOT, 'target/release/examples/echo_host');
const EXT_ID = 'lohhppipbmnliinhpikegpolikiblpfg';
const GECKO_ID = 'quiver@quiver.dev';

function registerEcho(session, browser) {
  if (!fs.existsSync(ECHO)) throw new Error(`${ECHO} is not built (see the header of this file)`);
  const manifest = { name: 'dev.quiver.echo', description: 'echo floor', path: ECHO, type: 'stdio' };
  let dir;
  if (browser === 'chromium') {
    dir = path.join(session.dirs.profile, 'NativeMessagingHosts');
    manifest.allowed_origins = [`chrome-extension://${EXT_ID}/`];
  } else {
    dir = path.join(session.dirs.home, '.mozilla', 'native-messaging-hosts');
    manifest.allowed_extensions = [GECKO_ID];
  }
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'dev.quiver.echo.json'), JSON.stringify(manifest));
}

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { n: s.length, median: q(0.5), p99: q(0.99) };
};

async function bench(browser) {
  process.env.QUIVER_BROWSER = browser;
  config();
  await withSession(`bench-rt-${browser}`, async (session) => {
    registerEcho(session, browser);
    const panel = await openExtensionPage(session, 'popup.html');
    const version = await session.browser.version();
    const samples = await panel.evaluate(async (ROUNDS, PER_ROUND) => {
      const api = globalThis.browser ?? globalThis.chrome;
      const open = (name) => {
        const port = api.runtime.connectNative(name);
        const waiting = new Map();
        let gone = null;
        port.onMessage.addListener((m) => {
          const w = waiting.get(m.id);
          if (w) { waiting.delete(m.id); w.resolve(m); }
        });
        port.onDisconnect.addListener((p) => {
          gone = new Error(`${name} disconnected: ${(p.error ?? api.runtime.lastError)?.message ?? 'no reason'}`);
          for (const w of waiting.values()) w.reject(gone);
          waiting.clear();
        });
        let id = 0;
        return {
          port,
          call(body) {
            if (gone) return Promise.reject(gone);
            const i = ++id;
            return new Promise((resolve, reject) => {
              const t = setTimeout(() => reject(new Error(`${name}: no reply in 5 s`)), 5000);
              waiting.set(i, { resolve: (m) => { clearTimeout(t); resolve(m); }, reject });
              port.postMessage({ id: i, ...body });
            });
          },
        };
      };
      const paths = {
        echo: [open('dev.quiver.echo'), { method: 'hello', params: { protocol: 1 } }],
        'quiver hello': [open('dev.quiver.host'), { method: 'hello', params: { protocol: 1, client: 'bench' } }],
        'quiver settings.get': [open('dev.quiver.host'), { method: 'settings.get', params: {} }],
      };
      const out = Object.fromEntries(Object.keys(paths).map((k) => [k, []]));
      const batch = Object.fromEntries(Object.keys(paths).map((k) => [k, []]));
      // warm up: start the hosts, the daemon connection, JIT
      for (const [c, body] of Object.values(paths)) for (let i = 0; i < 20; i++) await c.call(body);
      for (let r = 0; r < ROUNDS; r++) {
        for (const [name, [c, body]] of Object.entries(paths)) {
          const t0 = performance.now();
          for (let i = 0; i < PER_ROUND; i++) {
            const t = performance.now();
            const reply = await c.call(body);
            out[name].push(performance.now() - t);
            if (reply.error) throw new Error(`${name}: ${JSON.stringify(reply.error)}`);
          }
          batch[name].push((performance.now() - t0) / PER_ROUND);
        }
      }
      for (const [c] of Object.values(paths)) c.port.disconnect();
      return { out, batch };
    }, ROUNDS, PER_ROUND);
    // Timers are coarse in extension pages (Chromium 0.1 ms steps), so the mean of each round
    // of PER_ROUND sequential calls is reported too, and its median compared with echo's.
    const echo = stats(samples.out.echo);
    const echoBatch = stats(samples.batch.echo);
    console.log(`\n${browser} ${version}: ${ROUNDS * PER_ROUND} requests per path`);
    console.log('| path | median ms | p99 ms | median of round means ms | vs echo (round means) |');
    console.log('|---|---|---|---|---|');
    for (const name of Object.keys(samples.out)) {
      const s = stats(samples.out[name]);
      const b = stats(samples.batch[name]);
      console.log(`| ${name} | ${s.median.toFixed(3)} | ${s.p99.toFixed(3)} | ${b.median.toFixed(3)} | ${(b.median / echoBatch.median).toFixed(2)}x |`);
    }
  });
}

for (const b of browsers) await bench(b);
