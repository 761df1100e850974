// A real team hub for the end-to-end suite: `quiver hub init --plain` on 127.0.0.1 with a free
// port (SQLite, in a temp dir), `quiver hub serve` as a child process that the test can stop and
// start again on the same port (the daemons go offline and catch up), invites made with
// `quiver hub invite`, and the `quiver team ...` command line of a session (its own daemon).
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { sleep } from './harness.mjs';

const execFileP = promisify(execFile);

/** A free TCP port on 127.0.0.1 (the kernel's choice, released just before use). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Makes a hub (owner `alice`, library `team`) and serves it. Returns
 * `{url, ownerInvite, invite(opts), stop(), start(), close(), log()}`. Always `close()` it.
 */
export async function startHub(quiverBin) {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'quiver-e2e-hub-'));
  const port = await freePort();
  const listen = `127.0.0.1:${port}`;
  const url = `http://${listen}`;
  const env = { ...process.env, QUIVER_HUB_LOG: process.env.QUIVER_HUB_LOG || 'info' };
  const { stdout } = await execFileP(quiverBin, ['hub', 'init', '--dir', dir, '--plain', '--listen', listen, '--public-url', url, '--owner', 'alice'], { env, timeout: 60_000 });
  const ownerInvite = stdout.trim().split('\n').at(-1);
  if (!ownerInvite.startsWith('quiver+http://')) throw new Error(`quiver hub init printed no invite: ${stdout}`);
  const logFile = path.join(dir, 'serve.log');
  let child = null;

  async function healthy() {
    try {
      const r = await fetch(`${url}/v1/health`);
      return r.ok;
    } catch {
      return false;
    }
  }

  const hub = {
    dir,
    port,
    url,
    ownerInvite,
    /** Starts `quiver hub serve` and waits until it answers /v1/health. */
    async start() {
      if (child) throw new Error('the hub is already running');
      const out = fs.openSync(logFile, 'a');
      child = spawn(quiverBin, ['hub', 'serve', '--dir', dir], { env, stdio: ['ignore', out, out] });
      fs.closeSync(out);
      const proc = child;
      const deadline = Date.now() + 30_000;
      while (!(await healthy())) {
        if (proc.exitCode !== null) throw new Error(`quiver hub serve exited with ${proc.exitCode}: ${await hub.log()}`);
        if (Date.now() > deadline) throw new Error(`the hub did not answer on ${url} within 30 s: ${await hub.log()}`);
        await sleep(50);
      }
    },
    /** Stops the hub (SIGTERM) and waits for it to exit: daemons find it unreachable. */
    async stop() {
      const proc = child;
      child = null;
      if (!proc || proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
    /** A single-use invite (`quiver hub invite`, run beside the server: it writes the same file). */
    async invite({ role = 'editor', library = 'team', user } = {}) {
      const args = ['hub', 'invite', '--dir', dir, '--role', role, '--library', library];
      if (user) args.push('--user', user);
      const r = await execFileP(quiverBin, args, { env, timeout: 60_000 });
      return r.stdout.trim().split('\n').at(-1);
    },
    /** Gives `user` the `role` in `library` (`quiver hub member set`). */
    async setRole(library, user, role) {
      await execFileP(quiverBin, ['hub', 'member', 'set', '--dir', dir, library, user, role], { env, timeout: 60_000 });
    },
    /** Turns review on or off for `library` (`quiver hub library set --review`). */
    async setReview(library, on) {
      await execFileP(quiverBin, ['hub', 'library', 'set', '--dir', dir, library, '--review', String(on)], { env, timeout: 60_000 });
    },
    log: () => fsp.readFile(logFile, 'utf8').catch(() => ''),
    async close() {
      await hub.stop();
      if (!process.env.QUIVER_E2E_KEEP) await fsp.rm(dir, { recursive: true, force: true });
    },
  };
  await hub.start();
  return hub;
}

/**
 * `quiver team ARGS...` with the session's environment (its own daemon); `--json` output parsed.
 * Throws with the command's stderr when it fails.
 */
export async function team(session, ...args) {
  try {
    const { stdout } = await execFileP(session.cfg.quiverBin, ['team', ...args], { env: session.env, timeout: 120_000 });
    session.log(`quiver team ${args.join(' ')}: ${stdout.trim().slice(0, 2000)}`);
    return args.includes('--json') ? JSON.parse(stdout) : stdout;
  } catch (err) {
    throw new Error(`\`quiver team ${args.join(' ')}\` failed: ${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}`);
  }
}

/** `quiver team status --json`'s entry for library `id`. */
export async function teamLibrary(session, id) {
  const st = await team(session, 'status', '--json');
  return st.libraries.find((l) => l.id === id) ?? null;
}
