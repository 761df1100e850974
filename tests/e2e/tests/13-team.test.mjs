// Team sync in the browser (issue 10): a real `quiver hub` (SQLite, plain HTTP on 127.0.0.1) and
// two hermetic sessions, A and B, each a browser with its own profile, HOME, daemon and socket.
// A joins from its options page (Team tab) with the owner's invite; B with `quiver team join`.
//
// (a) A template A creates in a team library in its options page reaches B's palette (library
//     badge), and a send of it from B's palette records the library and the exact team revision
//     (B's History tab and `quiver history`).
// (b) With the hub stopped, A (options page) and B (options page) change the title of that
//     template from the same base: both edits wait on their devices (not uploaded). The hub comes
//     back; both push: the one that arrives second is a kept conflict ("2 versions" in B's
//     palette). A resolves it in its options page's conflicts view, taking the other side's
//     title; both daemons end on the same digest with no conflict, and B's palette shows the
//     resolved title.
// (b2) A second conflict, on the message (each side drawn by the core's preview), is resolved
//     by hand in A's editor ("Edit by hand"); again both daemons end on the same digest.
// (c) Bob is made a viewer (`quiver hub member set`): B's editor says before saving that the edit
//     stays a local draft; the hub refuses it, and B's editor and palette show the draft with the
//     hub's reason, while A keeps the resolved title.
//
// Every wait is on a state (a row, an attribute, `quiver team status`), never a fixed sleep.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import {
  config, startSession, newPage, findPanelFrame, waitForPanelReady, pollFrame, sel, waitForReceived,
} from '../lib/harness.mjs';
import { startServer } from '../lib/server.mjs';
import { openOptions, setValue, until, screenshot } from '../lib/extension-pages.mjs';
import { startHub, team, teamLibrary } from '../lib/hub.mjs';

const execFileP = promisify(execFile);
const { browser, quiverBin } = config();
const ID = 'team-hello';

/** Clicks `selector`; again if the page re-rendered it between finding and clicking. */
async function click(page, selector) {
  for (let attempt = 1; ; attempt++) {
    const el = await page.waitForSelector(selector, { timeout: 15_000 });
    try {
      await el.click();
      return;
    } catch (err) {
      if (attempt >= 5 || !/detached|not clickable|no longer/i.test(err.message)) throw err;
    } finally {
      await el.dispose().catch(() => {});
    }
  }
}

/** Opens template `id` of `library` in the options page's editor and waits for it. */
async function openInEditor(page, library, id) {
  await click(page, `[data-testid="quiver-tab-library"]`);
  // The template may be open already: wait for this click's load, not the last one.
  const loads = await page.$eval('[data-testid="quiver-editor"]', (f) => Number(f.dataset.loads ?? 0));
  await click(page, `[data-testid="quiver-lib-item"][data-template-id="${id}"][data-library="${library}"]`);
  await until(page, `${id} open in the editor`, ([id, library, loads]) => {
    const form = document.querySelector('[data-testid="quiver-editor"]');
    const f = document.querySelector('[data-testid="quiver-field-id"]');
    const team = document.querySelector('[data-testid="quiver-editor-team"]');
    return Number(form?.dataset.loads ?? 0) > loads && f?.value === id && team?.dataset.library === library;
  }, [id, library, loads]);
}

/** The palette row of `id` in `library`: its title, sync state and badges. */
function paletteRow(panel, library, id) {
  return panel.evaluate(([library, id]) => {
    const li = document.querySelector(`[data-testid="quiver-template"][data-template-id="${id}"][data-library="${library}"]`);
    if (!li) return null;
    return {
      title: li.querySelector('.template-title')?.textContent ?? '',
      sync: li.dataset.sync ?? '',
      library: li.querySelector('[data-testid="quiver-template-library"]')?.textContent ?? '',
      badge: li.querySelector('[data-testid="quiver-template-sync"]')?.textContent ?? '',
    };
  }, [library, id]);
}

