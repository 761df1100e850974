// Every send leaves one row in the daemon's SQLite history (state sent, platform udesk, template
// greeting, payload and its sha256). The database is the session's own:
// <XDG_DATA_HOME>/quiver/quiver.db, opened read-only with the sqlite3 CLI.
import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { config, withWorkspace, clickTemplate, waitForReceived, waitForSendStates } from '../lib/harness.mjs';
import { GREETING_ID, GREETING_PAYLOAD } from '../lib/expected.mjs';

const execFileP = promisify(execFile);
const { browser } = config();
const COLUMNS = [
  'id', 'idempotency_key', 'template_id', 'revision', 'part_index', 'platform', 'workspace',
  'conversation', 'customer', 'payload', 'payload_sha256', 'state', 'error', 'queued_at', 'sent_at',
];
const sha256 = (s) => createHash('sha256').update(s, 'utf8').digest('hex');

async function historyRows(dbPath) {
  assert.ok(fs.existsSync(dbPath), `the daemon's database ${dbPath} does not exist`);
  // `file:...?mode=ro` plus -readonly: never write to the daemon's database.
  const args = ['-readonly', '-json', `file:${dbPath}?mode=ro`, `SELECT ${COLUMNS.join(', ')} FROM history ORDER BY id`];
  let stdout;
  try {
    ({ stdout } = await execFileP('sqlite3', args));
  } catch (err) {
    throw new Error(`sqlite3 ${args.join(' ')} failed: ${err.stderr || err.message}`);
  }
  return stdout.trim() ? JSON.parse(stdout) : [];
}

test(`[${browser}] each send is one history row: sent, udesk, greeting, payload digest`, { timeout: 120_000 }, async (t) => {
  await withWorkspace('history', 'udesk/workspace.html', async ({ session, page, panel }) => {
    const SENDS = 2;
    for (let i = 0; i < SENDS; i++) await clickTemplate(panel, GREETING_ID);
    await waitForReceived(page, SENDS);
    // The panel shows `sent` once the daemon answered send.done, so the rows are final by then.
    await waitForSendStates(panel, SENDS, 'sent');

    const rows = await historyRows(session.dbPath);
    t.diagnostic(`history rows: ${JSON.stringify(rows)}`);
    assert.equal(rows.length, SENDS, `one history row per send: ${JSON.stringify(rows, null, 1)}`);
    for (const row of rows) {
      const what = `history row ${JSON.stringify(row)}`;
      assert.equal(row.state, 'sent', what);
      assert.equal(row.platform, 'udesk', what);
      assert.equal(row.template_id, GREETING_ID, what);
      assert.equal(row.part_index, 0, what);
      assert.equal(row.payload, GREETING_PAYLOAD, what);
      assert.equal(row.payload_sha256, sha256(GREETING_PAYLOAD), what);
      assert.equal(row.error, null, what);
      assert.equal(typeof row.queued_at, 'number', what);
      assert.equal(typeof row.sent_at, 'number', what);
      assert.ok(row.sent_at >= row.queued_at, `${what}: sent_at before queued_at`);
      assert.ok(row.idempotency_key, `${what}: idempotency_key missing`);
    }
    assert.equal(new Set(rows.map((r) => r.idempotency_key)).size, SENDS, 'each send has its own idempotency key');
  });
});