/** Waits until the palette's row of `id` satisfies `ok(row)`; returns the row. */
async function waitForRow(panel, library, id, what, ok, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  let last = null;
  for (;;) {
    last = await paletteRow(panel, library, id);
    if (last && ok(last)) return last;
    if (Date.now() > deadline) throw new Error(`palette row ${library}/${id}: timed out waiting for ${what}; last ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `quiver team sync` until it reports every library idle (the hub may still be starting). */
async function syncUntilIdle(session) {
  const deadline = Date.now() + 90_000;
  for (;;) {
    try {
      return await team(session, 'sync', '--wait', '20', '--json');
    } catch (err) {
      if (Date.now() > deadline) throw err;
      session.log(`team sync not idle yet: ${err.message.slice(0, 300)}`);
    }
  }
}

test(`[${browser}] team: an edit in A's options page reaches B's palette; a conflict is kept and resolved in the options page; a viewer's edit stays a draft`, { timeout: 420_000 }, async (t) => {
  const hub = await startHub(quiverBin);
  const server = await startServer();
  const sessions = [];
  let failed = false;
  try {
    const a = await startSession();
    sessions.push(a);
    const b = await startSession();
    sessions.push(b);

    // Joining: A from its options page with the owner's invite, B from the command line.
    const optA = await openOptions(a, '#team');
    await click(optA, '[data-testid="quiver-tab-team"]');
    await setValue(optA, '[data-testid="quiver-team-invite"]', hub.ownerInvite);
    await setValue(optA, '[data-testid="quiver-team-device"]', 'desk A');
    await click(optA, '[data-testid="quiver-team-join"]');
    await optA.waitForSelector('[data-testid="quiver-team-message"][data-code="joined"]', { timeout: 60_000 });
    const libRow = await optA.waitForSelector('[data-testid="quiver-team-library"][data-role="owner"]', { timeout: 30_000 });
    const LIB = await libRow.evaluate((el) => el.dataset.libraryId);
    await libRow.dispose();
    assert.match(LIB, /^[0-9a-f-]{36}$/, 'the team library has the hub\'s id');
    const inviteB = await hub.invite({ role: 'editor', library: 'team', user: 'bob' });
    const joined = await team(b, 'join', inviteB, '--name', 'desk B');
    assert.match(joined, /bob/);
    assert.equal((await teamLibrary(b, LIB))?.role, 'editor');

    // (a) A creates a template in the team library, in its options page.
    await click(optA, '[data-testid="quiver-tab-library"]');
    await click(optA, '[data-testid="quiver-new-template"]');
    await optA.waitForSelector(`[data-testid="quiver-editor-library"] option[value="${LIB}"]`, { timeout: 15_000 });
    await optA.select('[data-testid="quiver-editor-library"]', LIB);
    await setValue(optA, '[data-testid="quiver-field-id"]', ID);
    await setValue(optA, '[data-testid="quiver-field-title"]', 'Team hello');
    await setValue(optA, '[data-testid="quiver-field-shortcut"]', 'th');
    await setValue(optA, '[data-testid="quiver-part"][data-index="0"] [data-testid="quiver-part-text"]', 'Hello from the team!');
    await click(optA, '[data-testid="quiver-save"]');
    await optA.waitForSelector(`[data-testid="quiver-lib-item"][data-template-id="${ID}"][data-library="${LIB}"][data-revision="1"]`, { timeout: 15_000 });
    // Its author is shown once the daemon has it (alice, the owner).
    await until(optA, 'the editor names the author', () => document.querySelector('[data-testid="quiver-editor-author"]')?.textContent.includes('alice'));

    // ... and it reaches B's palette, with its library's name.
    const ws = await newPage(b);
    await ws.goto(server.url('udesk/workspace.html'), { waitUntil: 'load' });
    const panel = await findPanelFrame(ws);
    await waitForPanelReady(panel, 'greeting');
    const row = await waitForRow(panel, LIB, ID, 'the team template', (r) => r.title === 'Team hello');
    assert.equal(row.library, 'team', 'the row names its library');
    assert.equal(row.badge, '', 'synced: no sync badge');
    assert.equal((await paletteRow(panel, 'local', 'greeting'))?.library, 'Personal', 'local templates are listed beside it, named so');

    // A send of it from B's palette records the library and the exact team revision.
    await panel.evaluate((S) => { const i = document.querySelector(S); i.value = 'th'; i.dispatchEvent(new Event('input', { bubbles: true })); }, sel.search);
    await pollFrame(panel, 'the team template listed first', ([id, lib]) => {
      const li = document.querySelector('[data-testid="quiver-template"]');
      return li?.dataset.templateId === id && li.dataset.library === lib;
    }, [ID, LIB], 10_000);
    await panel.click(`[data-testid="quiver-template"][data-template-id="${ID}"][data-library="${LIB}"]`);
    const [got] = await waitForReceived(ws, 1);
    assert.equal(got.data, JSON.stringify({ method: 'sendMsg', type: 'text', content: 'Hello from the team!' }));
    const { stdout } = await execFileP(quiverBin, ['history', '--format', 'json', '--template', ID], { env: b.env, timeout: 30_000 });
    const sent = JSON.parse(stdout).find((r) => r.template_id === ID);
    assert.equal(sent?.library, LIB);
    assert.match(sent?.rev_id ?? '', /^[0-9a-f-]{36}$/, 'the team revision sent');
    const optB = await openOptions(b, '#history');
    await click(optB, '[data-testid="quiver-tab-history"]');
    const histRow = await optB.waitForSelector(`[data-testid="quiver-history-row"][data-template-id="${ID}"]`, { timeout: 15_000 });
    const shown = await histRow.evaluate((el) => ({ library: el.dataset.library, rev: el.dataset.revId, text: el.querySelector('[data-testid="quiver-history-library"]').textContent }));
    await histRow.dispose();
    assert.deepEqual([shown.library, shown.rev], [LIB, sent.rev_id]);
    assert.match(shown.text, /team/);
    assert.ok(shown.text.includes(sent.rev_id), 'the row shows the team revision');

    // (b) The hub goes away; both edit the title from the same base.
    await hub.stop();
    await openInEditor(optA, LIB, ID);
    await setValue(optA, '[data-testid="quiver-field-title"]', 'Team hello (A)');
    await click(optA, '[data-testid="quiver-save"]');
    await until(optA, 'A\'s edit saved, not uploaded', () => {
      const team = document.querySelector('[data-testid="quiver-editor-team"]');
      return document.querySelector('[data-testid="quiver-editor-revision"]')?.dataset.revision === '2' && team?.dataset.sync === 'pending';
    });
    await openInEditor(optB, LIB, ID);
    await setValue(optB, '[data-testid="quiver-field-title"]', 'Team hello (B)');
    await click(optB, '[data-testid="quiver-save"]');
    await until(optB, 'B\'s edit saved', () => document.querySelector('[data-testid="quiver-editor-revision"]')?.dataset.revision === '2');
    // B's palette says its edit is not uploaded yet.
    const pending = await waitForRow(panel, LIB, ID, 'B\'s edit pending', (r) => r.title === 'Team hello (B)' && r.sync === 'pending');
    assert.ok(pending.badge, 'a "not uploaded" badge');

    // The hub is back: both daemons push (each retries on its own); the edit that reaches the hub
    // first is head, the other a kept conflict.
    await hub.start();
    await syncUntilIdle(a);
    await syncUntilIdle(b);
    const titles = ['Team hello (A)', 'Team hello (B)'];
    const conflicted = await waitForRow(panel, LIB, ID, 'the conflict', (r) => r.sync === 'conflict');
    t.diagnostic(`B's palette during the conflict: ${JSON.stringify(conflicted)}`);
    assert.ok(titles.includes(conflicted.title), 'the palette shows head, one of the two edits');
    assert.equal(conflicted.badge, '2 versions');
    await syncUntilIdle(a);
    assert.equal((await teamLibrary(a, LIB)).conflicts, 1);
    assert.equal((await teamLibrary(b, LIB)).conflicts, 1);

    // A resolves it in its options page, taking B's title.
    await click(optA, '[data-testid="quiver-tab-team"]');
    await click(optA, `[data-testid="quiver-team-conflict"][data-template-id="${ID}"] button`);
    await optA.waitForSelector(`[data-testid="quiver-conflict"][data-template-id="${ID}"]:not([hidden])`, { timeout: 15_000 });
    const fields = await optA.$$eval('[data-testid="quiver-conflict-field"]', (rows) => rows.map((r) => ({ field: r.dataset.field, clash: r.dataset.clash })));
    assert.deepEqual(fields, [{ field: 'title', clash: 'true' }], 'only the title differs, changed two ways');
    const sides = await optA.$eval('[data-testid="quiver-conflict-field"][data-field="title"]', (r) => ({
      base: r.querySelector('[data-side="base"]').textContent,
      head: r.querySelector('[data-side="head"]').dataset.value,
      other: r.querySelector('[data-side="other"]').dataset.value,
    }));
    assert.equal(sides.base, 'Team hello');
    assert.equal(sides.head, conflicted.title, 'head is what the palettes show');
    assert.deepEqual([sides.head, sides.other].sort(), titles, 'both edits are kept');
    await screenshot(optA, `team-conflict-${browser}.png`);
    // The other side's title: the edit that came second wins by the resolver's choice.
    await click(optA, '[data-testid="quiver-conflict-take"][data-field="title"][data-side="other"]');
    await optA.waitForSelector('[data-testid="quiver-conflict-field"][data-field="title"][data-choice="other"]');
    await click(optA, '[data-testid="quiver-conflict-resolve"]');
    await optA.waitForSelector('[data-testid="quiver-conflict-message"][data-code="resolved"]', { timeout: 15_000 });

    // Both daemons converge: same digest, no conflict, nothing waiting; B's palette shows it.
    const deadline = Date.now() + 120_000;
    let la;
    let lb;
    for (;;) {
      await syncUntilIdle(a);
      await syncUntilIdle(b);
      la = await teamLibrary(a, LIB);
      lb = await teamLibrary(b, LIB);
      if (la.digest && la.digest === lb.digest && la.conflicts === 0 && lb.conflicts === 0 && la.outbox === 0 && lb.outbox === 0) break;
      if (Date.now() > deadline) throw new Error(`the daemons did not converge: A ${JSON.stringify(la)} B ${JSON.stringify(lb)}`);
    }
    t.diagnostic(`digest ${la.digest} at seq ${la.cursor} (A) / ${lb.cursor} (B)`);
    const resolved = await waitForRow(panel, LIB, ID, 'the resolved title', (r) => r.title === sides.other && r.sync !== 'conflict');
    assert.equal(resolved.badge, '', 'synced: no badge');
    await optA.waitForSelector('[data-testid="quiver-conflicts-none"]:not([hidden])', { timeout: 30_000 });

    // (b2) A second conflict, on the message itself, resolved by hand: "Edit by hand" opens the
    //      merged template in A's editor, which saves it as the resolution.
    await hub.stop();
    const part0 = '[data-testid="quiver-part"][data-index="0"] [data-testid="quiver-part-text"]';
    await openInEditor(optA, LIB, ID);
    await setValue(optA, part0, 'Hello from A!');
    await click(optA, '[data-testid="quiver-save"]');
    await until(optA, 'A\'s second edit saved', () => document.querySelector('[data-testid="quiver-editor-team"]')?.dataset.sync === 'pending');
    await openInEditor(optB, LIB, ID);
    await setValue(optB, part0, 'Hello from B!');
    await click(optB, '[data-testid="quiver-save"]');
    await until(optB, 'B\'s second edit saved', () => document.querySelector('[data-testid="quiver-editor-team"]')?.dataset.sync === 'pending', undefined, 45_000);
    await hub.start();
    await syncUntilIdle(a);
    await syncUntilIdle(b);
    await syncUntilIdle(a);
    await click(optA, '[data-testid="quiver-tab-team"]');
    await click(optA, `[data-testid="quiver-team-conflict"][data-template-id="${ID}"] button`);
    await optA.waitForSelector('[data-testid="quiver-conflict-field"][data-field="parts"][data-clash="true"]', { timeout: 15_000 });
    // Each side's message drawn as the customer would see it (the core's preview).
    const drawn = await optA.$eval('[data-testid="quiver-conflict-field"][data-field="parts"]', (r) => [
      r.querySelector('[data-side="head"] [data-testid="quiver-conflict-parts"]')?.textContent ?? '',
      r.querySelector('[data-side="other"] [data-testid="quiver-conflict-parts"]')?.textContent ?? '',
    ]);
    assert.deepEqual([...drawn].map((x) => x.trim()).sort(), ['Hello from A!', 'Hello from B!']);
    await click(optA, '[data-testid="quiver-conflict-edit"]');
    await optA.waitForSelector('[data-testid="quiver-editor-resolving"]', { timeout: 15_000 });
    await setValue(optA, part0, 'Hello from A and B!');
    await click(optA, '[data-testid="quiver-save"]');
    await optA.waitForSelector('[data-testid="quiver-editor-message"][data-code="resolved"]', { timeout: 15_000 });
    const deadline2 = Date.now() + 120_000;
    for (;;) {
      await syncUntilIdle(a);
      await syncUntilIdle(b);
      la = await teamLibrary(a, LIB);
      lb = await teamLibrary(b, LIB);
      if (la.digest === lb.digest && la.conflicts === 0 && lb.conflicts === 0 && la.outbox === 0 && lb.outbox === 0) break;
      if (Date.now() > deadline2) throw new Error(`the daemons did not converge after the resolution by hand: A ${JSON.stringify(la)} B ${JSON.stringify(lb)}`);
    }
    await pollFrame(panel, 'the message resolved by hand in B\'s palette', ([id, lib]) => {
      const li = document.querySelector(`[data-testid="quiver-template"][data-template-id="${id}"][data-library="${lib}"]`);
      return li?.dataset.sync !== 'conflict' && li?.querySelector('.template-preview')?.textContent === 'Hello from A and B!';
    }, [ID, LIB], 30_000);

    // (c) Bob becomes a viewer: B's editor says before saving that the edit stays a local draft;
    //     the hub refuses it and the editor and the palette show it as a draft with the reason.
    await hub.setRole('team', 'bob', 'viewer');
    const roleDeadline = Date.now() + 60_000;
    while ((await teamLibrary(b, LIB)).role !== 'viewer') {
      if (Date.now() > roleDeadline) throw new Error('B never learned its new role');
      await syncUntilIdle(b);
    }
    await openInEditor(optB, LIB, ID);
    await optB.waitForSelector('[data-testid="quiver-editor-team"][data-role="viewer"] [data-testid="quiver-editor-viewer"]', { timeout: 30_000 });
    await setValue(optB, '[data-testid="quiver-field-title"]', 'Team hello (viewer)');
    await click(optB, '[data-testid="quiver-save"]');
    const reason = await until(optB, 'the draft and its reason in B\'s editor', () => {
      const team = document.querySelector('[data-testid="quiver-editor-team"]');
      return team?.dataset.sync === 'draft' ? document.querySelector('[data-testid="quiver-editor-draft-reason"]')?.textContent : null;
    }, undefined, 60_000);
    t.diagnostic(`the viewer's draft: ${reason}`);
    assert.match(reason, /viewer/i, 'the hub\'s reason names the role');
    const draft = await waitForRow(panel, LIB, ID, 'the draft in B\'s palette', (r) => r.sync === 'draft');
    assert.equal(draft.title, 'Team hello (viewer)', 'the draft is what this device shows');
    assert.equal(draft.badge, 'local draft');
    assert.equal((await teamLibrary(b, LIB)).drafts, 1);
    // The hub refused it: A, synced again, still has the resolved title.
    await syncUntilIdle(a);
    const titleAtA = await optA.$eval(`[data-testid="quiver-lib-item"][data-template-id="${ID}"][data-library="${LIB}"] .item-title`, (e) => e.textContent);
    assert.equal(titleAtA, sides.other, 'the draft never left B');

    // (d) Review: the library requires review and Bob is an editor again. His edit waits as a
    //     proposal; A approves it in the Team tab, and it becomes the team's version in B's palette.
    await hub.setReview('team', true);
    await hub.setRole('team', 'bob', 'editor');
    const reviewDeadline = Date.now() + 60_000;
    for (;;) {
      await syncUntilIdle(a);
      await syncUntilIdle(b);
      const [ra, rb] = [await teamLibrary(a, LIB), await teamLibrary(b, LIB)];
      if (rb.role === 'editor' && rb.review_required && ra.review_required) break;
      if (Date.now() > reviewDeadline) throw new Error(`review never reached the daemons: A ${JSON.stringify(ra)} B ${JSON.stringify(rb)}`);
    }
    await openInEditor(optB, LIB, ID);
    await setValue(optB, '[data-testid="quiver-field-title"]', 'Team hello (proposed)');
    await click(optB, '[data-testid="quiver-save"]');
    await syncUntilIdle(b);
    await waitForRow(panel, LIB, ID, 'the proposal in B\'s palette', (r) => r.sync === 'proposed' && r.title === 'Team hello (proposed)');
    await syncUntilIdle(a);
    await click(optA, '[data-testid="quiver-tab-team"]');
    const approve = `[data-testid="quiver-team-proposal"][data-template-id="${ID}"][data-library="${LIB}"] [data-testid="quiver-proposal-approve"]`;
    await optA.waitForSelector(approve, { timeout: 30_000 });
    await click(optA, approve);
    await optA.waitForSelector('[data-testid="quiver-team-message"][data-code="approved"]', { timeout: 30_000 });
    await optA.waitForSelector('[data-testid="quiver-proposals-none"]:not([hidden])', { timeout: 30_000 });
    await syncUntilIdle(b);
    await waitForRow(panel, LIB, ID, 'the approved edit in B\'s palette', (r) => r.sync !== 'proposed' && r.title === 'Team hello (proposed)');
  } catch (err) {
    failed = true;
    t.diagnostic(`hub log:\n${(await hub.log()).slice(-4000)}`);
    throw err;
  } finally {
    for (const [i, s] of sessions.entries()) await s.close({ failed, name: `team-${'ab'[i]}` });
    await server.close();
    await hub.close();
  }
});
